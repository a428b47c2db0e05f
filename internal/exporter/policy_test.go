package exporter

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/natcheck/natcheck/stunserver"
	"github.com/natcheck/natcheck/stunserver/stuntest"
	"github.com/natcheck/natcheck/turncheck/turntest"
)

// namesResolver answers for the names in its table, exactly as written
// (with or without a trailing dot), and records every name asked.
type namesResolver struct {
	table map[string][]netip.Addr
	mu    sync.Mutex
	asked []string
}

func (r *namesResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	r.asked = append(r.asked, host)
	r.mu.Unlock()
	if a, ok := r.table[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func (r *namesResolver) names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.asked)
}

// steeringServer is a STUN server of an attacker's: on UDP at addr it
// answers every Binding request with XOR-MAPPED-ADDRESS mapped and
// OTHER-ADDRESS other, as /tmp/review/evil.py of the review did.
func steeringServer(t *testing.T, addr string, mapped, other netip.AddrPort) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Skipf("listen udp %s: %v", addr, err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { pc.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			req := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
			if req.Decode() != nil || req.Type != stun.BindingRequest {
				continue
			}
			resp, err := stun.Build(stun.NewTransactionIDSetter(req.TransactionID), stun.BindingSuccess,
				&stun.XORMappedAddress{IP: mapped.Addr().AsSlice(), Port: int(mapped.Port())},
				&stun.OtherAddress{IP: other.Addr().AsSlice(), Port: int(other.Port())})
			if err != nil {
				continue
			}
			pc.WriteTo(resp.Raw, from)
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

// TestAllowlistStopsSteering: an allowed STUN server that names an
// address outside allowed_targets in its answers (OTHER-ADDRESS for the
// RFC 5780 tests and the TCP path probe, XOR-MAPPED-ADDRESS for the
// hairpin test) gets no packet and no connection sent there; the report
// says why. Listing the alternate address lets the tests go there.
func TestAllowlistStopsSteering(t *testing.T) {
	// Where the attacker steers: 127.0.0.3 on two ports, UDP and TCP.
	first := listenSilent(t, "127.0.0.3")  // test II goes to OTHER-ADDRESS's IP, the primary port
	second := listenSilent(t, "127.0.0.3") // OTHER-ADDRESS itself
	A, B := first.port, second.port
	mapped := netip.MustParseAddrPort(fmt.Sprintf("127.0.0.3:%d", A))
	other := netip.MustParseAddrPort(fmt.Sprintf("127.0.0.3:%d", B))
	srv := steeringServer(t, fmt.Sprintf("127.0.0.1:%d", A), mapped, other)
	r := &namesResolver{table: map[string][]netip.Addr{"evil.test.": {netip.MustParseAddr("127.0.0.1")}}}

	module := func(allowed string) string {
		return fmt.Sprintf(`
modules:
  stun:
    kind: stun
    timeout: 3s
    stun:
      family: ipv4
      transports: [udp, tcp]
      hairpin: true
    allowed_targets: [%s]
`, allowed)
	}
	te := newTestExporter(t, module(fmt.Sprintf(`"stun:*.test:%d"`, A)), nil, Options{Resolver: r})
	code, body := te.get(t, probePath("stun", fmt.Sprintf("evil.test:%d", srv.Port()))+"&debug=true", "")
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	// Every send, and the path probe's connection, happened before the
	// answer; the sleep only lets the listeners' goroutines count.
	time.Sleep(100 * time.Millisecond)
	if n := first.got.Load() + second.got.Load(); n != 0 {
		t.Errorf("127.0.0.3 received %d packets or connections; want none:\n%s", n, body)
	}
	want := fmt.Sprintf("127.0.0.3:%d is not in allowed_targets", B)
	if !strings.Contains(body, want) {
		t.Errorf("the report does not say %q:\n%s", want, body)
	}
	if strings.Contains(body, "evil.test.:") {
		t.Errorf("the report shows the fully qualified name, not the target as given:\n%s", body)
	}

	// The operator lists the alternate address: the tests go there.
	te2 := newTestExporter(t, module(fmt.Sprintf(`"stun:*.test:%d", "127.0.0.3:%[1]d", "127.0.0.3:%d"`, A, B)), nil, Options{Resolver: r})
	code, body = te2.get(t, probePath("stun", fmt.Sprintf("evil.test:%d", srv.Port()))+"&debug=true", "")
	if code != http.StatusOK {
		t.Fatalf("listed: status %d: %s", code, body)
	}
	time.Sleep(100 * time.Millisecond)
	if second.got.Load() == 0 {
		t.Errorf("with 127.0.0.3:%d listed, OTHER-ADDRESS received nothing:\n%s", B, body)
	}
}

// TestLookupsFullyQualified: the exporter looks target names up with a
// trailing dot (no search domain applies), for stun and turn modules, and
// shows them as given.
func TestLookupsFullyQualified(t *testing.T) {
	srv := stuntest.Start(t, stunserver.Config{}).Primary()
	turnSrv := turntest.NewServer(t, turntest.Options{})
	loop := []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	// Only the fully qualified names resolve: a lookup without the dot
	// fails the probe.
	r := &namesResolver{table: map[string][]netip.Addr{"stun.test.": loop, "turn.test.": loop}}
	config := fmt.Sprintf(`
modules:
  stun:
    kind: stun
    timeout: 3s
    stun:
      family: ipv4
    allowed_targets: ["stun:stun.test:%d"]
  open:
    kind: stun
    timeout: 3s
    stun:
      family: ipv4
  turn:
    kind: turn
    timeout: 5s
    allowed_targets: ["turn:turn.test:*"]
    turn:
      user: %s
      password_env: PW
`, srv.Port(), turntest.User)
	te := newTestExporter(t, config, env(map[string]string{"PW": turntest.Password}), Options{Resolver: r})
	for _, module := range []string{"stun", "open"} {
		target := fmt.Sprintf("stun.test:%d", srv.Port())
		code, body := te.get(t, probePath(module, target), "")
		ms := metrics(t, body)
		if code != http.StatusOK {
			t.Fatalf("%s: status %d: %s", module, code, body)
		}
		wantMetric(t, ms, "probe_success", 1)
		wantMetric(t, ms, fmt.Sprintf(`natcheck_stun_answered{family="ipv4",server=%q}`, target), 1)
	}
	turnURL := fmt.Sprintf("turn:turn.test:%d", turnSrv.UDP.Port())
	code, body := te.get(t, probePath("turn", turnURL)+"&debug=true", "")
	if code != http.StatusOK || !strings.Contains(body, "success: true") {
		t.Fatalf("turn: status %d:\n%s", code, body)
	}
	if !strings.Contains(body, fmt.Sprintf(`natcheck_turn_ok{transport="udp",url=%q} 1`, turnURL)) {
		t.Errorf("turn: no natcheck_turn_ok 1 labelled with the URL as given:\n%s", body)
	}
	if strings.Contains(body, "sent nothing to the relayed address") {
		t.Errorf("turn: the relayed address on the server's own address was refused:\n%s", body)
	}
	for _, name := range r.names() {
		if !strings.HasSuffix(name, ".") {
			t.Errorf("%q was looked up without the trailing dot (all: %q)", name, r.names())
		}
	}
	if got := r.names(); !slices.Contains(got, "stun.test.") || !slices.Contains(got, "turn.test.") {
		t.Errorf("looked up %q; want stun.test. and turn.test.", got)
	}
}

// TestAllowlistDestinations: where a probe under allowed_targets may
// send, entry by entry; the answers are written out by hand.
func TestAllowlistDestinations(t *testing.T) {
	cfg, err := ParseConfig("t.yml", []byte(`
modules:
  stun:
    kind: stun
    allowed_targets: ["stun:stun.example.com:3478", "stun:*.example.net:3478-3479", "192.0.2.0/24:3479", "[2001:db8::5]:3478", "turn:10.0.0.1:*"]
    stun:
      servers: ["other.example.org:3478"]
  turn:
    kind: turn
    allowed_targets: ["turn:turn.example.com:3478"]
    turn:
      user: u
      password_env: PW
`), env(map[string]string{"PW": "pw"}))
	if err != nil {
		t.Fatal(err)
	}
	resolved := map[string][]netip.Addr{
		"stun.example.com.":  {netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("2001:db8::1")},
		"a.example.net.":     {netip.MustParseAddr("198.51.100.2")},
		"other.example.org.": {netip.MustParseAddr("203.0.113.9")},
		"turn.example.com.":  {netip.MustParseAddr("198.51.100.7")},
		"unrelated.example.": {netip.MustParseAddr("198.51.100.99")},
	}
	lookup := func(al *allowlist, names ...string) {
		res := al.recorder(fqdnResolver{next: &namesResolver{table: resolved}})
		for _, n := range names {
			if _, err := res.LookupNetIP(context.Background(), "ip", n); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		module, target string
		lookups        []string
		yes, no        []string
	}{
		{"stun", "stun.example.com:3478", []string{"stun.example.com", "other.example.org", "unrelated.example"},
			[]string{"198.51.100.1:3478", "[2001:db8::1]:3478", "203.0.113.9:3478", "192.0.2.77:3479", "[2001:db8::5]:3478"},
			[]string{"198.51.100.1:3479", "198.51.100.99:3478", "127.0.0.1:3478", "192.0.2.77:3478", "[2001:db8::5]:3479", "10.0.0.1:3478", "198.51.100.2:3478",
				// udp only: no TLS path probe on the module's server.
				"203.0.113.9:443"}},
		{"stun", "a.example.net:3478", []string{"a.example.net"},
			// *.example.net admits 3478-3479 on what the name resolved to.
			[]string{"198.51.100.2:3478", "198.51.100.2:3479"},
			[]string{"198.51.100.2:3480", "198.51.100.1:3478"}},
		{"turn", "turn:turn.example.com:3478", []string{"turn.example.com"},
			// The TURN server's own address, any port: its relayed addresses.
			[]string{"198.51.100.7:3478", "198.51.100.7:50000"},
			[]string{"198.51.100.8:50000", "10.0.0.1:3478", "127.0.0.1:3478"}},
	} {
		m := cfg.Modules[tc.module]
		c, err := prepare(tc.module, m, tc.target, "test")
		if err != nil {
			t.Fatal(err)
		}
		al := newAllowlist(m, c)
		lookup(al, tc.lookups...)
		for _, d := range tc.yes {
			if err := al.allow(netip.MustParseAddrPort(d)); err != nil {
				t.Errorf("%s %s: %s refused: %v", tc.module, tc.target, d, err)
			}
		}
		for _, d := range tc.no {
			if err := al.allow(netip.MustParseAddrPort(d)); err == nil {
				t.Errorf("%s %s: %s allowed", tc.module, tc.target, d)
			}
		}
	}
}

func TestFQDN(t *testing.T) {
	for in, want := range map[string]string{
		"example.com": "example.com.", "Stun.Example.COM": "Stun.Example.COM.", "example.com.": "example.com.",
		"localhost": "localhost", "coturn": "coturn", "127.0.0.1": "127.0.0.1", "2001:db8::1": "2001:db8::1",
	} {
		if got := fqdn(in); got != want {
			t.Errorf("fqdn(%q) = %q, want %q", in, got, want)
		}
	}
}
