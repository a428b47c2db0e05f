package natclass

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
)

var (
	local = ap("192.168.1.10:40000")
	srvP  = ap("203.0.113.1:3478") // RFC 5780 server, primary
	srvA  = ap("203.0.113.2:3479") // its alternate
	srvPa = ap("203.0.113.1:3479") // primary IP, alternate port
	srvAp = ap("203.0.113.2:3478") // alternate IP, primary port
	plain = ap("198.51.100.7:19302")
	pubX  = ap("198.51.100.200:40000")
	pubY  = ap("198.51.100.200:50001")
	pubZ  = ap("198.51.100.200:50002")
	fresh = ap("192.168.1.10:40001")
)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// reply describes what came back for one probe.
type reply struct {
	status Status
	from   netip.AddrPort
	mapped netip.AddrPort
	code   int
}

var (
	none   = reply{status: StatusNoReply}
	notRun = reply{}
)

func ok(from netip.AddrPort) reply     { return reply{status: StatusReply, from: from} }
func okm(from, m netip.AddrPort) reply { return reply{status: StatusReply, from: from, mapped: m} }
func rejected(code int) reply          { return reply{status: StatusErrorReply, from: srvP, code: code} }

// unansweredSends is how often the engine sends a request that goes
// unanswered on a loss-free network: enough for silence to be a result.
const unansweredSends = 6

func probe(l, d netip.AddrPort, r reply) Transaction {
	sent := 1
	if r.status == StatusNoReply {
		sent = unansweredSends
	}
	return Transaction{Local: l, Dest: d, Sent: sent, Status: r.status, From: r.from, Mapped: r.mapped, ErrorCode: r.code}
}

// rfc builds observations of one RFC 5780 server: the mapped addresses of
// mapping tests I, II, III (zero = no reply), and the filtering replies.
func rfc(m1, m2, m3 netip.AddrPort, fII, fIII, ctl reply) Observations {
	mp := func(d, m netip.AddrPort) Transaction {
		if !m.IsValid() {
			return probe(local, d, none)
		}
		return probe(local, d, okm(d, m))
	}
	test1 := mp(srvP, m1)
	test1.Other = srvA
	freshMapped := m1
	if m1 != local {
		freshMapped = netip.AddrPortFrom(m1.Addr(), m1.Port()+1)
	} else {
		freshMapped = fresh
	}
	fII.mapped, fIII.mapped, ctl.mapped = freshMapped, freshMapped, m1
	ctlProbe := probe(local, srvP, ctl)
	ctlProbe.ChangeIP, ctlProbe.ChangePort = true, true
	if m3.IsValid() && m1.IsValid() && m3 != m1 {
		// Behind a mapping that varies by destination the control asks
		// for its reply at Test III's mapping (RESPONSE-PORT).
		ctlProbe.ResponsePort = m3.Port()
	}
	// The change-port control fares like the change-IP one: it answers from
	// P:a where the other answers from A:a.
	ctlPort := ctl
	if ctl.status == StatusReply && ctl.from == srvA {
		ctlPort.from = srvPa
	}
	ctlPortProbe := probe(local, srvP, ctlPort)
	ctlPortProbe.ChangePort = true
	// P:a is the same IP as P:p: the same mapping unless the NAT is
	// address-and-port-dependent.
	mPa := m1
	switch {
	case !m3.IsValid():
		mPa = netip.AddrPort{} // lost like Test III
	case m1.IsValid() && m2 != m3:
		mPa = netip.AddrPortFrom(m1.Addr(), m1.Port()+7)
	}
	if mPa.IsValid() && m1.IsValid() && mPa != m1 {
		ctlPortProbe.ResponsePort = mPa.Port()
	}
	fIIProbe := probe(fresh, srvP, fII)
	fIIProbe.ChangeIP, fIIProbe.ChangePort = true, true
	fIIIProbe := probe(fresh, srvP, fIII)
	fIIIProbe.ChangePort = true
	return Observations{
		Family:  "ipv4",
		Servers: []Server{{Name: "stun.example:3478", Address: srvP, Binding: test1}},
		RFC5780: []RFC5780Tests{{
			Server:       0,
			MappingII:    mp(srvAp, m2),
			MappingIII:   mp(srvA, m3),
			FilteringI:   probe(fresh, srvP, okm(srvP, freshMapped)),
			FilteringII:  fIIProbe,
			FilteringIII: fIIIProbe,
			Control:      ctlProbe,
			MappingPa:    mp(srvPa, mPa),
			ControlPort:  ctlPortProbe,
		}},
	}
}

func plainServers(pairs ...[2]netip.AddrPort) Observations {
	o := Observations{Family: "ipv4"}
	for _, p := range pairs {
		r := none
		if p[1].IsValid() {
			r = okm(p[0], p[1])
		}
		o.Servers = append(o.Servers, Server{Name: p[0].String(), Address: p[0], Binding: probe(local, p[0], r)})
	}
	return o
}

type want struct {
	udp       bool
	mapping   Behavior
	filtering Behavior
	typ       Type
	direct    Likelihood
	varies    Tri
	reason    string // a substring of some reason
}

func check(t *testing.T, got Result, w want) {
	t.Helper()
	if got.UDP != w.udp || got.Mapping != w.mapping || got.Filtering != w.filtering || got.Type != w.typ || got.Verdict.DirectUDP != w.direct {
		t.Errorf("got udp=%v mapping=%s filtering=%s type=%s direct=%s\nwant udp=%v mapping=%s filtering=%s type=%s direct=%s\nreasons: %q",
			got.UDP, got.Mapping, got.Filtering, got.Type, got.Verdict.DirectUDP,
			w.udp, w.mapping, w.filtering, w.typ, w.direct, got.Reasons)
	}
	if got.MappingVariesByDestination != w.varies {
		t.Errorf("mapping_varies_by_destination = %s, want %s", got.MappingVariesByDestination, w.varies)
	}
	if w.reason != "" && !strings.Contains(strings.Join(got.Reasons, "\n"), w.reason) {
		t.Errorf("no reason contains %q; reasons: %q", w.reason, got.Reasons)
	}
	if got.Verdict.Summary == "" {
		t.Error("empty verdict summary")
	}
}

// TestNineCombinations runs every mapping x filtering combination through
// the RFC 5780 tests as a NAT of that kind would answer them.
func TestNineCombinations(t *testing.T) {
	mappings := []struct {
		b          Behavior
		m1, m2, m3 netip.AddrPort
	}{
		{BehaviorEndpointIndependent, pubX, pubX, pubX},
		{BehaviorAddressDependent, pubX, pubY, pubY},
		{BehaviorAddressAndPortDependent, pubX, pubY, pubZ},
	}
	filterings := []struct {
		b         Behavior
		fII, fIII reply
	}{
		{BehaviorEndpointIndependent, ok(srvA), ok(srvPa)},
		{BehaviorAddressDependent, none, ok(srvPa)},
		{BehaviorAddressAndPortDependent, none, none},
	}
	for _, m := range mappings {
		for _, f := range filterings {
			t.Run(m.b.String()+"/"+f.b.String(), func(t *testing.T) {
				eim := m.b == BehaviorEndpointIndependent
				// The control reply reaches the mapping socket whatever the
				// NAT: it is sent once the socket has talked to A:a, and
				// behind a mapping that varies by destination it carries
				// RESPONSE-PORT, the port of that mapping.
				ctl := ok(srvA)
				w := want{udp: true, mapping: m.b, filtering: f.b, varies: TriYes, typ: TypeSymmetric, direct: LikelihoodUnlikely}
				if eim {
					w.varies = TriNo
					w.direct = LikelihoodLikely
					w.typ = map[Behavior]Type{
						BehaviorEndpointIndependent:     TypeFullCone,
						BehaviorAddressDependent:        TypeRestrictedCone,
						BehaviorAddressAndPortDependent: TypePortRestrictedCone,
					}[f.b]
				}
				o := rfc(m.m1, m.m2, m.m3, f.fII, f.fIII, ctl)
				if got := o.RFC5780[0].Control.ResponsePort != 0; got == eim {
					t.Fatalf("control RESPONSE-PORT set %v behind %s mapping", got, m.b)
				}
				check(t, Classify(o), w)
			})
		}
	}
}

func TestClassifyCases(t *testing.T) {
	cases := []struct {
		name string
		obs  Observations
		want want
	}{
		{"open internet", rfc(local, local, local, ok(srvA), ok(srvPa), ok(srvA)),
			want{udp: true, mapping: BehaviorNone, filtering: BehaviorNone, typ: TypeOpenInternet, direct: LikelihoodLikely, varies: TriNo, reason: "no NAT"}},
		{"firewall without NAT", rfc(local, local, local, none, none, ok(srvA)),
			want{udp: true, mapping: BehaviorNone, filtering: BehaviorAddressAndPortDependent, typ: TypeFirewall, direct: LikelihoodLikely, varies: TriNo}},
		{"firewall, address-dependent", rfc(local, local, local, none, ok(srvPa), ok(srvA)),
			want{udp: true, mapping: BehaviorNone, filtering: BehaviorAddressDependent, typ: TypeFirewall, direct: LikelihoodLikely, varies: TriNo}},
		{"EIM, CHANGE-REQUEST unconfirmed", rfc(pubX, pubX, pubX, none, none, none),
			want{udp: true, mapping: BehaviorEndpointIndependent, typ: TypeUnknown, direct: LikelihoodLikely, varies: TriNo, reason: "could not be confirmed"}},
		{"server ignores CHANGE-REQUEST", rfc(pubX, pubX, pubX, ok(srvP), ok(srvP), ok(srvP)),
			want{udp: true, mapping: BehaviorEndpointIndependent, typ: TypeUnknown, direct: LikelihoodLikely, varies: TriNo, reason: "does not honour CHANGE-REQUEST"}},
		{"server ignores only change-port", rfc(pubX, pubX, pubX, ok(srvA), ok(srvP), ok(srvA)),
			want{udp: true, mapping: BehaviorEndpointIndependent, typ: TypeUnknown, direct: LikelihoodLikely, varies: TriNo, reason: "does not honour"}},
		{"server rejects CHANGE-REQUEST", rfc(pubX, pubX, pubX, rejected(420), rejected(420), rejected(420)),
			want{udp: true, mapping: BehaviorEndpointIndependent, typ: TypeUnknown, direct: LikelihoodLikely, varies: TriNo, reason: "error 420"}},
		{"filtering cut short", rfc(pubX, pubX, pubX, notRun, notRun, notRun),
			want{udp: true, mapping: BehaviorEndpointIndependent, typ: TypeUnknown, direct: LikelihoodLikely, varies: TriNo, reason: "did not complete"}},
		{"mapping tests II and III lost", rfc(pubX, netip.AddrPort{}, netip.AddrPort{}, ok(srvA), ok(srvPa), ok(srvA)),
			want{udp: true, mapping: BehaviorUnknown, filtering: BehaviorEndpointIndependent, typ: TypeUnknown, direct: LikelihoodPossible, varies: TriUnknown, reason: "only one server IP"}},
		{"mapping test III lost after II differed", rfc(pubX, pubY, netip.AddrPort{}, none, none, none),
			want{udp: true, mapping: BehaviorUnknown, typ: TypeSymmetric, direct: LikelihoodUnlikely, varies: TriYes, reason: "cannot be told apart"}},
		{"contradictory: some servers see no NAT", rfc(local, pubX, pubX, ok(srvA), ok(srvPa), ok(srvA)),
			want{udp: true, filtering: BehaviorEndpointIndependent, typ: TypeUnknown, direct: LikelihoodPossible, reason: "contradict"}},
		{"plain servers, same mapping", plainServers([2]netip.AddrPort{srvP, pubX}, [2]netip.AddrPort{plain, pubX}),
			want{udp: true, mapping: BehaviorEndpointIndependent, typ: TypeUnknown, direct: LikelihoodLikely, varies: TriNo, reason: "filtering behaviour cannot be learned from plain servers"}},
		{"plain servers, mapping varies", plainServers([2]netip.AddrPort{srvP, pubX}, [2]netip.AddrPort{plain, pubY}),
			want{udp: true, typ: TypeSymmetric, direct: LikelihoodUnlikely, varies: TriYes}},
		{"plain servers, same IP other port varies", plainServers([2]netip.AddrPort{srvP, pubX}, [2]netip.AddrPort{srvPa, pubY}),
			want{udp: true, mapping: BehaviorAddressAndPortDependent, typ: TypeSymmetric, direct: LikelihoodUnlikely, varies: TriYes}},
		{"two names, one address", plainServers([2]netip.AddrPort{srvP, pubX}, [2]netip.AddrPort{srvP, pubX}),
			want{udp: true, typ: TypeUnknown, direct: LikelihoodPossible, reason: "only one server IP"}},
		{"one plain server answers, other silent", plainServers([2]netip.AddrPort{srvP, pubX}, [2]netip.AddrPort{plain, {}}),
			want{udp: true, typ: TypeUnknown, direct: LikelihoodPossible}},
		{"UDP blocked", plainServers([2]netip.AddrPort{srvP, {}}, [2]netip.AddrPort{plain, {}}),
			want{typ: TypeUDPBlocked, direct: LikelihoodImpossible, reason: "UDP is blocked"}},
		{"one silent server", plainServers([2]netip.AddrPort{srvP, {}}),
			want{typ: TypeUnknown, direct: LikelihoodUnknown, reason: "try a second server"}},
		{"DNS fails", Observations{Family: "ipv4", Servers: []Server{{Name: "stun.invalid", ResolveError: "no such host"}}},
			want{typ: TypeUnknown, direct: LikelihoodUnknown, reason: "DNS"}},
		{"no servers", Observations{Family: "ipv6"},
			want{typ: TypeUnknown, direct: LikelihoodUnknown, reason: "UDP was not tested"}},
		{"cut short before any reply", Observations{Family: "ipv4", Servers: []Server{
			{Name: "a", Address: srvP, Binding: probe(local, srvP, notRun)}, {Name: "b", Address: plain, Binding: probe(local, plain, notRun)}}},
			want{typ: TypeUnknown, direct: LikelihoodUnknown, reason: "--timeout"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { check(t, Classify(c.obs), c.want) })
	}
}

func TestBogusOtherAddress(t *testing.T) {
	for _, other := range []netip.AddrPort{ap("203.0.113.1:3479"), ap("203.0.113.9:3478"), ap("[2001:db8::1]:3479")} {
		o := rfc(pubX, pubX, pubX, ok(srvA), ok(srvPa), ok(srvA))
		o.Servers[0].Binding.Other = other
		r := Classify(o)
		if r.Filtering != BehaviorUnknown || r.Type != TypeUnknown {
			t.Errorf("OTHER-ADDRESS %s: filtering %s type %s, want unknown", other, r.Filtering, r.Type)
		}
		if !strings.Contains(strings.Join(r.Reasons, " "), "not usable") {
			t.Errorf("OTHER-ADDRESS %s: reasons %q do not say it is not usable", other, r.Reasons)
		}
	}
}

func TestFilteringTestIUnanswered(t *testing.T) {
	o := rfc(pubX, pubX, pubX, none, none, ok(srvA))
	o.RFC5780[0].FilteringI.Status = StatusNoReply
	o.RFC5780[0].FilteringI.Mapped = netip.AddrPort{}
	r := Classify(o)
	if r.Filtering != BehaviorUnknown {
		t.Errorf("filtering = %s, want unknown when the fresh socket's plain request went unanswered", r.Filtering)
	}
}

func TestRFC5780ServersDisagree(t *testing.T) {
	o := rfc(pubX, pubX, pubX, ok(srvA), ok(srvPa), ok(srvA))
	second := rfc(pubX, pubX, pubX, none, none, ok(srvA))
	o.Servers = append(o.Servers, Server{Name: "second", Address: srvP, Binding: second.Servers[0].Binding})
	t2 := second.RFC5780[0]
	t2.Server = 1
	o.RFC5780 = append(o.RFC5780, t2)
	r := Classify(o)
	if r.Filtering != BehaviorUnknown || !strings.Contains(strings.Join(r.Reasons, " "), "disagree") {
		t.Errorf("filtering %s, reasons %q; want unknown because servers disagree", r.Filtering, r.Reasons)
	}
}

func TestExtras(t *testing.T) {
	o := rfc(pubX, pubX, pubX, ok(srvA), ok(srvPa), ok(srvA))
	r := Classify(o)
	// Behind a NAT a public server sees the outermost address: CGNAT is
	// unknown, not "no".
	if r.BehindNAT != TriYes || r.CGNAT != TriUnknown || r.ALG != TriUnknown || r.Hairpin != TriUnknown {
		t.Errorf("nat %s cgnat %s alg %s hairpin %s; want yes unknown unknown unknown", r.BehindNAT, r.CGNAT, r.ALG, r.Hairpin)
	}
	// pubX keeps the local port 40000; the fresh socket's 40001 is mapped to 40001 too.
	if r.PortPreservation != TriYes {
		t.Errorf("port preservation = %s, want yes", r.PortPreservation)
	}
	if len(r.PublicAddresses) != 1 || r.PublicAddresses[0] != pubX { // the mapping socket only
		t.Errorf("public addresses = %v", r.PublicAddresses)
	}

	o.Servers[0].Binding.Mapped = ap("100.64.3.4:1234")
	o.Servers[0].Binding.LegacyMapped = ap("100.64.3.4:9999")
	o.Hairpin = &Transaction{Local: fresh, Dest: pubX, Status: StatusReply}
	r = Classify(o)
	if r.CGNAT != TriYes || r.ALG != TriYes || r.Hairpin != TriYes || r.PortPreservation != TriNo {
		t.Errorf("cgnat %s alg %s hairpin %s preservation %s; want yes yes yes no", r.CGNAT, r.ALG, r.Hairpin, r.PortPreservation)
	}

	o.Servers[0].Binding.LegacyMapped = o.Servers[0].Binding.Mapped
	o.Hairpin.Status = StatusNoReply
	r = Classify(o)
	if r.ALG != TriNo || r.Hairpin != TriNo {
		t.Errorf("alg %s hairpin %s; want no no", r.ALG, r.Hairpin)
	}

	// A private server seeing a private address says nothing about CGNAT.
	p := plainServers([2]netip.AddrPort{ap("10.0.0.1:3478"), ap("10.9.9.9:5000")}, [2]netip.AddrPort{ap("10.0.0.2:3478"), ap("10.9.9.9:5000")})
	if r := Classify(p); r.CGNAT != TriUnknown {
		t.Errorf("private servers: cgnat %s, want unknown", r.CGNAT)
	}
}

func TestDecidePeers(t *testing.T) {
	type pp = map[string]Route
	cases := []struct {
		name string
		r    Result
		want pp
	}{
		{"full cone", Result{UDP: true, Mapping: BehaviorEndpointIndependent, Filtering: BehaviorEndpointIndependent},
			pp{PeerOpen: RouteDirect, PeerPortRestrictedCone: RouteDirect, PeerSymmetric: RouteDirect, PeerUDPBlocked: RouteRelay}},
		{"port restricted", Result{UDP: true, Mapping: BehaviorEndpointIndependent, Filtering: BehaviorAddressAndPortDependent},
			pp{PeerOpen: RouteDirect, PeerRestrictedCone: RouteDirect, PeerPortRestrictedCone: RouteProbablyDirect, PeerSymmetric: RouteRelay}},
		{"symmetric", Result{UDP: true, Mapping: BehaviorAddressAndPortDependent},
			pp{PeerOpen: RouteDirect, PeerFullCone: RouteDirect, PeerRestrictedCone: RouteDirect, PeerPortRestrictedCone: RouteRelay, PeerSymmetric: RouteRelay}},
		{"EIM, filtering unknown", Result{UDP: true, Mapping: BehaviorEndpointIndependent},
			pp{PeerRestrictedCone: RouteDirect, PeerPortRestrictedCone: RouteProbablyDirect, PeerSymmetric: RouteUnknown}},
		{"nothing known but UDP", Result{UDP: true},
			pp{PeerOpen: RouteDirect, PeerRestrictedCone: RouteDirect, PeerPortRestrictedCone: RouteUnknown, PeerSymmetric: RouteUnknown}},
		{"UDP blocked", Result{Type: TypeUDPBlocked},
			pp{PeerOpen: RouteRelay, PeerSymmetric: RouteRelay, PeerUDPBlocked: RouteRelay}},
		{"nothing measured", Result{},
			pp{PeerOpen: RouteUnknown, PeerSymmetric: RouteUnknown}},
	}
	for _, c := range cases {
		v := Decide(c.r)
		if len(v.Peers) != 6 {
			t.Errorf("%s: %d peer kinds, want 6", c.name, len(v.Peers))
		}
		got := pp{}
		for _, p := range v.Peers {
			got[p.Peer] = p.Route
		}
		for peer, w := range c.want {
			if got[peer] != w {
				t.Errorf("%s: peer %s = %s, want %s", c.name, peer, got[peer], w)
			}
		}
	}
	if v := Decide(Result{Type: TypeUDPBlocked}); v.Relay[0] != RelayTURNTCP {
		t.Errorf("UDP blocked: relay %v, want TCP first", v.Relay)
	}
	if v := Decide(Result{UDP: true}); v.Relay[0] != RelayTURNUDP {
		t.Errorf("UDP open: relay %v, want UDP first", v.Relay)
	}
}

func TestTypeOf(t *testing.T) {
	all := []Behavior{BehaviorUnknown, BehaviorNone, BehaviorEndpointIndependent, BehaviorAddressDependent, BehaviorAddressAndPortDependent}
	want := map[[2]Behavior]Type{
		{BehaviorNone, BehaviorNone}:                                   TypeOpenInternet,
		{BehaviorNone, BehaviorEndpointIndependent}:                    TypeOpenInternet,
		{BehaviorNone, BehaviorAddressDependent}:                       TypeFirewall,
		{BehaviorNone, BehaviorAddressAndPortDependent}:                TypeFirewall,
		{BehaviorEndpointIndependent, BehaviorNone}:                    TypeFullCone,
		{BehaviorEndpointIndependent, BehaviorEndpointIndependent}:     TypeFullCone,
		{BehaviorEndpointIndependent, BehaviorAddressDependent}:        TypeRestrictedCone,
		{BehaviorEndpointIndependent, BehaviorAddressAndPortDependent}: TypePortRestrictedCone,
	}
	for _, m := range all {
		for _, f := range all {
			w, ok := want[[2]Behavior{m, f}]
			if !ok {
				w = TypeUnknown
				if m == BehaviorAddressDependent || m == BehaviorAddressAndPortDependent {
					w = TypeSymmetric
				}
			}
			if got := TypeOf(m, f, TriUnknown); got != w {
				t.Errorf("TypeOf(%s, %s) = %s, want %s", m, f, got, w)
			}
		}
	}
	if TypeOf(BehaviorUnknown, BehaviorUnknown, TriYes) != TypeSymmetric {
		t.Error("varying mapping should be symmetric")
	}
}

func TestJSONVocabulary(t *testing.T) {
	r := Result{Family: "ipv4", Mapping: BehaviorAddressAndPortDependent, Filtering: BehaviorUnknown, Type: TypePortRestrictedCone,
		ALG: TriUnknown, Hairpin: TriYes, CGNAT: TriNo, Verdict: Verdict{DirectUDP: LikelihoodPossible, Peers: []PeerRoute{{Peer: PeerSymmetric, Route: RouteProbablyDirect}}}}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`"mapping":"address-and-port-dependent"`, `"filtering":"unknown"`, `"type":"port-restricted-cone"`,
		`"alg":null`, `"hairpin":true`, `"cgnat":false`, `"direct_udp":"possible"`, `"path":"probably-direct"`} {
		if !strings.Contains(string(b), s) {
			t.Errorf("JSON lacks %s: %s", s, b)
		}
	}
	var back Result
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Mapping != r.Mapping || back.Type != r.Type || back.Hairpin != TriYes || back.ALG != TriUnknown || back.Verdict.DirectUDP != r.Verdict.DirectUDP {
		t.Errorf("round trip changed the result: %+v", back)
	}
	var b2 Behavior
	if err := b2.UnmarshalText([]byte("sideways")); err == nil {
		t.Error("unknown behaviour name accepted")
	}
}

// TestSilenceNeedsControls: silence is read as filtering only where a
// control proved the server sends from the address in question.
func TestSilenceNeedsControls(t *testing.T) {
	// The server answers change-port but never from its alternate IP:
	// without the control, "address-dependent" would be a guess.
	r := Classify(rfc(pubX, pubX, pubX, none, ok(srvPa), none))
	if r.Filtering != BehaviorUnknown {
		t.Errorf("ADF without a control: filtering %s, want unknown", r.Filtering)
	}
	// The change-IP control passed but the change-port one did not.
	o := rfc(pubX, pubX, pubX, none, none, ok(srvA))
	o.RFC5780[0].ControlPort.Status = StatusNoReply
	o.RFC5780[0].ControlPort.From = netip.AddrPort{}
	if r := Classify(o); r.Filtering != BehaviorUnknown || r.Type != TypeUnknown {
		t.Errorf("APDF without the change-port control: filtering %s type %s, want unknown", r.Filtering, r.Type)
	}
}

// TestContradictoryMapping: the RFC 5780 tests say endpoint-independent, a
// plain server on a third address saw another public address.
func TestContradictoryMapping(t *testing.T) {
	o := rfc(pubX, pubX, pubX, ok(srvA), ok(srvPa), ok(srvA))
	o.Servers = append(o.Servers, Server{Name: "plain", Address: plain, Binding: probe(local, plain, okm(plain, pubY))})
	r := Classify(o)
	if r.Mapping != BehaviorUnknown || r.MappingVariesByDestination != TriUnknown || r.Type != TypeUnknown || !r.MappingChanged ||
		!strings.Contains(strings.Join(r.Reasons, " "), "contradict") || !strings.Contains(r.Verdict.Summary, "changed during the test") {
		t.Errorf("mapping %s varies %s type %s changed %v; summary %q reasons %q", r.Mapping, r.MappingVariesByDestination, r.Type, r.MappingChanged, r.Verdict.Summary, r.Reasons)
	}
}
