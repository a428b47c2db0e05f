package natclass

import (
	"reflect"
	"slices"
	"testing"
)

// classified makes a family's Result as Classify leaves it: the
// behaviour, then Decide's verdict.
func classified(family string, mapping, filtering Behavior, typ Type) Result {
	r := Result{Family: family, UDPTested: true, UDP: true, Mapping: mapping, Filtering: filtering, Type: typ}
	r.Verdict = Decide(r)
	return r
}

func blocked(family string, tcpPorts []int) Result {
	r := Result{Family: family, UDPTested: true, Type: TypeUDPBlocked, TCP: TriNo, TCPPortsOpen: tcpPorts}
	if len(tcpPorts) > 0 {
		r.TCP = TriYes
	}
	r.Verdict = Decide(r)
	return r
}

func TestCombineVerdicts(t *testing.T) {
	v4sym := classified("ipv4", BehaviorAddressAndPortDependent, BehaviorAddressAndPortDependent, TypeSymmetric)
	v4prc := classified("ipv4", BehaviorEndpointIndependent, BehaviorAddressAndPortDependent, TypePortRestrictedCone)
	v6fw := classified("ipv6", BehaviorNone, BehaviorAddressAndPortDependent, TypeFirewall)
	v6open := classified("ipv6", BehaviorNone, BehaviorNone, TypeOpenInternet)
	v6prc := classified("ipv6", BehaviorEndpointIndependent, BehaviorAddressAndPortDependent, TypePortRestrictedCone)
	v4blocked := blocked("ipv4", []int{443})
	v6blocked := blocked("ipv6", nil)
	v6skipped := Result{Family: "ipv6", Skipped: "no server has an ipv6 address"}
	v6noRoute := Result{Family: "ipv6", Skipped: "this host has no ipv6 route (connect: network is unreachable)"}
	// An explicit IPv6 run on a host without an IPv6 route: the sends
	// failed, nothing was measured, and UDP is not called blocked.
	v6unsent := Classify(Observations{Family: "ipv6", Servers: []Server{{Name: "[2001:db8::1]:3478",
		Binding: Transaction{Error: "connect: network is unreachable"}}}})

	const (
		D  = RouteDirect
		PD = RouteProbablyDirect
		R  = RouteRelay
	)
	type row struct {
		route  Route
		family string
	}
	for _, c := range []struct {
		name    string
		in      []Result
		same    int // index of the Result whose verdict comes out unchanged; -1 when combined
		peers   []row
		direct  Likelihood
		via     string
		family  string // of the way out
		summary string
	}{
		{
			name: "v4 symmetric, v6 firewall (APDF, no NAT)", in: []Result{v4sym, v6fw}, same: -1,
			peers:  []row{{D, "ipv4"}, {D, "ipv4"}, {D, "ipv4"}, {PD, "ipv6"}, {R, "ipv4"}, {R, "ipv4"}},
			direct: LikelihoodLikely, via: WayDirectUDP, family: "ipv6",
			summary: "Over IPv6 (to peers that have IPv6): Direct UDP likely: no NAT, but a firewall filters inbound UDP (address-and-port-dependent). " +
				"Over IPv4: Direct UDP unlikely: symmetric NAT; peers behind port-restricted or symmetric NATs (most home routers) need a TURN relay",
		},
		{
			name: "v4 port-restricted, v6 open", in: []Result{v4prc, v6open}, same: -1,
			peers:  []row{{D, "ipv4"}, {D, "ipv4"}, {D, "ipv4"}, {D, "ipv6"}, {D, "ipv6"}, {R, "ipv4"}},
			direct: LikelihoodLikely, via: WayDirectUDP, family: "ipv6",
			summary: "Over IPv6 (to peers that have IPv6): Direct UDP likely: this host has a public address, and a port that has sent takes UDP from any address. " +
				"Over IPv4: Direct UDP likely: port-restricted cone NAT; peers behind symmetric NATs need a TURN relay",
		},
		{
			name: "v4 UDP blocked, v6 works", in: []Result{v4blocked, v6open}, same: -1,
			peers:  []row{{D, "ipv6"}, {D, "ipv6"}, {D, "ipv6"}, {D, "ipv6"}, {D, "ipv6"}, {R, "ipv6"}},
			direct: LikelihoodLikely, via: WayDirectUDP, family: "ipv6",
			summary: "Over IPv6 (to peers that have IPv6): Direct UDP likely: this host has a public address, and a port that has sent takes UDP from any address. " +
				"Over IPv4: UDP is blocked here; TURN over TCP on port 443 gets out",
		},
		{
			name: "v6 blocked, v4 works", in: []Result{v4prc, v6blocked}, same: -1,
			peers:  []row{{D, "ipv4"}, {D, "ipv4"}, {D, "ipv4"}, {PD, "ipv4"}, {R, "ipv4"}, {R, "ipv4"}},
			direct: LikelihoodLikely, via: WayDirectUDP, family: "ipv4",
			summary: "Over IPv4: Direct UDP likely: port-restricted cone NAT; peers behind symmetric NATs need a TURN relay. " +
				"Over IPv6: Nothing gets out: UDP is blocked and no TCP or TLS connection to any server succeeded",
		},
		{name: "only v4", in: []Result{v4sym}, same: 0},
		{name: "both the same", in: []Result{v4prc, v6prc}, same: 0},
		{name: "same answer, other types (port-restricted v4, firewall v6)", in: []Result{v4prc, v6fw}, same: 0},
		{name: "v6 skipped", in: []Result{v4sym, v6skipped}, same: 0},
		{name: "v6 with no route (skipped)", in: []Result{v4sym, v6noRoute}, same: 0},
		{name: "v6 with no route (asked for, nothing sent)", in: []Result{v4sym, v6unsent}, same: 0},
	} {
		got := Combine(c.in).Verdict
		if c.same >= 0 {
			if !reflect.DeepEqual(got, c.in[c.same].Verdict) {
				t.Errorf("%s: verdict %+v; want %s's verdict unchanged: %+v", c.name, got, c.in[c.same].Family, c.in[c.same].Verdict)
			}
			continue
		}
		peers := []string{PeerOpen, PeerFullCone, PeerRestrictedCone, PeerPortRestrictedCone, PeerSymmetric, PeerUDPBlocked}
		var want []PeerRoute
		for i, p := range c.peers {
			want = append(want, PeerRoute{Peer: peers[i], Route: p.route, Family: p.family})
		}
		if !slices.Equal(got.Peers, want) {
			t.Errorf("%s: peers\n%+v\nwant\n%+v", c.name, got.Peers, want)
		}
		if got.DirectUDP != c.direct || got.WayOut.Via != c.via || got.WayOut.Family != c.family {
			t.Errorf("%s: direct_udp %s, way out %s over %q; want %s, %s over %q", c.name, got.DirectUDP, got.WayOut.Via, got.WayOut.Family, c.direct, c.via, c.family)
		}
		if got.Summary != c.summary {
			t.Errorf("%s: summary\n%q\nwant\n%q", c.name, got.Summary, c.summary)
		}
		// The families' own verdicts name no family.
		for _, r := range c.in {
			if r.Verdict.WayOut.Family != "" || slices.ContainsFunc(r.Verdict.Peers, func(p PeerRoute) bool { return p.Family != "" }) {
				t.Errorf("%s: %s's own verdict names a family: %+v", c.name, r.Family, r.Verdict)
			}
		}
	}
}

func TestCombineNAT64(t *testing.T) {
	n := &NAT64{Detected: true, Prefix: NAT64WellKnownPrefix, Source: NAT64SourceDNS64}
	v6 := classified("ipv6", BehaviorNone, BehaviorAddressAndPortDependent, TypeFirewall)
	v6.NAT64 = n
	o := Combine([]Result{{Family: "ipv4", Skipped: "this host has no ipv4 route"}, v6})
	want := "Direct UDP likely: no NAT, but a firewall filters inbound UDP (address-and-port-dependent). IPv6-only network with NAT64 (64:ff9b::/96): IPv4 servers are reached through it"
	if o.NAT64 != n || o.Verdict.Summary != want {
		t.Errorf("nat64 %v summary %q; want %q", o.NAT64, o.Verdict.Summary, want)
	}
	if (&NAT64{}).Summary() != "" || (*NAT64)(nil).Summary() != "" {
		t.Error("an undetected NAT64 has a summary")
	}
}

// IPv4 asked for but nothing sent (no IPv4 route), IPv6 measured: UDP
// blocked there, TCP to 443 gets out. The family that measured nothing
// must not lead nor be combined into the verdict, whichever family it is.
func TestCombineUnmeasuredIPv4(t *testing.T) {
	v4unsent := Classify(Observations{Family: "ipv4", Servers: []Server{{Name: "192.0.2.1:3478",
		Binding: Transaction{Error: "connect: network is unreachable"}}}})
	v6blocked := blocked("ipv6", []int{443})
	o := Combine([]Result{v4unsent, v6blocked})
	if o.Lead != 1 {
		t.Errorf("lead %d; want 1 (ipv6, the family that measured something)", o.Lead)
	}
	want := "UDP is blocked here; TURN over TCP on port 443 gets out"
	if o.Verdict.Summary != want || o.Verdict.WayOut.Family != "" {
		t.Errorf("summary %q, way out family %q; want %q and no family named", o.Verdict.Summary, o.Verdict.WayOut.Family, want)
	}
}
