package exporter

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/natcheck/natcheck/internal/syncbuf"
	"github.com/natcheck/natcheck/stunserver"
	"github.com/natcheck/natcheck/stunserver/stuntest"
	"github.com/natcheck/natcheck/turncheck/turntest"
)

// env is a getenv over a map.
func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// testExporter is an exporter behind an httptest server on 127.0.0.1, with
// its debug log.
type testExporter struct {
	*Exporter
	srv *httptest.Server
	log *syncbuf.Buffer
}

func newTestExporter(t *testing.T, config string, getenv func(string) string, o Options) *testExporter {
	t.Helper()
	cfg, err := ParseConfig("test.yml", []byte(config), getenv)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	logs := &syncbuf.Buffer{}
	o.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	o.Version = "test"
	e, err := New(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e.Handler())
	t.Cleanup(srv.Close)
	return &testExporter{Exporter: e, srv: srv, log: logs}
}

// get fetches path with an optional scrape timeout header and returns the
// status and body.
func (te *testExporter) get(t *testing.T, path, scrapeTimeout string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, te.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if scrapeTimeout != "" {
		req.Header.Set(ScrapeTimeoutHeader, scrapeTimeout)
	}
	resp, err := te.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func probePath(module, target string) string {
	return "/probe?" + url.Values{"module": {module}, "target": {target}}.Encode()
}

// metrics parses an exposition into "name{labels}" -> value, labels
// sorted by name as the text format writes them.
func metrics(t *testing.T, body string) map[string]float64 {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("not a Prometheus exposition: %v\n%s", err, body)
	}
	out := map[string]float64{}
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			key := name
			if len(ls) > 0 {
				key += "{" + strings.Join(ls, ",") + "}"
			}
			switch {
			case m.GetGauge() != nil:
				out[key] = m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				out[key] = m.GetCounter().GetValue()
			case m.GetUntyped() != nil:
				out[key] = m.GetUntyped().GetValue()
			}
		}
	}
	return out
}

func wantMetric(t *testing.T, ms map[string]float64, key string, want float64) {
	t.Helper()
	got, ok := ms[key]
	if !ok {
		t.Errorf("no %s", key)
		return
	}
	if got != want {
		t.Errorf("%s = %v, want %v", key, got, want)
	}
}

const stunModules = `
modules:
  stun:
    kind: stun
    timeout: 5s
  short:
    kind: stun
    timeout: 1s
    stun:
      family: ipv4
`

func TestProbeSTUN(t *testing.T) {
	srv := stuntest.Start(t, stunserver.Config{})
	te := newTestExporter(t, stunModules, nil, Options{})
	target := srv.Primary().String()
	code, body := te.get(t, probePath("stun", target), "")
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	ms := metrics(t, body)
	wantMetric(t, ms, "probe_success", 1)
	if ms["probe_duration_seconds"] <= 0 {
		t.Errorf("probe_duration_seconds = %v", ms["probe_duration_seconds"])
	}
	wantMetric(t, ms, fmt.Sprintf(`natcheck_stun_answered{family="ipv4",server=%q}`, target), 1)
	wantMetric(t, ms, fmt.Sprintf(`natcheck_stun_rfc5780{family="ipv4",server=%q}`, target), 1)
	wantMetric(t, ms, fmt.Sprintf(`natcheck_path_ok{family="ipv4",port="%d",server=%q,transport="udp"}`, srv.Primary().Port(), target), 1)
	wantMetric(t, ms, `natcheck_udp_ok{family="ipv4"}`, 1)
	// Loopback: no NAT, and the RFC 5780 tests ran against 127.0.0.2.
	wantMetric(t, ms, `natcheck_nat_mapping_info{family="ipv4",mapping="none"}`, 1)
	wantMetric(t, ms, `natcheck_nat_flag{family="ipv4",flag="behind_nat"}`, 0)
	if _, ok := ms[fmt.Sprintf(`natcheck_stun_rtt_seconds{family="ipv4",server=%q}`, target)]; !ok {
		t.Errorf("no natcheck_stun_rtt_seconds:\n%s", body)
	}
	if _, ok := ms["natcheck_probe_success"]; ok {
		t.Error("the exporter serves natcheck_probe_success; probe_success is its success metric")
	}

	// The exporter's own metrics count it.
	_, self := te.get(t, "/metrics", "")
	sm := metrics(t, self)
	wantMetric(t, sm, `natcheck_exporter_probes_total{module="stun",result="success"}`, 1)
	wantMetric(t, sm, `natcheck_exporter_probes_total{module="stun",result="failure"}`, 0)
	wantMetric(t, sm, `natcheck_exporter_probes_in_flight`, 0)
	if !strings.Contains(te.log.String(), "success=true") {
		t.Errorf("no debug line for the probe:\n%s", te.log.String())
	}
}

// TestProbeSTUNTransports checks UDP, TCP and TLS on one server, and a
// module without UDP.
func TestProbeSTUNTransports(t *testing.T) {
	ca := turntest.NewCA(t)
	srv := stuntest.Start(t, stunserver.Config{TCP: true,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{ca.Cert}, MinVersion: tls.VersionTLS12}, TLSAddrs: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}})
	tlsPort := srv.TLSAddrs()[0].Port()
	config := fmt.Sprintf(`
modules:
  all:
    kind: stun
    stun:
      transports: [udp, tcp, tls]
      tls_ports: [%d]
      ca_file: %s
  stream:
    kind: stun
    stun:
      transports: [tcp, tls]
      tls_ports: [%[1]d]
      ca_file: %[2]s
`, tlsPort, ca.File)
	te := newTestExporter(t, config, nil, Options{})
	target := srv.Primary().String()
	for _, module := range []string{"all", "stream"} {
		t.Run(module, func(t *testing.T) {
			code, body := te.get(t, probePath(module, target), "")
			if code != http.StatusOK {
				t.Fatalf("status %d: %s", code, body)
			}
			ms := metrics(t, body)
			wantMetric(t, ms, "probe_success", 1)
			tcpName, tlsName := target, target
			if module == "stream" {
				tcpName = "stun:" + target + "?transport=tcp"
				tlsName = fmt.Sprintf("stuns:127.0.0.1:%d", tlsPort)
				if ms[`natcheck_udp_ok{family="ipv4"}`] == 1 {
					t.Errorf("a module without udp sent UDP:\n%s", body)
				}
			}
			wantMetric(t, ms, fmt.Sprintf(`natcheck_path_ok{family="ipv4",port="%d",server=%q,transport="tcp"}`, srv.Primary().Port(), tcpName), 1)
			wantMetric(t, ms, fmt.Sprintf(`natcheck_path_ok{family="ipv4",port="%d",server=%q,transport="tls"}`, tlsPort, tlsName), 1)
			wantMetric(t, ms, fmt.Sprintf(`natcheck_path_tls_cert_verified{family="ipv4",port="%d",server=%q}`, tlsPort, tlsName), 1)
			if _, ok := ms[fmt.Sprintf(`natcheck_path_tls_cert_expiry_timestamp_seconds{family="ipv4",port="%d",server=%q}`, tlsPort, tlsName)]; !ok {
				t.Errorf("no certificate expiry:\n%s", body)
			}
		})
	}
}

// TestProbeHangs probes a UDP socket that never answers: the probe ends at
// its timeout with probe_success 0, and the debug page says why.
func TestProbeHangs(t *testing.T) {
	udp, _ := turntest.Blackhole(t)
	te := newTestExporter(t, stunModules, nil, Options{})
	code, body := te.get(t, probePath("short", udp.String())+"&debug=true", "")
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	for _, want := range []string{"success: false", "timeout: 1s", "why: udp " + udp.String(), "probe_success 0"} {
		if !strings.Contains(body, want) {
			t.Errorf("no %q in the debug page:\n%s", want, body)
		}
	}
	// Prometheus's scrape timeout, less the offset, caps the module's.
	code, body = te.get(t, probePath("stun", udp.String())+"&debug=true", "1.5")
	if code != http.StatusOK || !strings.Contains(body, "timeout: 1s\n") || !strings.Contains(body, "probe_success 0") {
		t.Errorf("with a 1.5 s scrape timeout: status %d:\n%s", code, body)
	}
	// The module's caps Prometheus's.
	code, body = te.get(t, probePath("short", udp.String())+"&debug=true", "30")
	if code != http.StatusOK || !strings.Contains(body, "timeout: 1s\n") {
		t.Errorf("with a 30 s scrape timeout: status %d:\n%s", code, body)
	}
}

func TestScrapeBudget(t *testing.T) {
	for _, c := range []struct {
		header string
		want   string
		bad    bool
	}{
		{"", "0s", false},
		{"10", "9.5s", false},
		{"1.5", "1s", false},
		{"0.6", "300ms", false}, // at least half the scrape timeout
		{"0", "", true},
		{"-1", "", true},
		{"abc", "", true},
		{"NaN", "", true},
		{"+Inf", "", true},
	} {
		h := http.Header{}
		if c.header != "" {
			h.Set(ScrapeTimeoutHeader, c.header)
		}
		got, err := scrapeBudget(h, DefaultTimeoutOffset)
		if (err != nil) != c.bad {
			t.Errorf("%q: err %v, want error %v", c.header, err, c.bad)
			continue
		}
		if !c.bad && got.String() != c.want {
			t.Errorf("%q: %v, want %s", c.header, got, c.want)
		}
	}
}

// TestBadRequests: every bad request gets 400 with a one-line message
// that says what is wrong, and is counted.
func TestBadRequests(t *testing.T) {
	te := newTestExporter(t, stunModules, nil, Options{})
	for _, c := range []struct {
		name, path, header, want string
	}{
		{"unknown module", probePath("nope", "127.0.0.1:3478"), "", `unknown module "nope"; modules: short, stun`},
		{"missing module", "/probe?target=127.0.0.1:3478", "", "missing module parameter"},
		{"missing target", "/probe?module=stun", "", "missing target parameter"},
		{"empty target", "/probe?module=stun&target=", "", "missing target parameter"},
		{"bad port", probePath("stun", "127.0.0.1:99999"), "", `target: `},
		{"bad scheme", probePath("stun", "http://127.0.0.1"), "", `target: `},
		{"turn URL to a stun module", probePath("stun", "turn:127.0.0.1"), "", `target: `},
		{"unclosed bracket", probePath("stun", "[::1"), "", `target: `},
		{"control character", probePath("stun", "127.0.0.1\n:3478"), "", `control characters`},
		{"too long", probePath("stun", strings.Repeat("a", 600)), "", "longer than"},
		{"credentials", probePath("stun", "stun:user:hunter2@127.0.0.1"), "", "credentials do not belong in the target"},
		{"query value", probePath("stun", "stun:127.0.0.1?key=hunter2"), "", `target: server "stun:127.0.0.1?key=REDACTED": unknown parameter; only transport=udp|tcp is allowed`},
		{"escaped query value", probePath("stun", "stun:127.0.0.1?transport=tcp&k=%22hunter2%22"), "", `target: `},
		{"query value of a turn URL", probePath("stun", "turn:127.0.0.1?secret=hunter2"), "", `target: `},
		{"bad scrape timeout", probePath("stun", "127.0.0.1:3478"), "soon", ScrapeTimeoutHeader},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, body := te.get(t, c.path, c.header)
			if code != http.StatusBadRequest {
				t.Errorf("status %d, want 400: %s", code, body)
			}
			if !strings.Contains(body, c.want) {
				t.Errorf("body %q does not say %q", body, c.want)
			}
			if strings.Count(body, "\n") != 1 || !strings.HasSuffix(body, "\n") {
				t.Errorf("body is not one line: %q", body)
			}
			if strings.Contains(body, "hunter2") {
				t.Errorf("the error page quotes a password: %q", body)
			}
		})
	}
	_, self := te.get(t, "/metrics", "")
	sm := metrics(t, self)
	wantMetric(t, sm, `natcheck_exporter_requests_rejected_total{reason="unknown_module"}`, 2)
	wantMetric(t, sm, `natcheck_exporter_requests_rejected_total{reason="bad_target"}`, 12)
	wantMetric(t, sm, `natcheck_exporter_requests_rejected_total{reason="bad_timeout"}`, 1)
	wantMetric(t, sm, `natcheck_exporter_probes_total{module="stun",result="success"}`, 0)
	if strings.Contains(te.log.String(), "hunter2") {
		t.Errorf("the log quotes a password:\n%s", te.log.String())
	}
}

// holdProbes replaces the exporter's checks with ones that block until
// released, and records how many ran at once.
type holdProbes struct {
	started chan struct{}
	release chan struct{}
	running atomic.Int32
	most    atomic.Int32
}

func hold(e *Exporter) *holdProbes {
	h := &holdProbes{started: make(chan struct{}, 100), release: make(chan struct{})}
	e.run = func(ctx context.Context, _ check) outcome {
		n := h.running.Add(1)
		for {
			m := h.most.Load()
			if n <= m || h.most.CompareAndSwap(m, n) {
				break
			}
		}
		h.started <- struct{}{}
		select {
		case <-h.release:
		case <-ctx.Done():
		}
		h.running.Add(-1)
		return outcome{success: true}
	}
	return h
}

// TestConcurrencyBusy: with every slot taken and no queue, a probe gets
// 503, which Prometheus records as a failed scrape (up 0), not as a target
// down.
func TestConcurrencyBusy(t *testing.T) {
	te := newTestExporter(t, stunModules, nil, Options{MaxConcurrent: 1, QueueTimeout: -1})
	h := hold(te.Exporter)
	done := make(chan int, 1)
	go func() {
		code, _ := te.get(t, probePath("stun", "127.0.0.1:3478"), "")
		done <- code
	}()
	<-h.started
	code, body := te.get(t, probePath("stun", "127.0.0.1:3478"), "")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "too many probes at once (1 running)") {
		t.Errorf("second probe: status %d: %q, want 503", code, body)
	}
	close(h.release)
	if code := <-done; code != http.StatusOK {
		t.Errorf("first probe: status %d", code)
	}
	_, self := te.get(t, "/metrics", "")
	sm := metrics(t, self)
	wantMetric(t, sm, `natcheck_exporter_requests_rejected_total{reason="busy"}`, 1)
	wantMetric(t, sm, `natcheck_exporter_max_concurrent_probes`, 1)
	wantMetric(t, sm, `natcheck_exporter_probes_in_flight`, 0)
}

// TestConcurrencyQueue: probes beyond the bound wait for a slot; no more
// than the bound ever run at once.
func TestConcurrencyQueue(t *testing.T) {
	const bound, probes = 2, 8
	te := newTestExporter(t, stunModules, nil, Options{MaxConcurrent: bound, QueueTimeout: 60e9})
	h := hold(te.Exporter)
	codes := make(chan int, probes)
	for range probes {
		go func() {
			code, _ := te.get(t, probePath("stun", "127.0.0.1:3478"), "")
			codes <- code
		}()
	}
	// Release each probe once it runs; a probe refused at once ends the
	// wait for it.
	for done := 0; done < probes; {
		select {
		case <-h.started:
			h.release <- struct{}{}
		case code := <-codes:
			done++
			if code != http.StatusOK {
				t.Errorf("status %d", code)
			}
		}
	}
	if m := h.most.Load(); m > bound || m < 1 {
		t.Errorf("%d probes ran at once; the bound is %d", m, bound)
	}
}

// TestProbeTURN checks a pion TURN server over UDP, TCP and TLS with long-
// term and REST credentials from the environment and from files, and that
// no credential appears in any output: metrics, debug page, log.
func TestProbeTURN(t *testing.T) {
	srv := turntest.NewServer(t, turntest.Options{})
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte(turntest.Secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	config := fmt.Sprintf(`
modules:
  turn:
    kind: turn
    timeout: 10s
    allowed_targets: ["127.0.0.0/8:*"]
    turn:
      user: %s
      password_env: TEST_TURN_PASSWORD
      ca_file: %s
  turn_rest:
    kind: turn
    allowed_targets: ["127.0.0.1:*"]
    turn:
      transports: [udp, tls]
      tls_port: %d
      user: alice-monitor
      secret_file: %s
      credential_lifetime: 1h
      packets: 3
      ca_file: %[2]s
  turn_wrong:
    kind: turn
    allowed_targets: ["turn:127.0.0.1:*", "turns:127.0.0.1:*"]
    turn:
      user: %[1]s
      password_env: TEST_WRONG_PASSWORD
`, turntest.User, srv.CAFile, srv.TLS.Port(), secretFile)
	getenv := env(map[string]string{"TEST_TURN_PASSWORD": turntest.Password, "TEST_WRONG_PASSWORD": "wrong-Do-Not-Print-1a2b"})
	te := newTestExporter(t, config, getenv, Options{})
	var all strings.Builder

	for _, u := range srv.URLs() {
		code, body := te.get(t, probePath("turn", u), "")
		all.WriteString(body)
		if code != http.StatusOK {
			t.Fatalf("%s: status %d: %s", u, code, body)
		}
		ms := metrics(t, body)
		wantMetric(t, ms, "probe_success", 1)
		wantMetric(t, ms, fmt.Sprintf(`natcheck_turn_relay_loss_ratio{url=%q}`, u), 0)
		for _, name := range []string{"natcheck_turn_allocate_rtt_seconds", "natcheck_turn_permission_seconds"} {
			if _, ok := ms[fmt.Sprintf(`%s{url=%q}`, name, u)]; !ok {
				t.Errorf("%s: no %s:\n%s", u, name, body)
			}
		}
		if strings.HasPrefix(u, "turns:") {
			if _, ok := ms[fmt.Sprintf(`natcheck_turn_tls_cert_expiry_timestamp_seconds{url=%q}`, u)]; !ok {
				t.Errorf("%s: no certificate expiry:\n%s", u, body)
			}
		}
	}

	// HOST:PORT over two transports (the test server's TCP port is not its
	// UDP port), REST credentials from a file.
	code, body := te.get(t, probePath("turn_rest", srv.UDP.String())+"&debug=true", "")
	all.WriteString(body)
	if code != http.StatusOK || !strings.Contains(body, "success: true") {
		t.Fatalf("turn_rest: status %d:\n%s", code, body)
	}
	if n := strings.Count(body, "natcheck_turn_ok{"); n != 2 {
		t.Errorf("%d natcheck_turn_ok series, want 2:\n%s", n, body)
	}

	// Wrong password: probe_success 0, the failed step says allocate.
	code, body = te.get(t, probePath("turn_wrong", srv.URLs()[0])+"&debug=true", "")
	all.WriteString(body)
	if code != http.StatusOK || !strings.Contains(body, "probe_success 0") ||
		!strings.Contains(body, `natcheck_turn_failed_step_info{step="allocate"`) {
		t.Errorf("wrong password: status %d:\n%s", code, body)
	}

	_, landing := te.get(t, "/", "")
	_, self := te.get(t, "/metrics", "")
	all.WriteString(landing + self + te.log.String())
	out := all.String()
	for _, secret := range []string{turntest.Password, turntest.Secret, "wrong-Do-Not-Print-1a2b", "alice-monitor"} {
		if strings.Contains(out, secret) {
			t.Errorf("%q appears in the exporter's output", secret)
		}
	}
}

func TestLanding(t *testing.T) {
	te := newTestExporter(t, stunModules, nil, Options{})
	code, body := te.get(t, "/", "")
	if code != http.StatusOK || !strings.Contains(body, "short: stun, timeout 1s") {
		t.Errorf("landing page: %d\n%s", code, body)
	}
	if code, _ := te.get(t, "/-/healthy", ""); code != http.StatusOK {
		t.Errorf("/-/healthy: %d", code)
	}
	if code, _ := te.get(t, "/nothing", ""); code != http.StatusNotFound {
		t.Errorf("/nothing: %d", code)
	}
}
