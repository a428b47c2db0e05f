package exporter

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/natcheck/natcheck/stunserver"
	"github.com/natcheck/natcheck/turncheck/turntest"
)

// promSample is one sample of an instant query: its labels and value.
type promSample struct {
	labels map[string]string
	value  string
}

// promQuery asks Prometheus's HTTP API for an instant query.
func promQuery(base, query string) ([]promSample, error) {
	resp, err := http.Get(base + "/api/v1/query?" + url.Values{"query": {query}}.Encode())
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, fmt.Errorf("query %s: %w", query, err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("query %s: %s", query, r.Error)
	}
	var out []promSample
	for _, s := range r.Data.Result {
		v, _ := s.Value[1].(string)
		out = append(out, promSample{s.Metric, v})
	}
	return out, nil
}

// waitQuery polls query, every half second for at most a minute (a
// bound, not a measure: it ends as soon as ok holds), until ok holds for
// its result.
func waitQuery(t *testing.T, base, query, what string, ok func([]promSample) bool, stop func() string) []promSample {
	t.Helper()
	var last []promSample
	var lastErr error
	for range 120 {
		last, lastErr = promQuery(base, query)
		if lastErr == nil && ok(last) {
			return last
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("Prometheus never showed %s for %s: last result %v, error %v\n%s", what, query, last, lastErr, stop())
	return nil
}

func hasValue(v string) func([]promSample) bool {
	return func(s []promSample) bool { return len(s) == 1 && s[0].value == v }
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func readDoc(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "examples", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestWithPrometheus runs a real Prometheus (Debian package prometheus) on
// loopback with the scrape configuration and the alert rule of
// docs/examples, scraping the exporter, which probes a STUN server and a
// TURN server started here. probe_success must become 1; once the STUN
// server is stopped it must become 0 and the alert must go pending.
func TestWithPrometheus(t *testing.T) {
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus not installed (Debian package prometheus): skipping the end-to-end scrape test")
	}
	if testing.Short() {
		t.Skip("-short: skipping the end-to-end scrape test")
	}

	stun, err := stunserver.Start(context.Background(), stunserver.Config{
		Primary: netip.MustParseAddrPort("127.0.0.1:0"), Alternate: netip.MustParseAddrPort("127.0.0.2:0")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stun.Close() })
	turn := turntest.NewServer(t, turntest.Options{})

	// The example module file, plus a TURN module with the test server's
	// credentials.
	modules := readDoc(t, "natcheck-exporter.yml") + fmt.Sprintf(`
  turn_test:
    kind: turn
    allowed_targets: ["127.0.0.1:*"]
    turn:
      user: %s
      password_env: TEST_TURN_PASSWORD
`, turntest.User)
	te := newTestExporter(t, modules, env(map[string]string{
		"NATCHECK_TURN_PASSWORD": "unused-Do-Not-Print", "TEST_TURN_PASSWORD": turntest.Password}), Options{})
	exporterAddr := strings.TrimPrefix(te.srv.URL, "http://")

	// The example scrape configuration with this test's addresses, a
	// second job for TURN, and a one-second rhythm.
	dir := t.TempDir()
	rules := filepath.Join(dir, "natcheck-rules.yml")
	if err := os.WriteFile(rules, []byte(readDoc(t, "natcheck-rules.yml")), 0o600); err != nil {
		t.Fatal(err)
	}
	scrape := readDoc(t, "prometheus.yml")
	for _, s := range []string{"stun.example.com:3478", "127.0.0.1:9469"} {
		if !strings.Contains(scrape, s) {
			t.Fatalf("docs/examples/prometheus.yml no longer holds %s", s)
		}
	}
	scrape = strings.ReplaceAll(scrape, "stun.example.com:3478", stun.Primary().String())
	scrape = strings.ReplaceAll(scrape, "127.0.0.1:9469", exporterAddr)
	turnJob := strings.NewReplacer("natcheck_stun", "natcheck_turn", "[stun]", "[turn_test]", stun.Primary().String(), "turn:"+turn.UDP.String())
	stunJob := strings.TrimPrefix(scrape, "scrape_configs:\n")
	selfJob := fmt.Sprintf("  - job_name: natcheck_exporter\n    static_configs: [{targets: [%q]}]\n", exporterAddr)
	config := fmt.Sprintf("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nrule_files:\n  - %s\n%s%s%s",
		rules, scrape, turnJob.Replace(stunJob), selfJob)
	configFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(configFile, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	if promtool, err := exec.LookPath("promtool"); err == nil {
		for _, args := range [][]string{{"check", "rules", rules}, {"check", "config", configFile}} {
			if out, err := exec.Command(promtool, args...).CombinedOutput(); err != nil {
				t.Fatalf("promtool %v: %v\n%s", args, err, out)
			}
		}
	}

	webAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	var promOut bytes.Buffer
	cmd := exec.Command(promBin, "--config.file="+configFile, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+webAddr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = &promOut, &promOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	stop := func() string {
		if !stopped {
			stopped = true
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(20 * time.Second):
				cmd.Process.Kill()
				<-exited
			}
		}
		return "prometheus output:\n" + promOut.String() + "\nexporter log:\n" + te.log.String()
	}
	t.Cleanup(func() { stop() })
	base := "http://" + webAddr

	waitQuery(t, base, `probe_success{job="natcheck_stun"}`, "1", hasValue("1"), stop)
	rtt := waitQuery(t, base, `natcheck_stun_rtt_seconds{job="natcheck_stun"}`, "the STUN round-trip time",
		func(s []promSample) bool { return len(s) > 0 }, stop)
	dur := waitQuery(t, base, `probe_duration_seconds{job="natcheck_stun"}`, "the probe duration",
		func(s []promSample) bool { return len(s) == 1 }, stop)
	t.Logf("through Prometheus: STUN probe_duration_seconds %s, natcheck_stun_rtt_seconds %s (%s)", dur[0].value, rtt[0].value, rtt[0].labels["server"])
	if inst := dur[0].labels["instance"]; inst != stun.Primary().String() {
		t.Errorf("instance label %q, want the target %s (relabelling)", inst, stun.Primary())
	}
	waitQuery(t, base, `probe_success{job="natcheck_turn"}`, "1", hasValue("1"), stop)
	waitQuery(t, base, `natcheck_turn_relay_loss_ratio{job="natcheck_turn"}`, "0", hasValue("0"), stop)
	turnDur := waitQuery(t, base, `probe_duration_seconds{job="natcheck_turn"}`, "the TURN probe duration",
		func(s []promSample) bool { return len(s) == 1 }, stop)
	t.Logf("through Prometheus: TURN probe_duration_seconds %s", turnDur[0].value)
	waitQuery(t, base, `up{job="natcheck_exporter"}`, "1", hasValue("1"), stop)
	waitQuery(t, base, `natcheck_exporter_probes_total{module="stun",result="success"} > 0`, "successful probes",
		func(s []promSample) bool { return len(s) == 1 }, stop)

	// The scrape timeout (1 s) less the offset (0.5 s) bounded the probes.
	if !strings.Contains(te.log.String(), "timeout=500ms") {
		t.Errorf("the exporter did not follow %s:\n%s", ScrapeTimeoutHeader, te.log.String())
	}

	// Stop the STUN server: probe_success goes to 0, the alert pending.
	if err := stun.Close(); err != nil {
		t.Fatal(err)
	}
	waitQuery(t, base, `probe_success{job="natcheck_stun"}`, "0", hasValue("0"), stop)
	waitQuery(t, base, `up{job="natcheck_stun"}`, "1 (a down target is not a failed scrape)", hasValue("1"), stop)
	alert := waitQuery(t, base, `ALERTS{alertname="STUNServerDown"}`, "the alert", func(s []promSample) bool { return len(s) == 1 }, stop)
	if got := alert[0].labels["alertstate"]; got != "pending" {
		t.Errorf("alert state %q, want pending (for: 2m)", got)
	}
	if got := alert[0].labels["instance"]; got != stun.Primary().String() {
		t.Errorf("alert instance %q, want %s", got, stun.Primary())
	}

	// Nothing of the TURN credentials reached Prometheus.
	for _, q := range []string{`{__name__=~"natcheck_.+|probe_.+"}`} {
		s, err := promQuery(base, q)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(s)
		for _, secret := range []string{turntest.Password, "unused-Do-Not-Print"} {
			if strings.Contains(fmt.Sprint(s), secret) || bytes.Contains(b, []byte(secret)) {
				t.Errorf("%q reached Prometheus", secret)
			}
		}
	}
}

// TestDocsHoldExamples: the scrape configuration and the alert rule in
// docs/prometheus.md are the files the Prometheus test runs.
func TestDocsHoldExamples(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "prometheus.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"prometheus.yml", "natcheck-rules.yml"} {
		if !strings.Contains(string(doc), "```yaml\n"+readDoc(t, name)+"```\n") {
			t.Errorf("docs/prometheus.md does not hold docs/examples/%s as it is", name)
		}
	}
}
