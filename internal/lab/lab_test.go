package lab

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// casesRan counts the lab cases that ran (were not skipped).
var casesRan atomic.Int64

// labParallel is how many lab tests run at once unless -parallel is given:
// they wait on timers and on the network far more than they compute, so
// the default of GOMAXPROCS (2 on a small CI machine) would only make the
// run long.
const labParallel = 8

func TestMain(m *testing.M) {
	flag.Parse()
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "test.parallel" })
	if p := flag.Lookup("test.parallel"); p != nil && !given && runtime.GOMAXPROCS(0) < labParallel {
		p.Value.Set(strconv.Itoa(labParallel))
	}
	code := m.Run()
	if !testing.Short() {
		fmt.Printf("lab: %d cases ran\n", casesRan.Load())
	}
	natcheckOnce.cleanup()
	os.Exit(code)
}

// counted counts t as a lab case that ran, unless it is skipped.
func counted(t *testing.T) {
	t.Cleanup(func() {
		if !t.Skipped() {
			casesRan.Add(1)
		}
	})
}

// natcheckOnce builds cmd/natcheck once per test binary.
var natcheckOnce builtBinary

// natcheckFlag, if set, is a natcheck binary the lab tests use instead of
// building ../../cmd/natcheck (for instance one built from another branch).
var natcheckFlag = flag.String("lab.natcheck", "", "natcheck `binary` for the lab tests, instead of building ../../cmd/natcheck")

type builtBinary struct {
	sync.Once
	dir string
	bin string
	err error
}

func (n *builtBinary) cleanup() {
	if n.dir != "" {
		os.RemoveAll(n.dir)
	}
}

// natcheckBinary returns the natcheck binary, building it on first use,
// and skips t when cmd/natcheck does not exist yet.
func natcheckBinary(t *testing.T) string {
	t.Helper()
	natcheckOnce.Do(func() {
		if *natcheckFlag != "" {
			natcheckOnce.bin = *natcheckFlag
			if _, err := os.Stat(*natcheckFlag); err != nil {
				natcheckOnce.err = fmt.Errorf("-lab.natcheck: %w", err)
			}
			return
		}
		root, err := ModuleRoot()
		if err != nil {
			natcheckOnce.err = err
			return
		}
		if _, err := os.Stat(filepath.Join(root, "cmd", "natcheck", "main.go")); err != nil {
			natcheckOnce.err = ErrNoNatcheck
			return
		}
		dir, err := os.MkdirTemp("", "natcheck-lab-bin-")
		if err != nil {
			natcheckOnce.err = err
			return
		}
		natcheckOnce.dir = dir
		natcheckOnce.bin, natcheckOnce.err = BuildNatcheck(context.Background(), root, dir)
	})
	if natcheckOnce.err == ErrNoNatcheck {
		t.Skip("lab: natcheck not built: ../../cmd/natcheck does not exist yet")
	}
	if natcheckOnce.err != nil {
		t.Fatal(natcheckOnce.err)
	}
	return natcheckOnce.bin
}

// TestModes builds a lab per router mode and input policy and checks, in
// it, the topology itself, coturn's turnutils_natdiscovery and natcheck.
func TestModes(t *testing.T) {
	if testing.Short() {
		t.Skip("lab: skipped in -short mode")
	}
	SkipIfUnavailable(t)
	for _, mode := range Modes() {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			for _, input := range InputPolicies() {
				t.Run(string(input), func(t *testing.T) {
					t.Parallel()
					testMode(t, mode, input)
				})
			}
		})
	}
}

func testMode(t *testing.T, mode Mode, input InputPolicy) {
	l := New(t, Options{Mode: mode, Input: input})
	want := Expect(mode)
	t.Run("topology", func(t *testing.T) {
		counted(t)
		testTopology(t, l)
	})
	t.Run("natdiscovery", func(t *testing.T) {
		counted(t)
		testNatdiscovery(t, l, want)
	})
	t.Run("natcheck", func(t *testing.T) {
		bin := natcheckBinary(t)
		counted(t)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		r, err := l.RunNatcheck(ctx, bin)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("natcheck: exit %d in %v (duration_ms %d): udp=%v mapping=%s filtering=%s type=%s direct_udp=%s way_out=%s/%d",
			r.ExitCode, r.Duration.Round(time.Millisecond), r.DurationMS, r.UDP, r.NAT.Mapping, r.NAT.Filtering, r.NAT.Type, r.Verdict.DirectUDP,
			r.Verdict.WayOut.Via, r.Verdict.WayOut.Port)
		bad := want.CheckNatcheck(r, false)
		// The TCP and TLS probes run alongside: check that every
		// attempt is there and got as far as the router lets it.
		bad = append(bad, CheckPaths(r.Paths, ExpectPaths(mode, false, mode.BlocksUDP()), l.PublicAddr)...)
		if bad != nil {
			t.Errorf("natcheck behind %s (input %s) is wrong: %q\nstdout: %s\nstderr: %s", mode, l.Input, bad, r.Stdout, r.Stderr)
		}
	})
}

// testTopology checks, with one Binding request from the client, that the
// router maps the client as the mode says (or drops its UDP), and that
// servers and router are reachable as designed: the router's input policy,
// the filtering the kernel does (no natcheck involved) and whether an
// early inbound packet moves the client's port (issue 10).
func testTopology(t *testing.T, l *Lab) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	before, err := l.Counters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Unsolicited packets to the router itself, whatever the mode, are
	// counted; dropped (InputDrop) or accepted (InputAccept), and with
	// either nothing answers them: no socket listens on the router.
	for _, port := range []uint16{STUNPort, 40000} {
		if _, err := l.Binding(l.Internet, netip.AddrPortFrom(PlainSTUNAddr, 0), netip.AddrPortFrom(RouterWANAddr, port), 200*time.Millisecond); err == nil {
			t.Errorf("the router answered an unsolicited packet to port %d", port)
		}
	}
	after, err := l.Counters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after["unsolicited"] <= before["unsolicited"] {
		t.Errorf("router's unsolicited counter did not move (input %s): %d -> %d", l.Input, before["unsolicited"], after["unsolicited"])
	}
	if !strings.Contains(l.Ruleset(), fmt.Sprintf("policy %s;\n\t\tiif \"lo\"", l.Input)) ||
		!strings.Contains(l.Ruleset(), fmt.Sprintf("counter %s comment \"unsolicited\"", l.Input)) {
		t.Errorf("the input chain does not %s unsolicited packets:\n%s", l.Input, l.Ruleset())
	}
	t.Logf("input %s: %d unsolicited packets to the router counted, none answered", l.Input, after["unsolicited"]-before["unsolicited"])

	local := netip.AddrPortFrom(ClientAddr, 0)
	r, err := l.Binding(l.Client, local, l.STUN, 2*time.Second)
	if l.Mode.BlocksUDP() {
		if err == nil {
			t.Fatalf("UDP got through a %s router: %+v", l.Mode, r)
		}
		testTCPOut(t, l)
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("binding: local %v mapped %v other %v from %v", r.Local, r.Mapped, r.Other, r.From)
	if r.Mapped.Addr() != l.PublicAddr {
		t.Errorf("mapped address %v, want public address %v", r.Mapped.Addr(), l.PublicAddr)
	}
	if r.Other != l.STUNAlt {
		t.Errorf("OTHER-ADDRESS %v, want %v (coturn's RFC 5780 is off?)", r.Other, l.STUNAlt)
	}
	if r.From != l.STUN {
		t.Errorf("response from %v, want %v", r.From, l.STUN)
	}
	p, err := l.Binding(l.Client, local, l.PlainSTUN, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if p.Other.IsValid() {
		t.Errorf("plain STUN server sent OTHER-ADDRESS %v", p.Other)
	}

	// The filtering the kernel really does, from packets alone.
	seen, err := probeFiltering(l, 600*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	filtering, err := seen.Filtering()
	if err != nil {
		t.Error(err)
	}
	t.Logf("kernel filtering: %s (socket %v mapped %v, sent only to %v; received: from %v:%d %v, from %v:%d %v, from %v:other port %v, from %v:other port %v)",
		filtering, seen.Local, seen.Mapped, l.STUN, STUNAddr, STUNAltPort, seen.ChangePort, STUNAltAddr, STUNAltPort, seen.ChangeIPPort,
		STUNAddr, seen.SameIP, STUNAltAddr, seen.OtherIP)
	if w := Expect(l.Mode).Filtering; !slices.Contains(w, filtering) {
		t.Errorf("the kernel filters %s behind %s, the expectation says %q", filtering, l.Mode, w)
	}

	// Issue 10: an inbound packet that reaches the client's public port
	// before the client sent anything. With input accept, masquerade
	// records it as a connection to the router and must give the client
	// another port; everywhere else the port is kept.
	if l.Mode == Symmetric {
		return // a new random port per destination anyway
	}
	localPort, publicPort, err := earlyPacket(l)
	if err != nil {
		t.Fatal(err)
	}
	moved := l.Mode == Masquerade && l.Input == InputAccept
	t.Logf("early packet to %v:%d, then the client sends from that port: seen from port %d (moved %v)", l.PublicAddr, localPort, publicPort, publicPort != localPort)
	if (publicPort != localPort) != moved {
		t.Errorf("after an early inbound packet the client's port %d went out as %d; want it moved: %v", localPort, publicPort, moved)
	}
}

// testTCPOut checks which TCP ports get through a router that blocks UDP:
// every port behind udpblocked; behind tls443only only 443, the SYN to any
// other port being dropped (a timeout, not a refusal) and counted.
func testTCPOut(t *testing.T, l *Lab) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	before, err := l.Counters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, port := range []uint16{STUNPort, TURNTLSPort, TLS443Port} {
		dest := netip.AddrPortFrom(STUNAddr, port)
		var c net.Conn
		err := InNetns(l.Client, func() error {
			var err error
			c, err = net.DialTimeout("tcp4", dest.String(), 500*time.Millisecond)
			return err
		})
		if err == nil {
			c.Close()
		}
		open := l.Mode == UDPBlocked || port == TLS443Port
		var ne net.Error
		switch {
		case open && err != nil:
			t.Errorf("TCP to %v: %v, want a connection", dest, err)
		case !open && err == nil:
			t.Errorf("TCP to %v connected through a %s router", dest, l.Mode)
		case !open && !(errors.As(err, &ne) && ne.Timeout()):
			t.Errorf("TCP to %v: %v, want a timeout (SYN dropped, not rejected)", dest, err)
		}
	}
	after, err := l.Counters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if l.Mode == TLS443Only && after["tcp blocked"] <= before["tcp blocked"] {
		t.Errorf("router's tcp-blocked counter did not move: %d -> %d", before["tcp blocked"], after["tcp blocked"])
	}
}

func testNatdiscovery(t *testing.T, l *Lab, want Expectation) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// -L: with its default 0.0.0.0 natdiscovery cannot see "no NAT".
	r, err := l.RunNatdiscovery(ctx, "-L", ClientAddr.String())
	if err != nil {
		t.Fatalf("%v\n%s", err, r.Output)
	}
	t.Logf("natdiscovery -L %s: %v: udp=%v mapping=%q filtering=%q type=%s (%d responses, %d timeouts)",
		ClientAddr, r.Duration.Round(time.Millisecond), r.UDP, r.Mapping, r.Filtering, r.Type, r.Responses, r.Timeouts)
	if bad := want.CheckNatdiscovery(r); bad != nil {
		t.Errorf("natdiscovery behind %s disagrees with the expectation: %q\n%s", l.Mode, bad, r.Output)
	}
}

// TestLoss runs natcheck several times behind onetoone, restricted,
// masquerade and symmetric routers that drop 20% of forwarded UDP each way
// and accept unsolicited input (the hard case, issue 10), all four labs at
// once: natcheck may answer unknown, never wrong.
func TestLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("lab: skipped in -short mode")
	}
	SkipIfUnavailable(t)
	t.Parallel()
	const runs, loss = 8, 20
	// The whole test is bounded: no run starts after the deadline (each
	// run is itself bounded to 30 s).
	deadline := time.Now().Add(150 * time.Second)
	for _, mode := range []Mode{OneToOne, Restricted, Masquerade, Symmetric} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			bin := natcheckBinary(t)
			l := New(t, Options{Mode: mode, Input: InputAccept, LossPercent: loss})
			counted(t)
			want := Expect(mode)
			count := make(map[Outcome]int)
			var durations []time.Duration
			for i := 0; i < runs && time.Now().Before(deadline); i++ {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				r, err := l.RunNatcheck(ctx, bin)
				cancel()
				if err != nil {
					t.Fatal(err)
				}
				durations = append(durations, r.Duration)
				outcome, bad := want.JudgeNatcheck(r)
				count[outcome]++
				t.Logf("run %d: %s: exit %d in %v (duration_ms %d): mapping=%s filtering=%s type=%s direct_udp=%s way_out=%s %q", i, outcome, r.ExitCode,
					r.Duration.Round(time.Millisecond), r.DurationMS, r.NAT.Mapping, r.NAT.Filtering, r.NAT.Type, r.Verdict.DirectUDP, r.Verdict.WayOut.Via, bad)
				if outcome == Wrong {
					t.Errorf("run %d behind %s with %d%% loss and input accept gave a wrong answer: %q\nstdout: %s\nstderr: %s", i, mode, loss, bad, r.Stdout, r.Stderr)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := l.Counters(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if c["loss"] == 0 {
				t.Error("the router's loss rule dropped nothing")
			}
			done := count[Right] + count[Undecided] + count[Wrong]
			if done < runs {
				t.Logf("lab: only %d of %d runs before the deadline", done, runs)
			}
			slowest := time.Duration(0)
			for _, d := range durations {
				slowest = max(slowest, d)
			}
			t.Logf("lab: %s, input accept, %d%% loss each way: %d runs: %d right, %d unknown, %d wrong; slowest %v; the router dropped %d UDP packets, accepted %d unsolicited",
				mode, loss, done, count[Right], count[Undecided], count[Wrong], slowest.Round(time.Millisecond), c["loss"], c["unsolicited"])
		})
	}
}
