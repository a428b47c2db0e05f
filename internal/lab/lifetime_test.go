package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

// TestLifetime runs natcheck --lifetime behind the masquerading router
// with its conntrack UDP timeouts set to 6 s (a mapping that saw one
// request and its answer) and 12 s (once traffic went on for more than 2 s:
// "stream"). The bounds must bracket 6 s within the precision asked for,
// and a packet either way half-way must be found to refresh the mapping
// (conntrack renews an entry on every packet).
//
// At 20% loss each way the bounds must still bracket 6 s: a lost answer is
// not an expiry (a check sends again while the loss measured makes its
// silence too likely by chance). Whether traffic refreshes a mapping is
// asserted only without loss: under loss the half-way answer may not
// arrive, and the result is then unknown, with a note.
func TestLifetime(t *testing.T) {
	SkipIfUnavailable(t)
	for _, loss := range []int{0, 20} {
		t.Run(fmt.Sprintf("loss%d", loss), func(t *testing.T) {
			t.Parallel()
			testLifetime(t, loss)
		})
	}
}

func testLifetime(t *testing.T, loss int) {
	l := New(t, Options{Mode: Masquerade, LossPercent: loss})
	bin := natcheckBinary(t)
	counted(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const timeout, precision = 6.0, 1.0
	for _, kv := range []string{"net.netfilter.nf_conntrack_udp_timeout=6", "net.netfilter.nf_conntrack_udp_timeout_stream=12"} {
		if out, err := nsexec(ctx, l.Router, "sysctl", "-w", kv); err != nil {
			t.Skipf("cannot set %s in the router's namespace (%v: %s): this kernel has no per-namespace conntrack timeouts", kv, err, out)
		}
	}
	cmd := l.ClientCommand(ctx, bin, "--stun", l.STUN.String(), "-4", "--udp-only", "--json", "--timeout", "5s",
		"--lifetime", "--lifetime-max", "30s", "--lifetime-precision", "1s")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("natcheck: %v\nstderr: %s", err, stderr.String())
	}
	var r struct {
		Lifetime *struct {
			LowerS     float64  `json:"lower_s"`
			UpperS     *float64 `json:"upper_s"`
			KeepaliveS float64  `json:"keepalive_s"`
			Inbound    *bool    `json:"refreshed_by_inbound"`
			Outbound   *bool    `json:"refreshed_by_outbound"`
			Partial    string   `json:"partial"`
			Error      string   `json:"error"`
			Probes     int      `json:"probes"`
		} `json:"lifetime"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil || r.Lifetime == nil {
		t.Fatalf("report without lifetime (%v): %s", err, stdout.String())
	}
	lt := r.Lifetime
	t.Logf("lifetime %+v, upper %v, in %v; stderr:\n%s", *lt, show2(lt.UpperS), time.Since(start).Round(time.Millisecond), stderr.String())
	if lt.Error != "" || lt.Partial != "" {
		t.Fatalf("error %q, partial %q", lt.Error, lt.Partial)
	}
	if lt.UpperS == nil || lt.LowerS > timeout || *lt.UpperS < timeout {
		t.Errorf("bounds [%v, %v] do not bracket the conntrack timeout %vs", lt.LowerS, show2(lt.UpperS), timeout)
	} else if *lt.UpperS-lt.LowerS > precision {
		t.Errorf("bracket [%v, %v] wider than %vs", lt.LowerS, *lt.UpperS, precision)
	}
	if lt.KeepaliveS <= 0 || lt.KeepaliveS >= timeout {
		t.Errorf("keepalive %vs, want between 0 and %vs", lt.KeepaliveS, timeout)
	}
	if loss > 0 {
		if lt.Inbound != nil && !*lt.Inbound || lt.Outbound != nil && !*lt.Outbound {
			t.Errorf("refreshed by inbound %s, outbound %s; want true or unknown", show(lt.Inbound), show(lt.Outbound))
		}
	} else if lt.Inbound == nil || !*lt.Inbound || lt.Outbound == nil || !*lt.Outbound {
		t.Errorf("refreshed by inbound %s, outbound %s; want true, true", show(lt.Inbound), show(lt.Outbound))
	}
	if !bytes.Contains(stderr.Bytes(), []byte("binding lifetime: done after")) {
		t.Errorf("no progress on stderr: %s", stderr.String())
	}
}

func show2(f *float64) any {
	if f == nil {
		return "null"
	}
	return *f
}
