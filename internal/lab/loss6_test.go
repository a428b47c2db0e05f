package lab

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestLoss6 is TestLoss for IPv6: the router drops 20% of forwarded IPv6
// UDP each way (Loss6Percent, in its forward6 chain) behind nat66 and
// firewall6, with IPv4 masquerade without loss beside it, and natcheck
// runs with coturn and the plain server over both families a few times.
// Its IPv6 diagnosis must never be wrong (right, or unknown with a reason,
// as in TestLoss; judged against Expect6), nor its IPv4 one. It logs how
// many IPv6 answers were unknown and the run times. One counted case per
// IPv6 mode.
func TestLoss6(t *testing.T) {
	if testing.Short() {
		t.Skip("lab: skipped in -short mode")
	}
	SkipIfUnavailable(t)
	t.Parallel()
	const runs, loss = 8, 20
	// The whole test is bounded: no run starts after the deadline (each
	// run is itself bounded to 30 s).
	deadline := time.Now().Add(150 * time.Second)
	for _, mode6 := range []Mode6{NAT66, Firewall6} {
		t.Run(string(mode6), func(t *testing.T) {
			t.Parallel()
			bin := natcheckBinary(t)
			l := New(t, Options{Mode: Masquerade, Mode6: mode6, Loss6Percent: loss})
			counted(t)
			want4, want6 := Expect(Masquerade), Expect6(mode6)
			count := map[string]map[Outcome]int{"ipv4": {}, "ipv6": {}}
			var durations []time.Duration
			done := 0
			for i := 0; i < runs && time.Now().Before(deadline); i++ {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				r, err := l.RunNatcheckWith(ctx, nil, bin, l.natcheckArgs6()...)
				cancel()
				if err != nil {
					t.Fatal(err)
				}
				done++
				durations = append(durations, r.Duration)
				var rep report6
				var reasons struct {
					Families []struct {
						Family  string   `json:"family"`
						Reasons []string `json:"reasons"`
					} `json:"families"`
				}
				if err := errors.Join(json.Unmarshal([]byte(r.Stdout), &rep), json.Unmarshal([]byte(r.Stdout), &reasons)); err != nil {
					t.Fatalf("run %d: decoding report (exit %d): %v\nstdout: %s\nstderr: %s", i, r.ExitCode, err, r.Stdout, r.Stderr)
				}
				for _, fam := range []struct {
					name string
					want Expectation
				}{{"ipv4", want4}, {"ipv6", want6}} {
					f, extra, ok := rep.family(fam.name, r.SchemaVersion)
					if !ok || extra.Skipped != "" {
						t.Errorf("run %d: families[%s] missing or skipped (%q)\nstdout: %s", i, fam.name, extra.Skipped, r.Stdout)
						continue
					}
					outcome, bad := fam.want.JudgeNatcheck(f)
					count[fam.name][outcome]++
					t.Logf("run %d: %s: %s: exit %d in %v: udp=%v mapping=%s filtering=%s type=%s direct_udp=%s way_out=%s %q", i, fam.name, outcome, r.ExitCode,
						r.Duration.Round(time.Millisecond), f.UDP, f.NAT.Mapping, f.NAT.Filtering, f.NAT.Type, f.Verdict.DirectUDP, f.Verdict.WayOut.Via, bad)
					if outcome == Undecided {
						// Unknown with a reason: the family's reasons
						// name each behaviour it could not tell.
						var why []string
						for _, f := range reasons.Families {
							if f.Family == fam.name {
								why = f.Reasons
							}
						}
						for _, b := range []struct{ name, got string }{{"mapping", f.NAT.Mapping}, {"filtering", f.NAT.Filtering}} {
							if b.got == Unknown && !slices.ContainsFunc(why, func(s string) bool { return strings.Contains(strings.ToLower(s), b.name) }) {
								t.Errorf("run %d: %s: %s unknown without a reason naming it: %q", i, fam.name, b.name, why)
							}
						}
						t.Logf("run %d: %s: reasons %q", i, fam.name, why)
					}
					if outcome == Wrong {
						t.Errorf("run %d: %s behind %s + %s with %d%% IPv6 loss gave a wrong answer: %q\nstdout: %s\nstderr: %s",
							i, fam.name, Masquerade, mode6, loss, bad, r.Stdout, r.Stderr)
					}
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := l.Counters(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if c["loss6"] == 0 {
				t.Error("the router's IPv6 loss rule dropped nothing")
			}
			if c["loss"] != 0 {
				t.Errorf("the router dropped %d packets with the loss rule of both families, which this lab does not have", c["loss"])
			}
			if done < runs {
				t.Logf("lab: only %d of %d runs before the deadline", done, runs)
			}
			slowest := time.Duration(0)
			for _, d := range durations {
				slowest = max(slowest, d)
			}
			c6, c4 := count["ipv6"], count["ipv4"]
			t.Logf("lab: %s + %s, %d%% IPv6 UDP loss each way: %d runs: ipv6 %d right, %d unknown, %d wrong; ipv4 %d right, %d unknown, %d wrong; run times %v, slowest %v; the router dropped %d IPv6 UDP packets",
				Masquerade, mode6, loss, done, c6[Right], c6[Undecided], c6[Wrong], c4[Right], c4[Undecided], c4[Wrong],
				roundAll(durations), slowest.Round(time.Millisecond), c["loss6"])
		})
	}
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}
