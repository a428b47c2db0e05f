package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

// report6 is what TestModes6 reads of natcheck's schema-2 report beyond
// NatcheckResult: the combined verdict with its family fields, and each
// family's own result.
type report6 struct {
	Family   string   `json:"family"`
	Verdict  verdict6 `json:"verdict"`
	Families []struct {
		Family  string `json:"family"`
		Skipped string `json:"skipped"`
		UDP     bool   `json:"udp"`
		NAT     struct {
			Mapping          string `json:"mapping"`
			Filtering        string `json:"filtering"`
			Type             string `json:"type"`
			BehindNAT        *bool  `json:"behind_nat"`
			PortPreservation *bool  `json:"port_preservation"`
		} `json:"nat"`
		PublicAddresses []string `json:"public_addresses"`
		Verdict         verdict6 `json:"verdict"`
	} `json:"families"`
}

type verdict6 struct {
	DirectUDP string `json:"direct_udp"`
	Peers     []struct {
		Peer   string  `json:"peer"`
		Path   string  `json:"path"`
		Family *string `json:"family"`
	} `json:"peers"`
	WayOut struct {
		Via    string  `json:"via"`
		Port   int     `json:"port"`
		Family *string `json:"family"`
	} `json:"way_out"`
	Summary string `json:"summary"`
}

// family returns the families[] entry of natcheck's report for family as
// a NatcheckResult, so that an Expectation can check it.
func (r report6) family(family string, schema int) (NatcheckResult, report6Family, bool) {
	var n NatcheckResult
	for _, f := range r.Families {
		if f.Family != family {
			continue
		}
		n.SchemaVersion = schema
		n.UDP = f.UDP
		n.NAT.Mapping, n.NAT.Filtering, n.NAT.Type = f.NAT.Mapping, f.NAT.Filtering, f.NAT.Type
		n.Verdict.DirectUDP = f.Verdict.DirectUDP
		n.Verdict.WayOut.Via, n.Verdict.WayOut.Port = f.Verdict.WayOut.Via, f.Verdict.WayOut.Port
		n.Verdict.Summary = f.Verdict.Summary
		return n, report6Family{Skipped: f.Skipped, BehindNAT: f.NAT.BehindNAT, PortPreservation: f.NAT.PortPreservation,
			PublicAddresses: f.PublicAddresses, FamilyFields: f.Verdict.familyFields()}, true
	}
	return n, report6Family{}, false
}

type report6Family struct {
	Skipped                     string
	BehindNAT, PortPreservation *bool
	PublicAddresses             []string
	FamilyFields                []string
}

// familyFields lists the family fields a verdict carries, as "peer=family"
// and "way_out=family".
func (v verdict6) familyFields() []string {
	var out []string
	for _, p := range v.Peers {
		if p.Family != nil {
			out = append(out, p.Peer+"="+*p.Family)
		}
	}
	if v.WayOut.Family != nil {
		out = append(out, "way_out="+*v.WayOut.Family)
	}
	return out
}

// Expect6 returns the expectation for the IPv6 family behind a router in
// mode m, written by hand from what the kernel does, in natcheck's
// vocabulary (natclass.TypeOf; the hole-punching table of
// shared/nat-testing.md):
//
//	mode          mapping                filtering                    type                  why
//	routed6       none                   none or endpoint-independent open-internet         a global address, nothing filters
//	firewall6     none                   address-and-port-dependent   firewall              conntrack lets in only replies
//	firewall6eif  none                   endpoint-independent         open-internet         no NAT + EIF is open-internet in natcheck's
//	                                     (natcheck: none)                                   vocabulary (TypeOf): STUN cannot see a filter that
//	                                                                                        opens a port to everyone once it has sent, and for
//	                                                                                        hole punching it is the open row. natcheck turns
//	                                                                                        EIF without NAT into filtering "none"
//	                                                                                        (natclass/filtering.go), which this firewall is
//	                                                                                        not: testTopology6 sees it drop what reaches a
//	                                                                                        port that never sent
//	nptv6         endpoint-independent   endpoint-independent         full-cone             prefix translation, port kept, no filter
//	nat66         endpoint-independent   address-and-port-dependent   port-restricted-cone  masquerade with conntrack, as IPv4
//	blocked6      -                      -                            udp-blocked           UDP dropped; TCP to coturn's 3478 gets out
func Expect6(m Mode6) Expectation {
	switch m {
	case Routed6:
		return Expect(Routed)
	case Firewall6:
		return Expect(Firewall)
	case Firewall6EIF:
		return Expectation{UDP: true,
			Mapping: []string{None},
			// natcheck says "none" for EIF without NAT: it cannot
			// tell the two apart (see the table above).
			Filtering: []string{EndpointIndependent, None},
			Type:      []string{TypeOpenInternet},
			DirectUDP: []string{"likely"},
			WayOut:    WayDirectUDP}
	case NPTv6:
		return Expect(OneToOne)
	case NAT66:
		return Expect(Masquerade)
	case Blocked6:
		return Expect(UDPBlocked)
	}
	return Expectation{}
}

// Paths of the hole-punching table.
const (
	pD  = "direct"
	pPD = "probably-direct"
	pR  = "relay"
)

// peerKinds are the verdict's kinds of peer, in the report's order.
var peerKinds = []string{"open", "full-cone", "restricted-cone", "port-restricted-cone", "symmetric", "udp-blocked"}

// combined6 is the expected top-level verdict over both families.
type combined6 struct {
	v4 Mode
	v6 Mode6
	// lead is the report's top-level family.
	lead string
	// paths per peer kind (peerKinds order), and the family that gives
	// each; families nil means no family fields at all (the families
	// agree).
	paths, families []string
	directUDP       string
	wayOut          string
	wayFamily       string // "" with families nil
	// summary must start with this.
	summary string
	// and contain these.
	contains []string
	why      string
}

// combinedCases are the dual-stack sites of TestModes6, with the combined
// verdict written by hand from the hole-punching table (shared/
// nat-testing.md) and the rules of docs/json.md "Changes, 2": per peer
// kind the better path and its family (the leading family between
// equals), direct UDP and way out of the better family, summary best
// family first.
func combinedCases() []combined6 {
	masq := []string{pD, pD, pD, pPD, pR, pR} // EIM or no NAT with APDF
	open := []string{pD, pD, pD, pD, pD, pR}  // no NAT or EIM with EIF
	v4, v6 := "ipv4", "ipv6"
	return []combined6{
		{v4: Masquerade, v6: Routed6, lead: v4,
			paths: open, families: []string{v4, v4, v4, v6, v6, v4}, directUDP: "likely", wayOut: WayDirectUDP, wayFamily: v6,
			summary:  "Over IPv6 (to peers that have IPv6): Direct UDP likely: this host has a public address",
			contains: []string{"Over IPv4: Direct UDP likely: port-restricted cone NAT"},
			why:      "IPv6 reaches port-restricted and symmetric peers directly, IPv4 does not: IPv6 is better; IPv4 leads and is named where equal"},
		{v4: Masquerade, v6: Firewall6, lead: v4,
			paths: masq, directUDP: "likely", wayOut: WayDirectUDP,
			summary: "Direct UDP likely: port-restricted cone NAT",
			why:     "a stateful IPv6 firewall and IPv4 masquerade both filter by address and port: the families agree, no family fields"},
		{v4: Masquerade, v6: Firewall6EIF, lead: v4,
			paths: open, families: []string{v4, v4, v4, v6, v6, v4}, directUDP: "likely", wayOut: WayDirectUDP, wayFamily: v6,
			summary:  "Over IPv6 (to peers that have IPv6): Direct UDP likely: this host has a public address",
			contains: []string{"Over IPv4: "},
			why:      "EIF over IPv6 is the open row: as routed6"},
		{v4: Masquerade, v6: NPTv6, lead: v4,
			paths: open, families: []string{v4, v4, v4, v6, v6, v4}, directUDP: "likely", wayOut: WayDirectUDP, wayFamily: v6,
			summary:  "Over IPv6 (to peers that have IPv6): Direct UDP likely: full-cone NAT",
			contains: []string{"Over IPv4: "},
			why:      "NPTv6 without a filter is a full cone: the open row"},
		{v4: Masquerade, v6: NAT66, lead: v4,
			paths: masq, directUDP: "likely", wayOut: WayDirectUDP,
			summary: "Direct UDP likely: port-restricted cone NAT",
			why:     "NAT66 masquerade is IPv4 masquerade: the families agree"},
		{v4: Masquerade, v6: Blocked6, lead: v4,
			paths: masq, families: []string{v4, v4, v4, v4, v4, v4}, directUDP: "likely", wayOut: WayDirectUDP, wayFamily: v4,
			summary:  "Over IPv4: Direct UDP likely: port-restricted cone NAT",
			contains: []string{"Over IPv6: UDP is blocked"},
			why:      "IPv6 UDP is blocked: every path is IPv4's, and IPv6 is named only as the worse family"},
		{v4: Symmetric, v6: Firewall6, lead: v4,
			paths: masq, families: []string{v4, v4, v4, v6, v4, v4}, directUDP: "likely", wayOut: WayDirectUDP, wayFamily: v6,
			summary:  "Over IPv6 (to peers that have IPv6): Direct UDP likely: no NAT, but a firewall filters inbound UDP (address-and-port-dependent)",
			contains: []string{"Over IPv4: Direct UDP unlikely: symmetric NAT"},
			why:      "symmetric over IPv4 needs a relay to port-restricted peers; the IPv6 firewall (APDF, no NAT) gets probably-direct to them; direct UDP likely over IPv6"},
		{v4: UDPBlocked, v6: Firewall6, lead: v6,
			paths: masq, families: []string{v6, v6, v6, v6, v6, v6}, directUDP: "likely", wayOut: WayDirectUDP, wayFamily: v6,
			summary:  "Over IPv6 (to peers that have IPv6): Direct UDP likely: no NAT, but a firewall filters inbound UDP",
			contains: []string{"Over IPv4: UDP is blocked"},
			why:      "IPv4 UDP is blocked, so IPv6 leads (its UDP got out) and gives every path"},
	}
}

// check returns what is wrong in the report's top-level verdict.
func (c combined6) check(r report6) []string {
	var bad []string
	if r.Family != c.lead {
		bad = append(bad, fmt.Sprintf("top-level family %q, want %q", r.Family, c.lead))
	}
	v := r.Verdict
	if len(v.Peers) != len(peerKinds) {
		return append(bad, fmt.Sprintf("%d peers, want %d", len(v.Peers), len(peerKinds)))
	}
	for i, p := range v.Peers {
		if p.Peer != peerKinds[i] || p.Path != c.paths[i] {
			bad = append(bad, fmt.Sprintf("peer %d: %s %s, want %s %s", i, p.Peer, p.Path, peerKinds[i], c.paths[i]))
		}
		var want, got string
		if c.families != nil {
			want = c.families[i]
		}
		if p.Family != nil {
			got = *p.Family
		}
		if got != want || (c.families == nil && p.Family != nil) {
			bad = append(bad, fmt.Sprintf("peer %s: family %q, want %q", p.Peer, got, want))
		}
	}
	if v.DirectUDP != c.directUDP {
		bad = append(bad, fmt.Sprintf("direct_udp %q, want %q", v.DirectUDP, c.directUDP))
	}
	if v.WayOut.Via != c.wayOut {
		bad = append(bad, fmt.Sprintf("way_out %q, want %q", v.WayOut.Via, c.wayOut))
	}
	var wf string
	if v.WayOut.Family != nil {
		wf = *v.WayOut.Family
	}
	if wf != c.wayFamily || (c.wayFamily == "" && v.WayOut.Family != nil) {
		bad = append(bad, fmt.Sprintf("way_out family %q, want %q", wf, c.wayFamily))
	}
	if !strings.HasPrefix(v.Summary, c.summary) {
		bad = append(bad, fmt.Sprintf("summary %q, want it to start %q", v.Summary, c.summary))
	}
	for _, s := range c.contains {
		if !strings.Contains(v.Summary, s) {
			bad = append(bad, fmt.Sprintf("summary %q does not say %q", v.Summary, s))
		}
	}
	if c.families == nil && strings.Contains(v.Summary, "Over IPv") {
		bad = append(bad, fmt.Sprintf("summary %q names a family, but the families agree", v.Summary))
	}
	// The families' own verdicts never carry a family.
	for _, f := range r.Families {
		if ff := f.Verdict.familyFields(); ff != nil {
			bad = append(bad, fmt.Sprintf("families[%s].verdict carries family fields %q", f.Family, ff))
		}
	}
	return bad
}

// natcheckArgs6 are NatcheckArgs with coturn and the plain server over
// IPv6 beside them.
func (l *Lab) natcheckArgs6() []string {
	return []string{"--stun", l.STUN.String(), "--stun", l.PlainSTUN.String(),
		"--stun", l.STUN6.String(), "--stun", l.PlainSTUN6.String(), "--json", "--timeout", "5s"}
}

// TestModes6 builds a dual-stack lab per site of combinedCases (every
// Mode6 beside IPv4 masquerade, and the IPv4/IPv6 disagreements symmetric
// + firewall6 and udpblocked + firewall6), checks the kernel's IPv6
// mapping and filtering with raw packets, then runs natcheck with coturn
// and the plain server over both families: each family's diagnosis
// against Expect and Expect6, the top-level verdict against the combined
// verdict written by hand. One counted case per site.
func TestModes6(t *testing.T) {
	if testing.Short() {
		t.Skip("lab: skipped in -short mode")
	}
	SkipIfUnavailable(t)
	t.Parallel()
	for _, c := range combinedCases() {
		t.Run(string(c.v4)+"+"+string(c.v6), func(t *testing.T) {
			t.Parallel()
			bin := natcheckBinary(t)
			l := New(t, Options{Mode: c.v4, Mode6: c.v6})
			counted(t)
			testTopology6(t, l)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			r, err := l.RunNatcheckWith(ctx, nil, bin, l.natcheckArgs6()...)
			if err != nil {
				t.Fatal(err)
			}
			checkModes6Run(t, l, c, "coturn", r)
			// natcheck serve as the RFC 5780 server of both families,
			// with the plain server as second address.
			serve, err := l.StartServe(ctx, bin)
			if err != nil {
				t.Fatal(err)
			}
			r, err = l.RunNatcheckWith(ctx, nil, bin, "--stun", serve[0].String(), "--stun", l.PlainSTUN.String(),
				"--stun", serve[1].String(), "--stun", l.PlainSTUN6.String(), "--json", "--timeout", "5s")
			if err != nil {
				t.Fatal(err)
			}
			checkModes6Run(t, l, c, "natcheck serve", r)
		})
	}
}

// checkModes6Run checks one natcheck run of TestModes6 against c.
func checkModes6Run(t *testing.T, l *Lab, c combined6, servers string, r NatcheckResult) {
	t.Helper()
	var rep report6
	if err := json.Unmarshal([]byte(r.Stdout), &rep); err != nil {
		t.Fatalf("decoding report: %v\n%s", err, r.Stdout)
	}
	var bad []string
	if r.ExitCode != 0 {
		bad = append(bad, fmt.Sprintf("exit code %d, want 0", r.ExitCode))
	}
	for _, fam := range []struct {
		name string
		want Expectation
	}{{"ipv4", Expect(c.v4)}, {"ipv6", Expect6(c.v6)}} {
		f, extra, ok := rep.family(fam.name, r.SchemaVersion)
		if !ok || extra.Skipped != "" {
			bad = append(bad, fmt.Sprintf("families[%s] missing or skipped (%q)", fam.name, extra.Skipped))
			continue
		}
		t.Logf("%s: %s: udp=%v mapping=%s filtering=%s type=%s port_preservation=%v public=%v direct_udp=%s way_out=%s/%d: %s",
			servers, fam.name, f.UDP, f.NAT.Mapping, f.NAT.Filtering, f.NAT.Type, deref(extra.PortPreservation), extra.PublicAddresses,
			f.Verdict.DirectUDP, f.Verdict.WayOut.Via, f.Verdict.WayOut.Port, f.Verdict.Summary)
		for _, b := range fam.want.CheckNatcheck(f, false) {
			bad = append(bad, fam.name+": "+b)
		}
		if fam.name == "ipv6" && f.UDP {
			want := l.PublicAddr6.String()
			if len(extra.PublicAddresses) != 1 || !strings.HasPrefix(extra.PublicAddresses[0], "["+want+"]:") {
				bad = append(bad, fmt.Sprintf("ipv6: public addresses %q, want one on %s", extra.PublicAddresses, want))
			}
			// No NAT: natcheck must say so (firewall told apart
			// from NAT); NPTv6 keeps ports.
			behind := c.v6 == NPTv6 || c.v6 == NAT66
			if extra.BehindNAT == nil || *extra.BehindNAT != behind {
				bad = append(bad, fmt.Sprintf("ipv6: behind_nat %v, want %v", deref(extra.BehindNAT), behind))
			}
			if c.v6 == NPTv6 && (extra.PortPreservation == nil || !*extra.PortPreservation) {
				bad = append(bad, fmt.Sprintf("ipv6: port_preservation %v behind NPTv6, want true", deref(extra.PortPreservation)))
			}
		}
	}
	fam := make([]string, 0, len(rep.Verdict.Peers))
	for _, p := range rep.Verdict.Peers {
		f := ""
		if p.Family != nil {
			f = "/" + *p.Family
		}
		fam = append(fam, p.Peer+"="+p.Path+f)
	}
	t.Logf("%s: combined: family %s, peers %v, direct_udp %s, way_out %s/%v: %s (natcheck ran %v)",
		servers, rep.Family, fam, rep.Verdict.DirectUDP, rep.Verdict.WayOut.Via, deref(rep.Verdict.WayOut.Family), rep.Verdict.Summary,
		r.Duration.Round(time.Millisecond))
	bad = append(bad, c.check(rep)...)
	if bad != nil {
		t.Errorf("natcheck with %s on a %s + %s site (%s) is wrong: %q\nstdout: %s\nstderr: %s", servers, c.v4, c.v6, c.why, bad, r.Stdout, r.Stderr)
	}
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

// testTopology6 checks the IPv6 side of a lab with packets alone: the
// client's mapping as coturn sees it, coturn's IPv6 OTHER-ADDRESS, the
// filtering the kernel does, and that an EIF firewall still drops what
// reaches a port that never sent (so it is a firewall, not open); behind
// blocked6, that UDP is dropped and TCP gets out.
func testTopology6(t *testing.T, l *Lab) {
	local := netip.AddrPortFrom(l.ClientAddr6, 0)
	r, err := l.Binding(l.Client, local, l.STUN6, 2*time.Second)
	if l.Mode6 == Blocked6 {
		if err == nil {
			t.Fatalf("IPv6 UDP got through a %s router: %+v", l.Mode6, r)
		}
		var c net.Conn
		err := InNetns(l.Client, func() error {
			var err error
			c, err = net.DialTimeout("tcp6", l.STUN6.String(), 2*time.Second)
			return err
		})
		if err != nil {
			t.Fatalf("TCP over IPv6 to %v through %s: %v", l.STUN6, l.Mode6, err)
		}
		c.Close()
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ipv6 binding: local %v mapped %v other %v from %v", r.Local, r.Mapped, r.Other, r.From)
	if r.Mapped.Addr() != l.PublicAddr6 {
		t.Errorf("IPv6 mapped address %v, want %v", r.Mapped.Addr(), l.PublicAddr6)
	}
	if keep := l.Mode6 != NAT66; keep && r.Mapped.Port() != r.Local.Port() {
		t.Errorf("IPv6 mapped port %d, want the client's %d behind %s", r.Mapped.Port(), r.Local.Port(), l.Mode6)
	}
	if r.Other != l.STUN6Alt {
		t.Errorf("IPv6 OTHER-ADDRESS %v, want %v (coturn's RFC 5780 over IPv6)", r.Other, l.STUN6Alt)
	}
	seen, err := probeFilteringAt(l, familyAddrs{client: l.ClientAddr6, primary: STUNAddr6, alt: STUNAltAddr6}, 600*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	filtering, err := seen.Filtering()
	if err != nil {
		t.Error(err)
	}
	t.Logf("kernel IPv6 filtering: %s (socket %v mapped %v; change port %v, change ip+port %v, same address %v, other address %v)",
		filtering, seen.Local, seen.Mapped, seen.ChangePort, seen.ChangeIPPort, seen.SameIP, seen.OtherIP)
	if w := Expect6(l.Mode6).Filtering; !slices.Contains(w, filtering) {
		t.Errorf("the kernel filters IPv6 %s behind %s, Expect6 says %q", filtering, l.Mode6, w)
	}
	// A port that never sent: open behind routed6 and nptv6, filtered
	// behind the firewalls and NAT66.
	arrived, err := unsolicited6(l)
	if err != nil {
		t.Fatal(err)
	}
	open := l.Mode6 == Routed6 || l.Mode6 == NPTv6
	t.Logf("unsolicited IPv6 datagram to a client port that never sent: arrived %v", arrived)
	if arrived != open {
		t.Errorf("behind %s an unsolicited IPv6 datagram to a port that never sent arrived: %v, want %v", l.Mode6, arrived, open)
	}
}

// unsolicited6 binds a client socket that sends nothing, has a socket in
// the internet namespace send to it (its public IPv6 address, same port)
// for 300 ms, and reports whether anything arrived.
func unsolicited6(l *Lab) (bool, error) {
	var c, s *net.UDPConn
	if err := InNetns(l.Client, func() error {
		var err error
		c, err = net.ListenUDP("udp6", net.UDPAddrFromAddrPort(netip.AddrPortFrom(l.ClientAddr6, 0)))
		return err
	}); err != nil {
		return false, err
	}
	defer c.Close()
	if err := InNetns(l.Internet, func() error {
		var err error
		s, err = net.ListenUDP("udp6", net.UDPAddrFromAddrPort(netip.AddrPortFrom(PlainSTUNAddr6, 0)))
		return err
	}); err != nil {
		return false, err
	}
	defer s.Close()
	dest := netip.AddrPortFrom(l.PublicAddr6, c.LocalAddr().(*net.UDPAddr).AddrPort().Port())
	buf := make([]byte, 1500)
	for i := 0; i < 3; i++ {
		if _, err := s.WriteToUDPAddrPort([]byte("unsolicited"), dest); err != nil {
			return false, err
		}
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, _, err := c.ReadFromUDPAddrPort(buf)
		var ne net.Error
		switch {
		case err == nil && string(buf[:n]) == "unsolicited":
			return true, nil
		case err != nil && !(errors.As(err, &ne) && ne.Timeout()):
			return false, err
		}
	}
	return false, nil
}

// TestNAT64 puts an IPv6-only client (firewall6) behind tayga's NAT64
// (prefix 2001:2:0:6464::/96, see nat64.go) with a DNS64 answer for
// ipv4only.arpa, IPv4 masquerade on the router's
// WAN, and runs natcheck with coturn's and the plain server's IPv4
// literals only: it must find no IPv4 route, find the well-known prefix
// by RFC 7050, and probe both servers through it.
func TestNAT64(t *testing.T) {
	if testing.Short() {
		t.Skip("lab: skipped in -short mode")
	}
	SkipIfUnavailable(t)
	if err := NAT64Available(); err != nil {
		t.Skip("lab: NAT64 needs tayga and dnsmasq: " + err.Error())
	}
	t.Parallel()
	bin := natcheckBinary(t)
	l := New(t, Options{Mode: Masquerade, Mode6: Firewall6, NAT64: true})
	counted(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := l.RunNatcheckWith(ctx, nil, bin, l.NatcheckArgs()...)
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		report6
		NAT64 *struct {
			Detected    bool     `json:"detected"`
			Prefix      string   `json:"prefix"`
			Source      string   `json:"source"`
			Synthesized []string `json:"synthesized"`
		} `json:"nat64"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &rep); err != nil {
		t.Fatalf("decoding report: %v\n%s", err, r.Stdout)
	}
	var bad []string
	if r.ExitCode != 0 {
		bad = append(bad, fmt.Sprintf("exit code %d, want 0", r.ExitCode))
	}
	// By hand: the prefix dnsmasq answers, and coturn's and the plain
	// server's IPv4 literals in it.
	wantSynth := []string{"2001:2:0:6464::c613:2", "2001:2:0:6464::c613:4"}
	switch n := rep.NAT64; {
	case n == nil:
		bad = append(bad, "no nat64 in the report")
	case !n.Detected || n.Prefix != "2001:2:0:6464::/96" || n.Source != "dns64" || !slices.Equal(n.Synthesized, wantSynth):
		bad = append(bad, fmt.Sprintf("nat64 %+v, want detected, prefix 2001:2:0:6464::/96 from dns64, synthesized %q", *n, wantSynth))
	}
	if _, f, ok := rep.family("ipv4", r.SchemaVersion); !ok || !strings.Contains(f.Skipped, "no ipv4 route") {
		bad = append(bad, fmt.Sprintf("families[ipv4] skipped %q, want no ipv4 route", f.Skipped))
	}
	f, extra, ok := rep.family("ipv6", r.SchemaVersion)
	// tayga maps the client 1:1 into its pool, masquerade then keeps one
	// public port per socket: endpoint-independent mapping, on the
	// router's IPv4 address; the masquerade's conntrack filters by
	// address and port. coturn's OTHER-ADDRESS is an IPv4 address, which
	// natcheck reaches through the prefix too (RFC 6052).
	want := Expectation{UDP: true, Mapping: []string{EndpointIndependent}, Filtering: []string{AddressAndPortDependent},
		DirectUDP: []string{"likely"}, WayOut: WayDirectUDP}
	if !ok {
		bad = append(bad, "no families[ipv6]")
	} else {
		for _, b := range want.CheckNatcheck(f, false) {
			bad = append(bad, "ipv6: "+b)
		}
		if len(extra.PublicAddresses) != 1 || !strings.HasPrefix(extra.PublicAddresses[0], RouterWANAddr.String()+":") {
			bad = append(bad, fmt.Sprintf("ipv6: public addresses %q, want one on %v (NAT64 then masquerade)", extra.PublicAddresses, RouterWANAddr))
		}
	}
	if !strings.Contains(rep.Verdict.Summary, "NAT64 (2001:2:0:6464::/96)") {
		bad = append(bad, fmt.Sprintf("summary %q does not name NAT64 and its prefix", rep.Verdict.Summary))
	}
	t.Logf("natcheck: exit %d in %v: nat64 %+v; ipv6 udp=%v mapping=%s filtering=%s type=%s public=%v; summary %q",
		r.ExitCode, r.Duration.Round(time.Millisecond), deref(rep.NAT64), f.UDP, f.NAT.Mapping, f.NAT.Filtering, f.NAT.Type, extra.PublicAddresses, rep.Verdict.Summary)
	if bad != nil {
		t.Errorf("natcheck on an IPv6-only client behind NAT64 is wrong: %q\nstdout: %s\nstderr: %s", bad, r.Stdout, r.Stderr)
	}
	turnThroughNAT64(t, l, bin)
}

// turnThroughNAT64: natcheck turn on the IPv6-only client against coturn
// at its IPv4 address, over UDP and TCP, plain natcheck with --turn over
// UDP, and a 2 s soak, must reach it through NAT64, get an IPv4 relayed
// address, and pass data through the relay to the local peer sockets and
// back, and (but in the soak) between two relayed addresses.
func turnThroughNAT64(t *testing.T, l *Lab, bin string) {
	t.Helper()
	env := []string{"NATCHECK_TURN_PASSWORD=" + l.TURN.Password}
	u := l.TURN.UDP.String()
	for _, run := range []struct {
		name string
		args []string
	}{
		{"natcheck turn", []string{"turn", "--json", "--turn-user", l.TURN.User, "turn:" + u + "?transport=udp", "turn:" + u + "?transport=tcp"}},
		{"natcheck --turn", append(l.NatcheckArgs(), "--turn-user", l.TURN.User, "--turn", "turn:"+u)},
		{"natcheck turn --duration", []string{"turn", "--json", "--turn-user", l.TURN.User, "--duration", "2s", "--no-end-to-end", "turn:" + u}},
	} {
		turnRunThroughNAT64(t, l, bin, run.name, env, run.args)
	}
}

func turnRunThroughNAT64(t *testing.T, l *Lab, bin, name string, env, args []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := l.RunNatcheckWith(ctx, env, bin, args...)
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		OK   *bool `json:"ok"` // natcheck turn's only
		TURN []struct {
			URL           string `json:"url"`
			OK            bool   `json:"ok"`
			Server        string `json:"address"`
			Relayed       string `json:"relayed_address"`
			RelayedFamily string `json:"relayed_family"`
			Mapped        string `json:"mapped_address"`
			Data          *struct {
				Peer     string `json:"peer"`
				Sent     int    `json:"sent"`
				Received int    `json:"received"`
			} `json:"data"`
			EndToEnd *struct {
				Connected bool `json:"connected"`
			} `json:"end_to_end"`
			Soak *struct {
				Total struct {
					Sent     int `json:"sent"`
					Received int `json:"received"`
				} `json:"total"`
			} `json:"soak"`
			Error    string   `json:"error"`
			Warnings []string `json:"warnings"`
		} `json:"turn"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &rep); err != nil {
		t.Fatalf("decoding %s's report: %v\n%s", name, err, r.Stdout)
	}
	var bad []string
	if want := strings.Count(strings.Join(args, " "), "turn:"); r.ExitCode != 0 || (rep.OK != nil && !*rep.OK) || len(rep.TURN) != want {
		bad = append(bad, fmt.Sprintf("exit code %d, ok %v, %d checks; want 0, true, %d", r.ExitCode, deref(rep.OK), len(rep.TURN), want))
	}
	// By hand: coturn's 198.19.0.2 in the prefix; it relays on its own
	// IPv4 address and sees us, and our peer socket, at the router's WAN
	// address (tayga, then masquerade).
	wantServer := "[2001:2:0:6464::c613:2]:3478"
	for _, c := range rep.TURN {
		relayed, _ := netip.ParseAddrPort(c.Relayed)
		mapped, _ := netip.ParseAddrPort(c.Mapped)
		switch {
		case !c.OK:
			bad = append(bad, fmt.Sprintf("%s: failed: %s", c.URL, c.Error))
		case c.Server != wantServer:
			bad = append(bad, fmt.Sprintf("%s: server %s, want %s", c.URL, c.Server, wantServer))
		case c.RelayedFamily != "ipv4" || relayed.Addr() != l.TURN.RelayAddr:
			bad = append(bad, fmt.Sprintf("%s: relayed %s (%s), want on %s", c.URL, c.Relayed, c.RelayedFamily, l.TURN.RelayAddr))
		case mapped.Addr() != RouterWANAddr:
			bad = append(bad, fmt.Sprintf("%s: mapped %s, want on %s", c.URL, c.Mapped, RouterWANAddr))
		case c.Data == nil || c.Data.Received != c.Data.Sent || c.Data.Sent == 0 || !strings.HasPrefix(c.Data.Peer, RouterWANAddr.String()+":"):
			bad = append(bad, fmt.Sprintf("%s: data through the relay %+v, want all back from a peer on %s", c.URL, c.Data, RouterWANAddr))
		case !slices.Contains(args, "--no-end-to-end") && (c.EndToEnd == nil || !c.EndToEnd.Connected):
			bad = append(bad, fmt.Sprintf("%s: end-to-end %+v, want connected", c.URL, c.EndToEnd))
		case slices.Contains(args, "--duration") && (c.Soak == nil || c.Soak.Total.Sent < 20 || c.Soak.Total.Received != c.Soak.Total.Sent):
			// 2 s at 20 packets a second, none lost inside the lab.
			bad = append(bad, fmt.Sprintf("%s: soak %+v, want 20 or more packets, all back", c.URL, deref(c.Soak)))
		case !slices.ContainsFunc(c.Warnings, func(w string) bool { return strings.HasPrefix(w, "reached through NAT64 (prefix 2001:2:0:6464::/96)") }):
			bad = append(bad, fmt.Sprintf("%s: warnings %q do not say NAT64", c.URL, c.Warnings))
		}
		t.Logf("%s %s: server %s relayed %s mapped %s data %+v", name, c.URL, c.Server, c.Relayed, c.Mapped, c.Data)
	}
	if bad != nil {
		t.Errorf("%s on an IPv6-only client behind NAT64 is wrong: %q\nstdout: %s\nstderr: %s", name, bad, r.Stdout, r.Stderr)
	}
}
