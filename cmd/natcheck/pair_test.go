package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pion/transport/v5/vnet"

	"github.com/natcheck/natcheck/internal/vnettest"
	"github.com/natcheck/natcheck/rendezvous"
	"github.com/natcheck/natcheck/report"
	"github.com/natcheck/natcheck/stunserver"
)

// startRendezvous serves a rendezvous on 127.0.0.1 and returns its URL.
func startRendezvous(t *testing.T, s *rendezvous.Server) string {
	t.Helper()
	ts := httptest.NewServer(s)
	t.Cleanup(func() { s.Close(); ts.Close() })
	return "ws" + strings.TrimPrefix(ts.URL, "http") + "/pair"
}

// TestPairCommand: two natcheck pair runs, each behind its own NAT in a
// vnet (with a STUN server on it), meet in a room of a real rendezvous on
// loopback, predict direct, and connect directly.
func TestPairCommand(t *testing.T) {
	wan := vnettest.NewWAN(t)
	srv := wan.Host("1.2.3.4", "1.2.3.5")
	cone := &vnet.NATType{MappingBehavior: vnet.EndpointIndependent, FilteringBehavior: vnet.EndpointIndependent}
	a := wan.NAT("10.0.1.0/24", "27.1.1.1", cone).Host("10.0.1.2")
	b := wan.NAT("10.0.2.0/24", "28.1.1.1", cone).Host("10.0.2.2")
	wan.Start()
	s, err := stunserver.Start(context.Background(), stunserver.Config{Net: srv,
		Primary: netip.MustParseAddrPort("1.2.3.4:3478"), Alternate: netip.MustParseAddrPort("1.2.3.5:3479")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	url := startRendezvous(t, &rendezvous.Server{})

	type out struct {
		code      int
		out, errs string
	}
	results := make(chan out, 2)
	for _, n := range []*vnet.Net{a, b} {
		go func() {
			code, o, e := runArgs(t, env{net: n}, "pair", "--rendezvous", url, "--room", "r1", "--stun", "1.2.3.4", "--json",
				"--wait", "30s", "--phase-timeout", "5s")
			results <- out{code, o, e}
		}()
	}
	for range 2 {
		r := <-results
		if r.code != exitOK {
			t.Fatalf("exit %d, stderr %q\n%s", r.code, r.errs, r.out)
		}
		var rep report.Report
		if err := json.Unmarshal([]byte(r.out), &rep); err != nil {
			t.Fatalf("%v\n%s", err, r.out)
		}
		p := rep.Pair
		if p == nil || p.Outcome != report.PairDirect || p.Predicted != "direct" || !p.Matched || p.Peer == nil ||
			p.Peer.Mapping.String() != "endpoint-independent" || rep.NAT.Type.String() != "full-cone" {
			t.Errorf("pair %+v, nat %+v: want direct, predicted and matched, the peer's EIM known", p, rep.NAT)
		}
		if !strings.Contains(r.errs, "natcheck pair: room r1") {
			t.Errorf("no progress on stderr: %q", r.errs)
		}
	}
}

// TestPairCommandErrors: usage errors exit 2, an unreachable or refusing
// rendezvous 3, a wrong token 2 with a hint; the token is never printed.
func TestPairCommandErrors(t *testing.T) {
	const token = "tok-Do-Not-Print-51ab"
	dir := t.TempDir()
	good, wrong := filepath.Join(dir, "good"), filepath.Join(dir, "wrong")
	if err := os.WriteFile(good, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(wrong, []byte("tok-Wrong-Do-Not-Print\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	url := startRendezvous(t, &rendezvous.Server{Token: token})
	// A port nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "ws://" + ln.Addr().String() + "/pair"
	ln.Close()

	for _, c := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no rendezvous", []string{"--room", "r"}, exitUsage, "no rendezvous"},
		{"no room", []string{"--rendezvous", url}, exitUsage, "no room"},
		{"bad room", []string{"--rendezvous", url, "--room", "a b"}, exitUsage, `--room "a b"`},
		{"bad peer", []string{"--rendezvous", url, "--room", "r", "--peer", "x"}, exitUsage, "--peer"},
		{"bad require", []string{"--rendezvous", url, "--room", "r", "--require", "udp"}, exitUsage, "--require"},
		{"bad scheme", []string{"--rendezvous", "ftp://x/pair", "--room", "r"}, exitUsage, "--rendezvous"},
		{"userinfo", []string{"--rendezvous", "ws://u:secret-Do-Not-Print@x/pair", "--room", "r"}, exitUsage, "user information"},
		{"timeout", []string{"--rendezvous", url, "--room", "r", "--wait", "1m", "--timeout", "30s"}, exitUsage, "--timeout"},
		{"unreachable", []string{"--rendezvous", closed, "--room", "r"}, exitNotMeasured, "unreachable"},
		{"no token", []string{"--rendezvous", url, "--room", "r"}, exitUsage, "check --pair-token-file"},
		{"wrong token", []string{"--rendezvous", url, "--room", "r", "--pair-token-file", wrong}, exitUsage, "check --pair-token-file"},
		{"no server peer", []string{"--rendezvous", url, "--room", "r", "--pair-token-file", good, "--peer", "server"}, exitNotMeasured, "no server peer"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, out, errs := runArgs(t, env{}, append([]string{"pair"}, c.args...)...)
			if code != c.code || !strings.Contains(errs, c.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, errs, c.code, c.want)
			}
			for _, secret := range []string{token, "Do-Not-Print"} {
				if strings.Contains(out+errs, secret) {
					t.Errorf("output holds a secret: %q %q", out, errs)
				}
			}
		})
	}
}

// TestPairHelp: --help exits 0 with the usage and the exit codes.
func TestPairHelp(t *testing.T) {
	var out bytes.Buffer
	code := run(context.Background(), []string{"pair", "--help"}, &out, &out, env{getenv: noEnv})
	if code != exitOK || !strings.Contains(out.String(), "Usage: natcheck pair") || !strings.Contains(out.String(), "Exit codes:") {
		t.Errorf("exit %d:\n%s", code, out.String())
	}
}
