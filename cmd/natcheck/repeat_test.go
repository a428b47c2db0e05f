package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/natcheck/natcheck/report"
	"github.com/natcheck/natcheck/turncheck/turntest"
)

func TestRepeatUsageErrors(t *testing.T) {
	for want, args := range map[string][]string{
		"give at least 1s":                   {"--every", "10ms"},
		"--every -1m0s: give a positive":     {"--every", "-1m"},
		"--count needs --every":              {"--count", "3"},
		"--count -1: give a positive number": {"--every", "1m", "--count", "-1"},
		"--every with --format prometheus":   {"--every", "1m", "--format", "prometheus"},
	} {
		code, out, errs := runArgs(t, env{}, args...)
		if code != exitUsage || out != "" || !strings.Contains(errs, want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2 and %q", args, code, out, errs, want)
		}
	}
}

// jsonLines decodes one report per line.
func jsonLines(t *testing.T, out string) []report.Report {
	t.Helper()
	var rs []report.Report
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		var r report.Report
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("not one JSON object per line: %v\n%s", err, out)
		}
		rs = append(rs, r)
	}
	return rs
}

// TestEveryCount: --every with --count runs that many times, one compact
// object per run.
func TestEveryCount(t *testing.T) {
	s := loopbackServer(t)
	code, out, errs := runArgs(t, env{}, "--stun", s.Primary().String(), "-4", "--udp-only", "--every", "1s", "--count", "2", "--format", "json-line")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	rs := jsonLines(t, out)
	if len(rs) != 2 {
		t.Fatalf("%d reports, want 2:\n%s", len(rs), out)
	}
	for _, r := range rs {
		if r.SchemaVersion != report.SchemaVersion || !r.Measured {
			t.Errorf("report: schema %d, measured %v", r.SchemaVersion, r.Measured)
		}
	}
	if !rs[1].StartedAt.After(rs[0].StartedAt) {
		t.Errorf("second run started %v, first %v", rs[1].StartedAt, rs[0].StartedAt)
	}
}

// cancelOnWrite cancels a context on the first write: the first trace
// line of -v, so the interrupt comes while the run is in progress.
type cancelOnWrite struct {
	mu     sync.Mutex
	cancel context.CancelFunc
	b      bytes.Buffer
}

func (c *cancelOnWrite) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cancel()
	return c.b.Write(p)
}

// TestEveryInterrupt: an interrupt (the cancelled context) during a run
// lets that run finish, with its full report, and ends the loop.
func TestEveryInterrupt(t *testing.T) {
	s := loopbackServer(t)
	silent, _ := turntest.Blackhole(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stderr := &cancelOnWrite{cancel: cancel}
	var out bytes.Buffer
	code := run(ctx, []string{"--stun", s.Primary().String(), "--stun", silent.String(), "-4", "--udp-only", "-v",
		"--every", "1m", "--timeout", "5s", "--format", "json-line"}, &out, stderr, env{getenv: noEnv})
	if code != exitOK {
		t.Errorf("exit %d", code)
	}
	rs := jsonLines(t, out.String())
	if len(rs) != 1 {
		t.Fatalf("%d reports, want the one in progress:\n%s", len(rs), out.String())
	}
	r := rs[0]
	if !r.Measured || len(r.Servers) != 2 || !r.Servers[0].Answered {
		t.Fatalf("the run in progress was cut short: %+v", r.Servers)
	}
	// Had the interrupt reached the run, the silent server would be "not
	// tried: the run ended first"; it got its whole window instead.
	if e := r.Servers[1].Error; !strings.HasPrefix(e, "no reply over UDP after") {
		t.Errorf("silent server: %q, want no reply after its sends", e)
	}
}

// TestFormatPrometheus: --format prometheus writes a valid exposition.
func TestFormatPrometheus(t *testing.T) {
	s := loopbackServer(t)
	code, out, errs := runArgs(t, env{}, "--stun", s.Primary().String(), "-4", "--udp-only", "--format", "prometheus")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(out))
	if err != nil {
		t.Fatalf("not a Prometheus exposition: %v\n%s", err, out)
	}
	if v := mfs["natcheck_probe_success"].GetMetric()[0].GetGauge().GetValue(); v != 1 {
		t.Errorf("natcheck_probe_success %v", v)
	}
	for _, name := range []string{"natcheck_stun_rtt_seconds", "natcheck_nat_mapping_info", "natcheck_udp_ok", "natcheck_run_timestamp_seconds"} {
		if mfs[name] == nil {
			t.Errorf("no %s:\n%s", name, out)
		}
	}
}
