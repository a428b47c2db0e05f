package exporter

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/natcheck/natcheck/stunserver"
	"github.com/natcheck/natcheck/stunserver/stuntest"
)

// TestTargetPatterns: allowed_targets match whole host names, whole
// labels under a *. wildcard, IP prefixes, and ports; never substrings.
// The expected answers are written out by hand.
func TestTargetPatterns(t *testing.T) {
	for _, c := range []struct {
		pattern string
		allow   []string // endpoints as scheme:host:port, written as the probe would contact them
		deny    []string
	}{
		{"turn:turn.example.com:3478",
			[]string{"turn:turn.example.com:3478", "turn:TURN.Example.COM.:3478"},
			[]string{"turn:turn.example.com.evil.org:3478", "turn:evilturn.example.com:3478", "turn:x.turn.example.com:3478",
				"turns:turn.example.com:3478", "turn:turn.example.com:3479", "turn:turn.example.co:3478", "stun:turn.example.com:3478"}},
		{"turn:turn.example.com", // the scheme's default port
			[]string{"turn:turn.example.com:3478"}, []string{"turn:turn.example.com:5349", "turn:turn.example.com:1"}},
		{"turns:turn.example.com", []string{"turns:turn.example.com:5349"}, []string{"turns:turn.example.com:3478"}},
		{"*.example.com:3478",
			[]string{"stun:a.example.com:3478", "turn:a.b.example.com:3478", "turns:A.EXAMPLE.COM.:3478"},
			[]string{"stun:example.com:3478", "stun:evilexample.com:3478", "stun:a.example.com.evil.org:3478",
				"stun:example.com.evil.org:3478", "stun:a.example.com:3479", "stun:10.0.0.1:3478"}},
		{"stun.example.com:3478-3480",
			[]string{"stun:stun.example.com:3478", "stuns:stun.example.com:3480"},
			[]string{"stun:stun.example.com:3477", "stun:stun.example.com:3481"}},
		{"stun.example.com:*", []string{"stun:stun.example.com:1", "stun:stun.example.com:65535"}, []string{"stun:stun.example.org:3478"}},
		{"192.0.2.0/24:3478",
			[]string{"stun:192.0.2.1:3478", "stun:[::ffff:192.0.2.9]:3478"},
			[]string{"stun:192.0.3.1:3478", "stun:192.0.2.1.evil.org:3478", "stun:[2001:db8::1]:3478"}},
		{"[2001:db8::/32]:3478",
			[]string{"stun:[2001:db8::1]:3478", "stun:[2001:DB8:0::abc]:3478"},
			[]string{"stun:[2001:db9::1]:3478", "stun:192.0.2.1:3478"}},
		{"2001:db8::1", nil, nil}, // a bare IPv6 address: no port, no scheme: refused below
		{"[2001:db8::1]:3478", []string{"stun:[2001:db8:0:0::1]:3478"}, []string{"stun:[2001:db8::2]:3478"}},
		{"127.0.0.1:3478", []string{"stun:127.0.0.1:3478"}, []string{"stun:127.0.0.2:3478", "stun:localhost:3478", "stun:127.0.0.1.nip.io:3478"}},
		{"*:3478", []string{"stun:anything.example:3478", "stun:10.0.0.1:3478"}, []string{"stun:anything.example:22"}},
	} {
		p, err := parsePattern(c.pattern)
		if c.allow == nil && c.deny == nil {
			if err == nil {
				t.Errorf("pattern %q: accepted, want an error", c.pattern)
			}
			continue
		}
		if err != nil {
			t.Errorf("pattern %q: %v", c.pattern, err)
			continue
		}
		for _, list := range []struct {
			eps  []string
			want bool
		}{{c.allow, true}, {c.deny, false}} {
			for _, s := range list.eps {
				scheme, hostport, _ := strings.Cut(s, ":")
				host, port, err := net.SplitHostPort(hostport)
				if err != nil {
					t.Fatalf("test endpoint %q: %v", s, err)
				}
				var n int
				fmt.Sscan(port, &n)
				e, err := newEndpoint(scheme, host, n)
				if err != nil {
					t.Fatalf("test endpoint %q: %v", s, err)
				}
				if got := p.matches(e); got != list.want {
					t.Errorf("pattern %q, endpoint %s: match %v, want %v", c.pattern, s, got, list.want)
				}
			}
		}
	}
	for _, bad := range []string{"", "turn.example.com", "turn.example.com*", "turn:turn.example.com*", "*example.com:3478",
		"a.*.example.com:3478", "turn:user:pw@turn.example.com:3478", "turn:turn.example.com:3478?transport=tcp",
		"turn://turn.example.com:3478", "turn.example.com:0", "turn.example.com:3479-3478", "turn.example.com:70000",
		"turn.example.com:", "[::1:3478", "[127.0.0.1]:3478", "2001:db8::1:3478x", "10.0.0.0/33:1", "exa mple.com:1",
		"ex\u00e4mple.com:1", "127.1:3478", "*.:3478", "a..b:3478", "-a.example.com:3478", "[fe80::1%eth0]:3478"} {
		if _, err := parsePattern(bad); err == nil {
			t.Errorf("pattern %q: accepted, want an error", bad)
		}
	}
}

// silentListener listens on UDP and TCP at addr and counts what arrives;
// a refused probe must leave it at zero.
type silentListener struct {
	port uint16
	got  atomic.Int64
}

func listenSilent(t *testing.T, addrs ...string) *silentListener {
	t.Helper()
	l := &silentListener{}
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait) // runs after every listener's own cleanup has closed it
	port := 0
	for i, a := range addrs {
		// The first address picks a free port; the others share it.
		if i > 0 {
			a = net.JoinHostPort(a, fmt.Sprint(port))
		} else {
			a = net.JoinHostPort(a, "0")
		}
		pc, err := net.ListenPacket("udp", a)
		if err != nil {
			t.Skipf("listen udp %s: %v", a, err)
		}
		if i == 0 {
			port = pc.LocalAddr().(*net.UDPAddr).Port
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(pc.LocalAddr().(*net.UDPAddr).IP.String(), fmt.Sprint(port)))
		if err != nil {
			pc.Close()
			t.Skipf("listen tcp on the same port: %v", err)
		}
		t.Cleanup(func() { pc.Close(); ln.Close() })
		wg.Add(2)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1500)
			for {
				if _, _, err := pc.ReadFrom(buf); err != nil {
					return
				}
				l.got.Add(1)
			}
		}()
		go func() {
			defer wg.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				l.got.Add(1)
				c.Close()
			}
		}()
	}
	l.port = uint16(port)
	return l
}

// TestForbiddenTargets: the attacks on allowed_targets of issue 12 get
// 403 over HTTP, and nothing reaches the loopback listener they name.
func TestForbiddenTargets(t *testing.T) {
	addrs := []string{"127.0.0.1"}
	if c, err := net.ListenPacket("udp", "[::1]:0"); err == nil {
		c.Close()
		addrs = append(addrs, "::1")
	}
	l := listenSilent(t, addrs...)
	P := fmt.Sprint(l.port)
	config := `
modules:
  turn:
    kind: turn
    timeout: 2s
    allowed_targets: ["turn:turn.example.com:3478", "turns:turn.example.com:5349", "turn:localhost:3478", "turn:[2001:db8::1]:3478"]
    turn:
      transports: [udp, tcp, tls]
      user: monitor
      password_env: PW
  turn_wild:
    kind: turn
    timeout: 2s
    allowed_targets: ["turn:*.example.com:3478"]
    turn:
      user: monitor
      password_env: PW
  stun:
    kind: stun
    timeout: 2s
    allowed_targets: ["stun:stun.example.com:3478", "127.0.0.1:3478"]
`
	te := newTestExporter(t, config, env(map[string]string{"PW": "hunter2-Do-Not-Print"}), Options{})
	cases := []struct{ module, target string }{
		// Substrings and look-alikes of turn.example.com.
		{"turn", "turn:turn.example.com.evil.org:3478"},
		{"turn", "turn:turn.example.com.evil.org"},
		{"turn", "turn:turn.example.comevil.org:3478"},
		{"turn", "turn:evilturn.example.com:3478"},
		{"turn", "turn.example.com.evil.org:3478"},
		{"turn_wild", "turn:example.com.evil.org:3478"},
		{"turn_wild", "turn:evilexample.com:3478"},
		{"turn_wild", "turn:a.example.com.localhost:" + P},
		// User parts and queries that name another host.
		{"turn", "turn:turn.example.com@127.0.0.1:" + P},
		{"turn", "turn:turn.example.com:3478@localhost:" + P},
		{"turn", "turn:user:hunter2@turn.example.com.evil.org"},
		{"turn", "turn:127.0.0.1:" + P + "?x=turn.example.com"},
		{"turn", "turn:evil.org?x=turn.example.com"},
		{"turn", "turn:localhost:" + P + "?transport=tcp&host=turn.example.com"},
		{"stun", "stun:stun.example.com@127.0.0.1:" + P},
		{"stun", "stun:127.0.0.1:" + P + "?transport=tcp&x=stun.example.com:3478"},
		// The allowed host on another port, or over another scheme.
		{"turn", "turn:localhost:" + P},
		{"turn", "turn:LOCALHOST.:" + P},
		{"turn", "turn:localhost:" + P + "?transport=tcp"},
		{"turn", "turns:localhost:3478"},
		{"turn", "localhost:3478"}, // udp and tcp allowed, but tls on 5349 is not
		{"stun", "127.0.0.1:" + P},
		{"stun", "stun:127.0.0.1:" + P + "?transport=tcp"},
		{"stun", "stuns:127.0.0.1:" + P},
		{"stun", "stuns:stun.example.com:3478"},
		// IP literals for names, and other spellings of loopback.
		{"turn", "turn:127.0.0.1:" + P},
		{"turn", "turn:[::1]:" + P},
		{"turn", "turn:[::ffff:127.0.0.1]:" + P},
		{"turn", "turn:[2001:db8::1]:" + P},
		{"stun", "[::1]:" + P},
		{"stun", "[::ffff:127.0.0.1]:" + P},
		{"stun", "127.1:" + P},
		{"stun", "0x7f.0.0.1:" + P},
		{"stun", "localhost:" + P},
		// Malformed targets are not allowed targets either.
		{"turn", "turn://turn.example.com:3478"},
		{"turn", "turn:turn.example.com:3478#x"},
		{"turn", "turn:turn..example.com:3478"},
		{"turn", "turn:turn.example.com%2eevil.org:3478"},
		{"turn", "turn:turn.example.com\u3002evil.org:3478"},
		{"turn", "turn:turn.example.com\\evil.org:3478"},
		{"turn", "turn:[fe80::1%25lo]:" + P},
	}
	for _, c := range cases {
		code, body := te.get(t, probePath(c.module, c.target), "")
		if code != http.StatusForbidden {
			t.Errorf("%s %s: status %d, want 403: %s", c.module, c.target, code, body)
		}
		if strings.Contains(body, "hunter2") {
			t.Errorf("%s %s: the answer quotes a credential: %s", c.module, c.target, body)
		}
	}
	if strings.Contains(te.log.String(), "hunter2") {
		t.Errorf("the log quotes a credential:\n%s", te.log.String())
	}
	// Give a stray packet time to arrive before concluding none did.
	time.Sleep(100 * time.Millisecond)
	if n := l.got.Load(); n != 0 {
		t.Errorf("the loopback listener on port %s received %d packets or connections from refused probes", P, n)
	}
	_, self := te.get(t, "/metrics", "")
	if !strings.Contains(self, fmt.Sprintf(`natcheck_exporter_requests_rejected_total{reason="forbidden_target"} %d`, len(cases))) {
		t.Errorf("forbidden_target count:\n%s", grepLines(self, "rejected"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestAllowedTargetProbes: what allowed_targets lets through is probed:
// a STUN server on loopback named by address, and by name.
func TestAllowedTargetProbes(t *testing.T) {
	srv := stuntest.Start(t, stunserver.Config{})
	port := srv.Primary().Port()
	config := fmt.Sprintf(`
modules:
  stun:
    kind: stun
    timeout: 3s
    stun:
      family: ipv4
    allowed_targets: ["127.0.0.0/8:%d", "stun:LOCALHOST.:%[1]d"]
`, port)
	te := newTestExporter(t, config, nil, Options{})
	for _, target := range []string{srv.Primary().String(), fmt.Sprintf("localhost:%d", port), fmt.Sprintf("stun:LocalHost:%d", port)} {
		code, body := te.get(t, probePath("stun", target)+"&debug=true", "")
		if code != http.StatusOK || !strings.Contains(body, "success: true") {
			t.Errorf("%s: status %d: %s", target, code, body)
		}
	}
}

// rebindResolver answers first with first, then with later: DNS rebinding.
type rebindResolver struct {
	calls        atomic.Int64
	first, later []netip.Addr
}

func (r *rebindResolver) LookupNetIP(_ context.Context, _, _ string) ([]netip.Addr, error) {
	if r.calls.Add(1) == 1 {
		return r.first, nil
	}
	return r.later, nil
}

// TestPublicOnly: a public_only module refuses targets whose address, or
// any address their name resolves to, is not public, with 403 before a
// packet is sent.
func TestPublicOnly(t *testing.T) {
	l := listenSilent(t, "127.0.0.1")
	P := fmt.Sprint(l.port)
	config := `
modules:
  stun:
    kind: stun
    timeout: 2s
    public_only: true
`
	mixed := &rebindResolver{first: []netip.Addr{netip.MustParseAddr("8.8.8.8"), netip.MustParseAddr("1.1.1.1"), netip.MustParseAddr("127.0.0.1")}}
	te := newTestExporter(t, config, nil, Options{Resolver: mixed})
	for _, target := range []string{"127.0.0.1:" + P, "[::1]:" + P, "[::ffff:127.0.0.1]:" + P, "[64:ff9b::7f00:1]:" + P,
		"10.0.0.1:" + P, "100.64.0.1:" + P, "169.254.169.254:" + P, "0.0.0.0:" + P, "224.0.0.1:" + P, "255.255.255.255:" + P,
		"[fe80::1]:" + P, "[fc00::1]:" + P, "[::]:" + P, "stun:127.0.0.1:" + P + "?transport=tcp"} {
		code, body := te.get(t, probePath("stun", target), "")
		// A mapped, link-local or unspecified IPv6 literal is no server's
		// address at all: the target parser refuses it first.
		why := "not a public address"
		switch {
		case strings.Contains(target, "::ffff:"):
			why = "IPv4-mapped IPv6 address"
		case strings.Contains(target, "fe80::"):
			why = "is link-local"
		case strings.HasPrefix(target, "[::]"):
			why = "is not a server's address"
		}
		if code != http.StatusForbidden || !strings.Contains(body, why) {
			t.Errorf("%s: status %d, want 403 saying %q: %s", target, code, why, body)
		}
	}
	// A name resolving to several addresses, one of them loopback.
	code, body := te.get(t, probePath("stun", "mixed.test:"+P), "")
	if code != http.StatusForbidden || !strings.Contains(body, "mixed.test resolves to 127.0.0.1") {
		t.Errorf("a name with a loopback address among public ones: status %d: %s", code, body)
	}
	// localhost, through the host's own resolver (/etc/hosts).
	te2 := newTestExporter(t, config, nil, Options{})
	code, body = te2.get(t, probePath("stun", "localhost:"+P), "")
	if code != http.StatusForbidden || !strings.Contains(body, "localhost resolves to") {
		t.Errorf("localhost: status %d: %s", code, body)
	}
	time.Sleep(100 * time.Millisecond)
	if n := l.got.Load(); n != 0 {
		t.Errorf("the loopback listener received %d packets or connections from refused probes", n)
	}

	// A config error: a non-public server alongside.
	if _, err := ParseConfig("m.yml", []byte("modules:\n  s:\n    kind: stun\n    public_only: true\n    stun:\n      servers: [\"10.1.2.3:3478\"]\n"), nil); err == nil || !strings.Contains(err.Error(), "m.yml:6: ") {
		t.Errorf("public_only with a private server: %v", err)
	}
}

// TestPublicOnlyGuard: once a public_only probe runs, it sends to no
// address that is not public: not to a second answer of the DNS
// (rebinding), not to the OTHER-ADDRESS a STUN server names. Here "public"
// is 127.0.0.1 alone, so that the test stays on loopback.
func TestPublicOnlyGuard(t *testing.T) {
	srv := stuntest.Start(t, stunserver.Config{}) // primary 127.0.0.1, alternate 127.0.0.2
	port := srv.Primary().Port()
	// A listener on 127.0.0.3 at the server's port: where a second lookup would send.
	pc, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.3:%d", port))
	if err != nil {
		t.Skipf("listen on 127.0.0.3: %v", err)
	}
	var stray atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
			stray.Add(1)
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })

	r := &rebindResolver{first: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, later: []netip.Addr{netip.MustParseAddr("127.0.0.3")}}
	one := netip.MustParseAddr("127.0.0.1")
	te := newTestExporter(t, "modules:\n  stun:\n    kind: stun\n    timeout: 3s\n    public_only: true\n    stun:\n      family: ipv4\n",
		nil, Options{Resolver: r, public: func(a netip.Addr) bool { return a.Unmap() == one }})
	code, body := te.get(t, probePath("stun", fmt.Sprintf("rebind.test:%d", port))+"&debug=true", "")
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	if !strings.Contains(body, "success: true") {
		t.Errorf("the probe of the checked address failed:\n%s", body)
	}
	if n := r.calls.Load(); n != 1 {
		t.Errorf("the target was looked up %d times; want once, the answer pinned", n)
	}
	// The RFC 5780 tests to the alternate address were not sent.
	if !strings.Contains(body, "not a public address (public_only)") {
		t.Errorf("no sign that the sends to 127.0.0.2 (OTHER-ADDRESS) were refused:\n%s", body)
	}
	time.Sleep(100 * time.Millisecond)
	if n := stray.Load(); n != 0 {
		t.Errorf("127.0.0.3 (the rebound address) received %d packets", n)
	}
}
