package lab

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// serverPeerCase is one site's router against natcheck serve as the
// second peer (`natcheck pair --peer server`), and the outcome the kernel
// gives, written out by hand from the router's rules (never computed by
// natcheck's code).
type serverPeerCase struct {
	site SiteOptions
	// turn, if set, makes the client use coturn over TLS on port 443 for
	// a relay phase (the one TURN a tls443only router lets out).
	turn bool
	// want is the outcome: "direct", "relay" or "failed"; proto the
	// selected pair's protocol when direct: "tcp" where only TCP gets
	// out, "udp" where UDP does (where TCP gets out too, ICE may still
	// nominate its ICE-TCP pair: see TestPairServerPeer).
	want, proto string
	why         string
}

func (c serverPeerCase) name() string {
	n := strings.ReplaceAll(c.site.String(), "/", "-")
	if c.turn {
		n += "-turns443"
	}
	return n
}

// serverPeerCases: every router mode dropping unsolicited input, plus
// masquerade and fully-random masquerade accepting it, and tls443only with
// TURN over TLS on 443.
func serverPeerCases() []serverPeerCase {
	var cases []serverPeerCase
	for _, mode := range Modes() {
		c := serverPeerCase{site: SiteOptions{Mode: mode, Input: InputDrop}, want: "direct", proto: "udp"}
		switch mode {
		case Routed, Firewall, OneToOne, Restricted, Masquerade, Symmetric:
			c.why = "UDP gets out, and the server peer is public and unfiltered: it answers the client's checks from whatever port the router gave them"
		case UDPBlocked:
			c.proto = "tcp"
			c.why = "UDP is dropped, but the router lets every TCP connection out, so the client's active ICE-TCP reaches the server's passive candidate on the --pair-ice port"
		case TLS443Only:
			c.want, c.proto = "failed", ""
			c.why = "UDP is dropped and TCP gets out only to port 443, and the server peer offers ICE-TCP on its --pair-ice port: no direct path, and no TURN given"
		}
		cases = append(cases, c)
	}
	for _, mode := range []Mode{Masquerade, Symmetric} {
		cases = append(cases, serverPeerCase{site: SiteOptions{Mode: mode, Input: InputAccept}, want: "direct", proto: "udp",
			why: "the server's first check to the client's server-reflexive address may be kept by the router as its own connection, so the client's checks leave from another port; the server answers that port (no filtering) and the client's router lets the answer in"})
	}
	// The kernel lets TURN over TLS on 443 out, and coturn's relay reaches
	// the server peer's UDP port inside the internet. But the server peer
	// accepts remote candidates, signaled or peer-reflexive, only at the
	// address the client reached the rendezvous from (docs/pair.md, "The
	// server as the second peer"), and a relay candidate lies on coturn's
	// address: by natcheck serve's documented policy no relay connects.
	cases = append(cases, serverPeerCase{site: SiteOptions{Mode: TLS443Only, Input: InputDrop}, turn: true, want: "failed",
		why: "TURN over TLS on 443 gets out, but the server peer drops candidates that are not at the client's own address (its relay candidate is on coturn), as docs/pair.md says, so natcheck runs no relay phase against it"})
	return cases
}

// serverPeerRow is one case's outcome, for the table logged at the end.
type serverPeerRow struct {
	name, want, predicted, outcome, selected, rule string
	certain, matched                               bool
}

// TestPairServerPeer runs `natcheck pair --peer server` from site A of a
// PairLab, behind each router mode, against natcheck serve --pair-ice in
// the internet namespace, and checks the outcome and the selected pair
// against what the router lets through, and the prediction against the
// outcome wherever the prediction claims certainty.
func TestPairServerPeer(t *testing.T) {
	if testing.Short() {
		t.Skip("lab: skipped in -short mode")
	}
	SkipIfUnavailable(t)
	bin := pairBinary(t)
	if !pairSupport.iceFlag {
		t.Skip("lab: the built natcheck serve has no --pair-ice yet")
	}
	t.Parallel()
	var mu sync.Mutex
	var rows []serverPeerRow
	t.Run("cases", func(t *testing.T) {
		for _, c := range serverPeerCases() {
			t.Run(c.name(), func(t *testing.T) {
				t.Parallel()
				row := testServerPeerCase(t, c, bin)
				mu.Lock()
				rows = append(rows, row)
				mu.Unlock()
			})
		}
	})
	if len(rows) == 0 {
		return
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].name < rows[j].name })
	var b strings.Builder
	fmt.Fprintf(&b, "lab: server peer matrix (%d cases)\n| site | kernel | predicted | outcome | matched | selected | rule |\n|---|---|---|---|---|---|---|\n", len(rows))
	for _, r := range rows {
		pred := r.predicted
		if !r.certain {
			pred += " (not certain)"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %v | %s | %s |\n", r.name, r.want, pred, r.outcome, r.matched, r.selected, r.rule)
	}
	t.Log(b.String())
}

func testServerPeerCase(t *testing.T, c serverPeerCase, bin string) serverPeerRow {
	p := NewPair(t, PairOptions{A: c.site})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := p.StartRendezvous(ctx, bin, "--pair-ice", RendezvousICE.String()); err != nil {
		t.Fatal(err)
	}
	counted(t)
	room := "srv-" + c.name()
	var turn []string
	if c.turn {
		turn = []string{fmt.Sprintf("turns:%s", p.TURN.TLS443)}
	}
	args := append(p.PairArgs(room, pairPhaseTimeout, turn...), "--peer", "server")
	if c.turn {
		args = append(args, "--ca-file", p.TURN.CACertFile)
	}
	r, err := p.RunPair(ctx, p.A, 90*time.Second, bin, args...)
	if err != nil {
		t.Fatal(err)
	}
	pr := r.Pair
	t.Logf("site A (%s): exit %d in %v: predicted %s (certain %v), outcome %s, matched %v, connect_ms %s, rtt_ms %s, loss %s, selected %s; rule: %s",
		c.site, r.ExitCode, r.Duration.Round(time.Millisecond), pr.Predicted, pr.PredictionCertain, pr.Outcome, pr.Matched,
		msString(pr.ConnectMS), msString(pr.RTTMS), msString(pr.Loss), selectedString(r), pr.PredictionRule)
	for _, ph := range pr.Phases {
		t.Logf("phase %s: connected %v, connect_ms %s, error %q", ph.Phase, ph.Connected, msString(ph.ConnectMS), ph.Error)
	}
	for _, bad := range checkServerPeer(c, r) {
		t.Error(bad)
	}
	if c.turn {
		// A relayed candidate cannot reach the server peer (it takes
		// candidates only at its client's address), so natcheck runs no
		// relay phase against it: no allocation, and no phase time spent.
		for _, ph := range pr.Phases {
			if ph.Phase != "direct" {
				t.Errorf("%s: a %s phase ran against the server peer", c.name(), ph.Phase)
			}
		}
	}
	if t.Failed() {
		t.Logf("stdout:\n%s\nstderr:\n%s", r.Stdout, r.Stderr)
	}
	return serverPeerRow{name: c.name(), want: c.want + map[bool]string{true: "/" + c.proto, false: ""}[c.proto != ""],
		predicted: pr.Predicted, certain: pr.PredictionCertain, outcome: pr.Outcome, matched: pr.Matched,
		selected: selectedString(r), rule: pr.PredictionRule}
}

// checkServerPeer returns what is wrong with the client's report of case c.
func checkServerPeer(c serverPeerCase, r PairResult) []string {
	var bad []string
	pr := r.Pair
	where := c.name()
	if r.SchemaVersion != 2 {
		bad = append(bad, fmt.Sprintf("%s: schema_version %d, want 2", where, r.SchemaVersion))
	}
	if pr.Outcome != c.want {
		bad = append(bad, fmt.Sprintf("%s: outcome %q, the kernel gives %s: %s", where, pr.Outcome, c.want, c.why))
	}
	wantExit := 0
	if pr.Outcome == "failed" {
		wantExit = 1
	}
	if r.ExitCode != wantExit {
		bad = append(bad, fmt.Sprintf("%s: exit %d with outcome %q, want %d", where, r.ExitCode, pr.Outcome, wantExit))
	}
	if !slices.Contains([]string{"direct", "relay", "unknown"}, pr.Predicted) {
		bad = append(bad, fmt.Sprintf("%s: predicted %q, want direct, relay or unknown", where, pr.Predicted))
	}
	// Towards a public peer nothing is left to chance: UDP gets out or it
	// does not, and natcheck tries one TCP connection to the ICE-TCP port
	// before it predicts. Every prediction is certain, and holds.
	if !pr.PredictionCertain {
		bad = append(bad, fmt.Sprintf("%s: prediction %q not certain (rule %q): towards the public server peer it can be", where, pr.Predicted, pr.PredictionRule))
	}
	if (pr.Outcome == "direct") != (pr.Predicted == "direct") {
		bad = append(bad, fmt.Sprintf("%s: certain prediction %q, but the outcome is %q (rule %q)", where, pr.Predicted, pr.Outcome, pr.PredictionRule))
	}
	// A public, unfiltered peer: wherever UDP gets out nothing can stop a
	// direct path, so the prediction must be direct and certain.
	if c.proto == "udp" && !(pr.Predicted == "direct" && pr.PredictionCertain) {
		bad = append(bad, fmt.Sprintf("%s: predicted %q (certain %v), but UDP gets out and the server peer is public: direct is certain (rule %q)", where, pr.Predicted, pr.PredictionCertain, pr.PredictionRule))
	}
	wantMatched := pr.Predicted != "unknown" && (pr.Outcome == "direct") == (pr.Predicted == "direct")
	if pr.Matched != wantMatched {
		bad = append(bad, fmt.Sprintf("%s: matched %v with predicted %q and outcome %q", where, pr.Matched, pr.Predicted, pr.Outcome))
	}
	if pr.Outcome != "direct" {
		return bad
	}
	sel := pr.Selected
	if sel == nil || pr.ConnectMS == nil {
		return append(bad, fmt.Sprintf("%s: outcome direct without a selected pair or connect_ms", where))
	}
	if sel.Local.Type == "relay" || sel.Remote.Type == "relay" {
		bad = append(bad, fmt.Sprintf("%s: direct over a relay candidate: %s", where, selectedString(r)))
	}
	// Where UDP gets out, TCP does too (every mode but tls443only lets TCP
	// out), but natcheck gives UDP's higher-ranked pairs time to be
	// nominated first: ICE-TCP only where UDP does not get through.
	if !strings.EqualFold(sel.Local.Protocol, c.proto) || !strings.EqualFold(sel.Local.Protocol, sel.Remote.Protocol) {
		bad = append(bad, fmt.Sprintf("%s: selected %s, want %s on both ends: %s", where, selectedString(r), c.proto, c.why))
	}
	if remote, err := netip.ParseAddrPort(sel.Remote.Address); err != nil || remote != RendezvousICE {
		bad = append(bad, fmt.Sprintf("%s: selected remote %q, want the server peer's --pair-ice address %v", where, sel.Remote.Address, RendezvousICE))
	}
	if sel.Remote.Type != "host" {
		bad = append(bad, fmt.Sprintf("%s: selected remote type %q, want host (the server offers host candidates only)", where, sel.Remote.Type))
	}
	return bad
}
