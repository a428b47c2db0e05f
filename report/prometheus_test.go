package report

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/natcheck/natcheck/natclass"
)

// parseExposition parses text in the Prometheus text format and fails the
// test if it is not valid.
func parseExposition(t *testing.T, text []byte) map[string]int {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		t.Fatalf("not valid Prometheus text format: %v\n%s", err, text)
	}
	n := map[string]int{}
	for name, mf := range mfs {
		n[name] = len(mf.GetMetric())
	}
	return n
}

// TestPrometheusGolden writes every golden case in the text exposition
// format, checks that it parses and passes promlint, and compares it with
// its golden file.
func TestPrometheusGolden(t *testing.T) {
	for _, c := range goldenCases() {
		t.Run(c.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := WritePrometheus(&b, c.r); err != nil {
				t.Fatal(err)
			}
			families := parseExposition(t, b.Bytes())
			for _, name := range []string{"natcheck_probe_success", "natcheck_run_timestamp_seconds", "natcheck_duration_seconds"} {
				if families[name] != 1 {
					t.Errorf("%s: %d series, want 1", name, families[name])
				}
			}
			checkGolden(t, c.name+".prom", b.Bytes())

			reg := prometheus.NewRegistry()
			if err := RegisterMetrics(reg, c.r); err != nil {
				t.Fatal(err)
			}
			problems, err := testutil.GatherAndLint(reg)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range problems {
				t.Errorf("promlint: %s: %s", p.Metric, p.Text)
			}
		})
	}
}

// TestPrometheusValues holds the values of the main metrics for the
// dual-stack case: a symmetric IPv4 NAT and open IPv6. Every expected value
// is written out: the IPv6 family has no NAT (mapping none) and plain
// servers only, so its filtering cannot be told, which makes its type
// unknown and direct UDP likely (no NAT, whatever the filtering: all rows
// of the hole-punching table it can be in are direct).
func TestPrometheusValues(t *testing.T) {
	r := build(in(symmetric()), in(ipv6Open()))
	reg := prometheus.NewRegistry()
	if err := RegisterMetrics(reg, r); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP natcheck_nat_mapping_info NAT mapping behaviour (RFC 4787): unknown, none, endpoint-independent, address-dependent or address-and-port-dependent. Always 1.
# TYPE natcheck_nat_mapping_info gauge
natcheck_nat_mapping_info{family="ipv4",mapping="address-and-port-dependent"} 1
natcheck_nat_mapping_info{family="ipv6",mapping="none"} 1
# HELP natcheck_nat_type_info Classic NAT type: unknown, open-internet, firewall, full-cone, restricted-cone, port-restricted-cone, symmetric or udp-blocked. Always 1.
# TYPE natcheck_nat_type_info gauge
natcheck_nat_type_info{family="ipv4",type="symmetric"} 1
natcheck_nat_type_info{family="ipv6",type="unknown"} 1
# HELP natcheck_udp_ok 1 when a UDP STUN reply arrived in the address family, else 0. Families not tested are absent.
# TYPE natcheck_udp_ok gauge
natcheck_udp_ok{family="ipv4"} 1
natcheck_udp_ok{family="ipv6"} 1
# HELP natcheck_direct_udp_info Verdict on direct UDP to typical peers: unknown, likely, possible, unlikely or impossible. Always 1.
# TYPE natcheck_direct_udp_info gauge
natcheck_direct_udp_info{family="ipv4",likelihood="unlikely"} 1
natcheck_direct_udp_info{family="ipv6",likelihood="likely"} 1
# HELP natcheck_stun_rtt_seconds Round-trip time of the Binding request to the STUN server over UDP; absent without a reply.
# TYPE natcheck_stun_rtt_seconds gauge
natcheck_stun_rtt_seconds{family="ipv4",server="stun.example.net:3478"} 0.023456
natcheck_stun_rtt_seconds{family="ipv4",server="stun.plain.example:19302"} 0.01104
natcheck_stun_rtt_seconds{family="ipv6",server="stun6a.example:3478"} 0.031
natcheck_stun_rtt_seconds{family="ipv6",server="stun6b.example:3478"} 0.042
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"natcheck_nat_mapping_info", "natcheck_nat_type_info", "natcheck_udp_ok", "natcheck_direct_udp_info", "natcheck_stun_rtt_seconds"); err != nil {
		t.Error(err)
	}
	// Yes/no findings: known ones present, unknown ones absent.
	flags := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "natcheck_nat_flag" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var fam, flag string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "family":
					fam = l.GetValue()
				case "flag":
					flag = l.GetValue()
				}
			}
			flags[fam+"/"+flag] = m.GetGauge().GetValue()
		}
	}
	for k, v := range map[string]float64{"ipv4/behind_nat": 1, "ipv4/mapping_varies_by_destination": 1, "ipv4/port_preservation": 0, "ipv4/hairpin": 0} {
		if got, ok := flags[k]; !ok || got != v {
			t.Errorf("natcheck_nat_flag %s = %v (present %v), want %v", k, got, ok, v)
		}
	}
	if _, ok := flags["ipv4/tcp"]; ok {
		t.Errorf("natcheck_nat_flag ipv4/tcp is present, but TCP was not tested (unknown)")
	}
}

// TestPrometheusSkippedFamily: a family that was not tested has no series.
func TestPrometheusSkippedFamily(t *testing.T) {
	r := build(in(fullConeCGNAT()), skipped("ipv6", "no global IPv6 address on this host"))
	var b bytes.Buffer
	if err := WritePrometheus(&b, r); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), `family="ipv6"`) {
		t.Errorf("a skipped family has series:\n%s", b.String())
	}
	if !strings.Contains(b.String(), `natcheck_nat_flag{family="ipv4",flag="cgnat"} 1`) {
		t.Errorf("no cgnat flag:\n%s", b.String())
	}
}

// TestPrometheusNotMeasured: with nothing measured, natcheck_probe_success
// is 0.
func TestPrometheusNotMeasured(t *testing.T) {
	var b bytes.Buffer
	if err := WritePrometheus(&b, build(in(udpBlocked()))); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"natcheck_probe_success 0", `natcheck_udp_ok{family="ipv4"} 0`, `natcheck_nat_type_info{family="ipv4",type="udp-blocked"} 1`} {
		if !strings.Contains(b.String(), line+"\n") {
			t.Errorf("no line %q in:\n%s", line, b.String())
		}
	}
}

func promTURNChecks() []natclass.TURNCheck {
	expiry := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return []natclass.TURNCheck{
		{
			URL: "turns:turn.example.com:443", Transport: natclass.TURNTransportTLS, Auth: "long-term", User: "alice-do-not-label",
			Connect: 12 * time.Millisecond, TLSHandshake: 30 * time.Millisecond,
			TLS:      &natclass.TLSInfo{Version: "TLS 1.3", NotAfter: expiry, Verified: true},
			Allocate: 40 * time.Millisecond, AllocateRTT: 20 * time.Millisecond, Permission: 15 * time.Millisecond,
			Data:     &natclass.RelayData{Sent: 5, Received: 4, RTTMin: 10 * time.Millisecond, RTTAvg: 12 * time.Millisecond, RTTMax: 20 * time.Millisecond},
			Released: natclass.TriYes, OK: true, Duration: 200 * time.Millisecond,
			EndToEnd: &natclass.EndToEnd{Connected: true, Time: 300 * time.Millisecond},
		},
		{
			URL: "turn:turn.example.com:3478", Transport: natclass.TURNTransportUDP, Auth: "rest", User: "1700000000:bob",
			CredentialExpires: expiry, FailedStep: natclass.TURNStepAllocate, ErrorCode: 401, Error: "wrong credentials",
			Duration: 100 * time.Millisecond,
		},
	}
}

// TestPrometheusTURN holds the TURN metrics, and that no user name appears
// in them.
func TestPrometheusTURN(t *testing.T) {
	r := build(in(portRestricted()))
	addTURN(&r, promTURNChecks(), nil)
	reg := prometheus.NewRegistry()
	if err := RegisterMetrics(reg, r); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP natcheck_turn_ok 1 when data went through the TURN relay and back (and the end-to-end check, when run, connected), else 0.
# TYPE natcheck_turn_ok gauge
natcheck_turn_ok{transport="tls",url="turns:turn.example.com:443"} 1
natcheck_turn_ok{transport="udp",url="turn:turn.example.com:3478"} 0
# HELP natcheck_turn_failed_step_info The step at which a failed TURN check stopped: resolve, connect, tls, allocate, permission, data, end-to-end or soak. Always 1.
# TYPE natcheck_turn_failed_step_info gauge
natcheck_turn_failed_step_info{step="allocate",url="turn:turn.example.com:3478"} 1
# HELP natcheck_turn_error_code STUN error code of the response that failed the TURN check (e.g. 401, 403, 486); absent without one.
# TYPE natcheck_turn_error_code gauge
natcheck_turn_error_code{url="turn:turn.example.com:3478"} 401
# HELP natcheck_turn_allocate_rtt_seconds Round-trip time of the authenticated Allocate request.
# TYPE natcheck_turn_allocate_rtt_seconds gauge
natcheck_turn_allocate_rtt_seconds{url="turns:turn.example.com:443"} 0.02
# HELP natcheck_turn_relay_loss_ratio Fraction of packets through the relay that did not come back, 0 to 1.
# TYPE natcheck_turn_relay_loss_ratio gauge
natcheck_turn_relay_loss_ratio{url="turns:turn.example.com:443"} 0.2
# HELP natcheck_turn_relay_rtt_seconds Round-trip time through the relay to the peer and back: min, avg and max.
# TYPE natcheck_turn_relay_rtt_seconds gauge
natcheck_turn_relay_rtt_seconds{stat="avg",url="turns:turn.example.com:443"} 0.012
natcheck_turn_relay_rtt_seconds{stat="max",url="turns:turn.example.com:443"} 0.02
natcheck_turn_relay_rtt_seconds{stat="min",url="turns:turn.example.com:443"} 0.01
# HELP natcheck_turn_tls_cert_expiry_timestamp_seconds Expiry (notAfter) of the TURN server's leaf TLS certificate, in Unix seconds.
# TYPE natcheck_turn_tls_cert_expiry_timestamp_seconds gauge
natcheck_turn_tls_cert_expiry_timestamp_seconds{url="turns:turn.example.com:443"} 1.767323045e+09
# HELP natcheck_turn_credential_expiry_timestamp_seconds Expiry of the TURN REST credentials made for the check, in Unix seconds.
# TYPE natcheck_turn_credential_expiry_timestamp_seconds gauge
natcheck_turn_credential_expiry_timestamp_seconds{url="turn:turn.example.com:3478"} 1.767323045e+09
# HELP natcheck_turn_end_to_end_ok 1 when two relay-only ICE agents connected through the server, else 0; absent when not run.
# TYPE natcheck_turn_end_to_end_ok gauge
natcheck_turn_end_to_end_ok{url="turns:turn.example.com:443"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"natcheck_turn_ok", "natcheck_turn_failed_step_info", "natcheck_turn_error_code", "natcheck_turn_allocate_rtt_seconds",
		"natcheck_turn_relay_loss_ratio", "natcheck_turn_relay_rtt_seconds", "natcheck_turn_tls_cert_expiry_timestamp_seconds",
		"natcheck_turn_credential_expiry_timestamp_seconds", "natcheck_turn_end_to_end_ok"); err != nil {
		t.Error(err)
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}

	var b bytes.Buffer
	if err := WritePrometheus(&b, r); err != nil {
		t.Fatal(err)
	}
	parseExposition(t, b.Bytes())
	for _, user := range []string{"alice-do-not-label", "bob"} {
		if strings.Contains(b.String(), user) {
			t.Errorf("TURN user name %q appears in the metrics", user)
		}
	}
}

// TestTURNPrometheus covers the report of natcheck turn.
func TestTURNPrometheus(t *testing.T) {
	r := BuildTURN("v0.1.0", started, duration, promTURNChecks(), natclass.VerifiedRelays(promTURNChecks()))
	var b bytes.Buffer
	if err := WriteTURNPrometheus(&b, r); err != nil {
		t.Fatal(err)
	}
	n := parseExposition(t, b.Bytes())
	if n["natcheck_turn_ok"] != 2 || n["natcheck_probe_success"] != 1 {
		t.Errorf("series: %v", n)
	}
	if !strings.Contains(b.String(), "natcheck_probe_success 0\n") {
		t.Errorf("one check failed, yet natcheck_probe_success is not 0:\n%s", b.String())
	}
}

// TestPrometheusDocs: every metric natcheck writes is in docs/prometheus.md.
func TestPrometheusDocs(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "docs", "prometheus.md"))
	if err != nil {
		t.Fatal(err)
	}
	r := reportWithTURN()
	r.Paths = append(r.Paths, Attempt{Transport: "tls", Server: "s", Family: "ipv4", Address: "192.0.2.1:443", Port: 443,
		OK: true, TimeMS: r.Paths[0].TimeMS, CertNotAfter: &started})
	yes := true
	r.AddLifetime(natclass.Lifetime{Lower: 6 * time.Second, Upper: 7 * time.Second, RefreshedByInbound: &yes, RefreshedByOutbound: &yes})
	r.AddPortMapping(portMapped, natclass.PortMappingJudgement{ExternalNotPublic: natclass.TriYes})
	var b bytes.Buffer
	if err := WritePrometheus(&b, r); err != nil {
		t.Fatal(err)
	}
	for name := range parseExposition(t, b.Bytes()) {
		if !bytes.Contains(doc, []byte("`"+name+"`")) {
			t.Errorf("%s is not in docs/prometheus.md", name)
		}
	}
}

// TestPrometheusNAT64: the NAT64 finding is a gauge with its prefix, 0
// when natcheck looked and found none, absent when it did not look.
func TestPrometheusNAT64(t *testing.T) {
	for _, c := range []struct {
		n    *natclass.NAT64
		want string
	}{
		{&natclass.NAT64{Detected: true, Prefix: netip.MustParsePrefix("64:ff9b::/96"), Source: "dns64"}, `natcheck_nat64_detected{prefix="64:ff9b::/96",source="dns64"} 1`},
		{&natclass.NAT64{}, `natcheck_nat64_detected{prefix="",source=""} 0`},
		{nil, ""},
	} {
		r := build(in(fullConeCGNAT()))
		r.NAT64 = c.n
		var b bytes.Buffer
		if err := WritePrometheus(&b, r); err != nil {
			t.Fatal(err)
		}
		got := strings.Contains(b.String(), "natcheck_nat64_detected")
		if c.want == "" && got || c.want != "" && !strings.Contains(b.String(), c.want) {
			t.Errorf("nat64 %+v: want %q in:\n%s", c.n, c.want, b.String())
		}
	}
}
