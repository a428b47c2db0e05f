package lab

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

// pair6Case is a dual-stack pair of sites and what the kernels and
// natcheck pair must do, written by hand.
type pair6Case struct {
	a, b SiteOptions
	// outcome is the path the kernels give, over outcomeFamily.
	outcome, outcomeFamily string
	// predicted, certain and predictedFamilies ("" for absent) are the
	// prediction natcheck must make.
	predicted         string
	certain           bool
	predictedFamilies []string
	why               string
}

func (c pair6Case) name() string {
	return strings.ReplaceAll(c.a.String(), "/", "-") + "_x_" + strings.ReplaceAll(c.b.String(), "/", "-")
}

// pair6Cases are the dual-stack sites of TestPair6, where IPv6 changes the
// path (or must not).
func pair6Cases() []pair6Case {
	sym := func(m6 Mode6) SiteOptions { return SiteOptions{Mode: Symmetric, Mode6: m6, Input: InputDrop} }
	masq := func(m6 Mode6) SiteOptions { return SiteOptions{Mode: Masquerade, Mode6: m6, Input: InputDrop} }
	return []pair6Case{
		{a: sym(Firewall6), b: sym(Firewall6), outcome: "direct", outcomeFamily: "ipv6",
			predicted: "direct", certain: true, predictedFamilies: []string{"ipv6"},
			why: "over IPv4 both sides are symmetric (relay), but over IPv6 there is no NAT, only two stateful firewalls: a check arriving before the other side sent is dropped unconfirmed, the retransmission after that side's own check passes (simultaneous open), and no port can change"},
		{a: masq(Blocked6), b: masq(Firewall6), outcome: "direct", outcomeFamily: "ipv4",
			predicted: "direct", certain: false, predictedFamilies: []string{"ipv4", ""},
			why: "IPv6 UDP is dropped at site A, so IPv6 cannot connect; over IPv4 masquerade keeps the port and an early check goes to the router's input chain and is dropped (input drop): direct over IPv4 as in TestPair, where natcheck cannot see the input policy, so not certain (with input accept the router could give the port away)"},
		{a: sym(NAT66), b: sym(NAT66), outcome: "direct", outcomeFamily: "ipv6",
			predicted: "direct", certain: false, predictedFamilies: []string{"ipv6"},
			why: "over IPv4 both symmetric (relay); NAT66 masquerade is port-restricted over IPv6 (EIM+APDF): direct only if no router gives the port away, not certain; with input drop an early check to the router's IPv6 address is dropped unconfirmed, so the kernel lets direct through"},
	}
}

// TestPair6 runs `natcheck pair` between two dual-stack sites of a PairLab
// for every case of pair6Cases, with natcheck serve as the rendezvous
// (listening on both families) and coturn's IPv4 and IPv6 addresses as
// STUN servers: the outcome and its family against what the kernels must
// do, the prediction and its family against the table written by hand,
// and the selected pair against the peer's public address in that family.
// One counted case each.
func TestPair6(t *testing.T) {
	if testing.Short() {
		t.Skip("lab: skipped in -short mode")
	}
	SkipIfUnavailable(t)
	bin := pairBinary(t)
	t.Parallel()
	for _, c := range pair6Cases() {
		t.Run(c.name(), func(t *testing.T) {
			t.Parallel()
			testPair6Case(t, c, bin)
		})
	}
}

func testPair6Case(t *testing.T, c pair6Case, bin string) {
	p := NewPair(t, PairOptions{A: c.a, B: c.b})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var extra []string
	if pairSupport.iceFlag {
		extra = []string{"--pair-ice", RendezvousICE.String()}
	}
	if _, err := p.StartRendezvous(ctx, bin, extra...); err != nil {
		t.Fatal(err)
	}
	counted(t)
	// The sites' IPv6 first, with packets alone: each client's mapping
	// as coturn sees it over IPv6 (or, behind blocked6, none).
	for _, s := range p.Sites() {
		r, err := p.Binding(s.Client, netip.AddrPortFrom(s.ClientAddr6, 0), p.STUN6, 2*time.Second)
		switch {
		case s.Mode6 == Blocked6 && err == nil:
			t.Fatalf("site %s: IPv6 UDP got through a %s router: %+v", s.Name, s.Mode6, r)
		case s.Mode6 == Blocked6:
		case err != nil:
			t.Fatalf("site %s: IPv6 binding: %v", s.Name, err)
		case r.Mapped.Addr() != s.PublicAddr6:
			t.Fatalf("site %s: IPv6 mapped address %v, want %v", s.Name, r.Mapped, s.PublicAddr6)
		}
	}
	room := "lab6-" + strings.ReplaceAll(c.name(), "+", ".")
	room = room[:min(len(room), 64)]
	argsA := p.PairArgs(room, pairPhaseTimeout, pairTURN(p, p.A)...)
	argsB := p.PairArgs(room, pairPhaseTimeout, pairTURN(p, p.B)...)
	if !slices.Contains(argsA, p.STUN6.String()) {
		t.Fatalf("PairArgs without coturn's IPv6 address: %q", argsA)
	}
	ra, rb, err := p.RunPairBoth(ctx, 90*time.Second, bin, argsA, argsB)
	if err != nil {
		t.Fatal(err)
	}
	results := []PairResult{ra, rb}
	for i, s := range p.Sites() {
		r := results[i].Pair
		t.Logf("site %s (%s+%s/%s): exit %d in %v: predicted %s over %q (certain %v), outcome %s over %q, matched %v, connect_ms %s, selected %s; rule: %s",
			s.Name, s.Mode, s.Mode6, s.Input, results[i].ExitCode, results[i].Duration.Round(time.Millisecond), r.Predicted, r.PredictedFamily,
			r.PredictionCertain, r.Outcome, r.OutcomeFamily, r.Matched, msString(r.ConnectMS), selectedString(results[i]), r.PredictionRule)
		for _, ph := range r.Phases {
			t.Logf("site %s: phase %s: connected %v, connect_ms %s, error %q", s.Name, ph.Phase, ph.Connected, msString(ph.ConnectMS), ph.Error)
		}
	}
	for _, bad := range checkPair6(c, p, ra, rb) {
		t.Error(bad)
	}
	if t.Failed() {
		for i, s := range p.Sites() {
			t.Logf("site %s stdout:\n%s\nstderr:\n%s", s.Name, results[i].Stdout, results[i].Stderr)
		}
	}
}

// checkPair6 returns what is wrong with the two sides' reports of case c.
func checkPair6(c pair6Case, p *PairLab, ra, rb PairResult) []string {
	var bad []string
	for i, s := range p.Sites() {
		r := [2]PairResult{ra, rb}[i]
		peer := p.Peer(s)
		where := fmt.Sprintf("site %s (%s, peer %s)", s.Name, SiteOptions{Mode: s.Mode, Mode6: s.Mode6, Input: s.Input}, SiteOptions{Mode: peer.Mode, Mode6: peer.Mode6, Input: peer.Input})
		pr := r.Pair
		if r.ExitCode != 0 {
			bad = append(bad, fmt.Sprintf("%s: exit %d, want 0 (error %q)", where, r.ExitCode, pr.Error))
		}
		if pr.Outcome != c.outcome || pr.OutcomeFamily != c.outcomeFamily {
			bad = append(bad, fmt.Sprintf("%s: outcome %q over %q, the kernels give %s over %s: %s", where, pr.Outcome, pr.OutcomeFamily, c.outcome, c.outcomeFamily, c.why))
		}
		if pr.Predicted != c.predicted || pr.PredictionCertain != c.certain || !slices.Contains(c.predictedFamilies, pr.PredictedFamily) {
			bad = append(bad, fmt.Sprintf("%s: predicted %q over %q (certain %v, rule %q), want %s over one of %q (certain %v): %s",
				where, pr.Predicted, pr.PredictedFamily, pr.PredictionCertain, pr.PredictionRule, c.predicted, c.predictedFamilies, c.certain, c.why))
		}
		if want := (pr.Outcome == "direct") == (pr.Predicted == "direct") && pr.Predicted != "unknown"; pr.Matched != want {
			bad = append(bad, fmt.Sprintf("%s: matched %v with predicted %q and outcome %q", where, pr.Matched, pr.Predicted, pr.Outcome))
		}
		// The selected pair: a direct pair over UDP between non-relay
		// candidates, to the peer's public address in the outcome's
		// family (what its router really maps it to).
		sel := pr.Selected
		if pr.Outcome != "direct" || sel == nil {
			continue
		}
		want := peer.PublicAddr
		if c.outcomeFamily == "ipv6" {
			want = peer.PublicAddr6
		}
		remote, err := netip.ParseAddrPort(sel.Remote.Address)
		switch {
		case err != nil:
			bad = append(bad, fmt.Sprintf("%s: selected remote address %q: %v", where, sel.Remote.Address, err))
		case remote.Addr().Unmap() != want:
			bad = append(bad, fmt.Sprintf("%s: direct to %v, but the peer's router shows it as %v", where, remote, want))
		}
		if sel.Local.Type == "relay" || sel.Remote.Type == "relay" || !strings.EqualFold(sel.Local.Protocol, "udp") || !strings.EqualFold(sel.Remote.Protocol, "udp") {
			bad = append(bad, fmt.Sprintf("%s: direct pair not over UDP between non-relay candidates: %s", where, selectedString(r)))
		}
	}
	return bad
}
