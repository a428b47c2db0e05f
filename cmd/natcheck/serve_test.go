package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/transport/v5"
	"github.com/pion/turn/v5"

	"github.com/natcheck/natcheck/internal/syncbuf"
	"github.com/natcheck/natcheck/natclass"
	"github.com/natcheck/natcheck/probe"
	"github.com/natcheck/natcheck/rendezvous"
	natstun "github.com/natcheck/natcheck/stun"
	"github.com/natcheck/natcheck/stunserver/stuntest"
	"github.com/natcheck/natcheck/turncheck/turntest"
)

const serveWait = 5 * time.Second

// syncBuffer is the server's log, safe for its logger and the test, with
// readers of its JSON lines.
type syncBuffer struct{ syncbuf.Buffer }

// logLine is the part of a JSON log record the tests read.
type logLine struct {
	Msg       string   `json:"msg"`
	Level     string   `json:"level"`
	UDP       []string `json:"udp"`
	TCP       []string `json:"tcp"`
	TLS       []string `json:"tls"`
	Primary   string   `json:"primary"`
	Alternate string   `json:"alternate"`
	URL       string   `json:"url"`
	Joins     *uint64  `json:"joins"`
	Forwarded *uint64  `json:"forwarded"`
}

func (s *syncBuffer) lines(t *testing.T) []logLine {
	t.Helper()
	var out []logLine
	sc := bufio.NewScanner(strings.NewReader(s.String()))
	for sc.Scan() {
		var l logLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("log line %q is not JSON: %v", sc.Text(), err)
		}
		out = append(out, l)
	}
	return out
}

func (s *syncBuffer) find(t *testing.T, msg string) (logLine, bool) {
	t.Helper()
	for _, l := range s.lines(t) {
		if l.Msg == msg {
			return l, true
		}
	}
	return logLine{}, false
}

// served is a natcheck serve running in-process.
type served struct {
	stderr *syncBuffer
	cancel context.CancelFunc
	done   chan int
}

// startServe runs natcheck serve with args (plus JSON logs) until the test
// ends, and waits for its "ready" line.
func startServe(t *testing.T, args ...string) *served {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &served{stderr: new(syncBuffer), cancel: cancel, done: make(chan int, 1)}
	args = append([]string{"serve", "--log-format", "json", "--stats-interval", "0"}, args...)
	go func() {
		s.done <- run(ctx, args, new(bytes.Buffer), s.stderr, env{getenv: func(string) string { return "" }})
	}()
	t.Cleanup(func() { s.stop(t) })
	deadline := time.Now().Add(serveWait)
	for time.Now().Before(deadline) {
		select {
		case code := <-s.done:
			s.done <- code
			t.Fatalf("natcheck serve exited with %d: %s", code, s.stderr)
		default:
		}
		if strings.Contains(s.stderr.String(), `"msg":"ready"`) {
			return s
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("natcheck serve not ready: %s", s.stderr)
	return nil
}

// stop cancels the context, as SIGINT does, and checks the exit code.
func (s *served) stop(t *testing.T) {
	t.Helper()
	s.cancel()
	select {
	case code := <-s.done:
		s.done <- code
		if code != exitOK {
			t.Errorf("exit code %d after shutdown: %s", code, s.stderr)
		}
	case <-time.After(serveWait):
		t.Fatal("natcheck serve did not shut down")
	}
}

func (s *served) stun(t *testing.T) logLine {
	t.Helper()
	l, ok := s.stderr.find(t, "stun listening")
	if !ok {
		t.Fatalf("no stun listening line: %s", s.stderr)
	}
	return l
}

func mustAddrPorts(t *testing.T, ss []string) []netip.AddrPort {
	t.Helper()
	var out []netip.AddrPort
	for _, s := range ss {
		out = append(out, netip.MustParseAddrPort(s))
	}
	return out
}

// udpExchange sends a Binding request from c to to and returns the reply
// and its source.
func udpExchange(t *testing.T, c *net.UDPConn, to netip.AddrPort, setters ...stun.Setter) (*stun.Message, netip.AddrPort) {
	t.Helper()
	req := stun.MustBuild(append([]stun.Setter{stun.BindingRequest, stun.TransactionID}, setters...)...)
	if _, err := c.WriteToUDPAddrPort(req.Raw, to); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	for range 100 {
		if err := c.SetReadDeadline(time.Now().Add(serveWait)); err != nil {
			t.Fatal(err)
		}
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("no reply from %v: %v", to, err)
		}
		m := new(stun.Message)
		if err := stun.Decode(append([]byte(nil), buf[:n]...), m); err == nil && m.TransactionID == req.TransactionID {
			return m, natstun.UnmapAddrPort(from)
		}
	}
	t.Fatal("too many unrelated packets")
	return nil, netip.AddrPort{}
}

func listenUDP(t *testing.T, ip string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func xorMapped(t *testing.T, m *stun.Message) netip.AddrPort {
	t.Helper()
	var a stun.XORMappedAddress
	if err := a.GetFrom(m); err != nil {
		t.Fatal(err)
	}
	return natstun.AddrPortFromIP(a.IP, a.Port)
}

func TestServeUsageErrors(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	if err := os.WriteFile(users, []byte("alice\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	emptyToken := filepath.Join(dir, "empty-token")
	if err := os.WriteFile(emptyToken, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	twoLines := filepath.Join(dir, "two-lines")
	if err := os.WriteFile(twoLines, []byte("hunter2\nsecond\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, args := range map[string][]string{
		"http bad address":     {"--primary", "127.0.0.1", "--http", "localhost:8080"},
		"pair token no http":   {"--primary", "127.0.0.1", "--pair-token-file", emptyToken},
		"pair ttl no http":     {"--primary", "127.0.0.1", "--pair-room-ttl", "1m"},
		"pair ttl zero":        {"--primary", "127.0.0.1", "--http", "127.0.0.1:0", "--pair-room-ttl", "0"},
		"pair token empty":     {"--primary", "127.0.0.1", "--http", "127.0.0.1:0", "--pair-token-file", emptyToken},
		"pair token two lines": {"--primary", "127.0.0.1", "--http", "127.0.0.1:0", "--pair-token-file", twoLines},
		"pair token missing":   {"--primary", "127.0.0.1", "--http", "127.0.0.1:0", "--pair-token-file", "/nonexistent"},
		"pair ice no http":     {"--primary", "127.0.0.1", "--pair-ice", "127.0.0.1:3480"},
		"pair ice no port":     {"--primary", "127.0.0.1", "--http", "127.0.0.1:0", "--pair-ice", "127.0.0.1"},
		"pair ice unspecified": {"--primary", "127.0.0.1", "--http", "127.0.0.1:0", "--pair-ice", "0.0.0.0:3480"},
		"no primary":           {},
		"bad address":          {"--primary", "localhost"},
		"unspecified":          {"--primary", "0.0.0.0"},
		"two primaries":        {"--primary", "127.0.0.1", "--primary", "127.0.0.2"},
		"alternate no family":  {"--primary", "127.0.0.1", "--alternate", "::1"},
		"same address":         {"--primary", "127.0.0.1:3478", "--alternate", "127.0.0.1:3479"},
		"same port":            {"--primary", "127.0.0.1:4000", "--alternate", "127.0.0.2:4000"},
		"argument":             {"--primary", "127.0.0.1", "extra"},
		"log level":            {"--primary", "127.0.0.1", "--log-level", "loud"},
		"log format":           {"--primary", "127.0.0.1", "--log-format", "xml"},
		"stun-tls no cert":     {"--primary", "127.0.0.1", "--stun-tls", "127.0.0.1:5349"},
		"cert without key":     {"--primary", "127.0.0.1", "--tls-cert", "x.pem"},
		"missing cert":         {"--primary", "127.0.0.1", "--stun-tls", "127.0.0.1", "--tls-cert", "/nonexistent", "--tls-key", "/nonexistent"},
		"turn no creds":        {"--primary", "127.0.0.1", "--turn-udp", "127.0.0.1:3480"},
		"turn no listener":     {"--primary", "127.0.0.1", "--turn-users", users},
		"turn bad users":       {"--primary", "127.0.0.1", "--turn-users", users, "--turn-udp", "127.0.0.1:3480"},
		"turn missing users":   {"--primary", "127.0.0.1", "--turn-users", "/nonexistent", "--turn-udp", "127.0.0.1:3480"},
		"turn unspecified":     {"--primary", "127.0.0.1", "--turn-users", users, "--turn-udp", "0.0.0.0:3480"},
		"relay ports":          {"--primary", "127.0.0.1", "--turn-users", users, "--turn-udp", "127.0.0.1:3480", "--relay-ports", "5000-4000"},
		"zero budget":          {"--primary", "127.0.0.1", "--source-budget", "0"},
		"negative global":      {"--primary", "127.0.0.1", "--global-budget", "-1"},
		"trust not cidr":       {"--primary", "127.0.0.1", "--trust", "loopback"},
		"trust host bits":      {"--primary", "127.0.0.1", "--trust", "127.0.0.1/8"},
		"trust zone":           {"--primary", "127.0.0.1", "--trust", "fe80::1%eth0"},
		"trust mapped wide":    {"--primary", "127.0.0.1", "--trust", "::ffff:0:0/80"},
		"old reflection flag":  {"--primary", "127.0.0.1", "--reflection-rate", "50"},
		"zero conns":           {"--primary", "127.0.0.1", "--max-conns", "0"},
		"unknown flag":         {"--primary", "127.0.0.1", "--stun", "x"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), append([]string{"serve"}, args...), &stdout, &stderr, env{})
		if code != exitUsage {
			t.Errorf("%s: exit %d, want %d (%s)", name, code, exitUsage, stderr.String())
			continue
		}
		if msg := stderr.String(); !strings.HasPrefix(msg, "natcheck serve: ") || strings.Count(msg, "\n") != 1 {
			t.Errorf("%s: want one line of error, got %q", name, msg)
		}
	}
	// The token file's contents never appear in an error.
	var tokErr bytes.Buffer
	run(context.Background(), []string{"serve", "--primary", "127.0.0.1", "--http", "127.0.0.1:0", "--pair-token-file", twoLines}, new(bytes.Buffer), &tokErr, env{})
	if strings.Contains(tokErr.String(), "hunter2") {
		t.Errorf("error shows the token file: %q", tokErr.String())
	}
	// The users file's contents never appear in an error.
	var stderr bytes.Buffer
	run(context.Background(), []string{"serve", "--primary", "127.0.0.1", "--turn-users", users, "--turn-udp", "127.0.0.1:3480"}, new(bytes.Buffer), &stderr, env{})
	if strings.Contains(stderr.String(), "alice") {
		t.Errorf("error shows the users file: %q", stderr.String())
	}
}

func TestServeHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"serve", "--help"}, &stdout, &stderr, env{}); code != exitOK {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"Usage: natcheck serve", "--alternate", "--turn-users", "Exit codes:"} {
		if !strings.Contains(stdout.String(), strings.TrimPrefix(want, "-")) {
			t.Errorf("help lacks %q", want)
		}
	}
}

func TestServeBindFailure(t *testing.T) {
	busy := listenUDP(t, "127.0.0.1")
	var stderr bytes.Buffer
	code := run(context.Background(), []string{"serve", "--primary", busy.LocalAddr().String()}, new(bytes.Buffer), &stderr, env{})
	if code != exitServeStart || !strings.Contains(stderr.String(), "natcheck serve: IPv4 STUN server:") {
		t.Errorf("exit %d: %s", code, stderr.String())
	}
}

// TestServeRFC5780 checks the four addresses over UDP and TCP and that the
// ports are free again after shutdown.
func TestServeRFC5780(t *testing.T) {
	s := startServe(t, "--primary", "127.0.0.1:0", "--alternate", "127.0.0.2:0")
	l := s.stun(t)
	udp, tcp := mustAddrPorts(t, l.UDP), mustAddrPorts(t, l.TCP)
	if len(udp) != 4 || len(tcp) != 4 || l.Primary != udp[0].String() || l.Alternate != udp[3].String() {
		t.Fatalf("stun listening %+v", l)
	}
	if strings.Contains(s.stderr.String(), "single-address") {
		t.Error("single-address warning with two addresses")
	}
	c := listenUDP(t, "127.0.0.1")
	local := netip.MustParseAddrPort(c.LocalAddr().String())
	for i, to := range udp {
		for _, ch := range []natstun.ChangeRequest{{}, {ChangePort: true}, {ChangeIP: true}, {ChangeIP: true, ChangePort: true}} {
			want := i
			if ch.ChangeIP {
				want ^= 2
			}
			if ch.ChangePort {
				want ^= 1
			}
			m, from := udpExchange(t, c, to, ch, stun.Fingerprint)
			if m.Type != stun.BindingSuccess || from != udp[want] || xorMapped(t, m) != local {
				t.Errorf("to %v, %v: %v from %v", to, ch, m.Type, from)
			}
			if m.Contains(stun.AttrSoftware) {
				t.Error("SOFTWARE sent without --software")
			}
		}
	}
	for _, to := range tcp {
		conn, err := net.DialTimeout("tcp", to.String(), serveWait)
		if err != nil {
			t.Fatal(err)
		}
		req := stun.MustBuild(stun.BindingRequest, stun.TransactionID, stun.Fingerprint)
		_ = conn.SetDeadline(time.Now().Add(serveWait))
		if _, err := conn.Write(req.Raw); err != nil {
			t.Fatal(err)
		}
		m, err := natstun.ReadMessage(conn, natstun.MaxMessageSize)
		if err != nil {
			t.Fatalf("TCP %v: %v", to, err)
		}
		conn.Close()
		if m.Type != stun.BindingSuccess || xorMapped(t, m) != netip.MustParseAddrPort(conn.LocalAddr().String()) {
			t.Errorf("TCP %v: %v", to, m)
		}
	}
	s.stop(t)
	if !strings.Contains(s.stderr.String(), `"msg":"shutting down"`) || !strings.Contains(s.stderr.String(), `"msg":"stun stats"`) {
		t.Errorf("no shutdown lines: %s", s.stderr)
	}
	for _, ap := range udp {
		pc, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(ap))
		if err != nil {
			t.Errorf("%v still bound after shutdown: %v", ap, err)
			continue
		}
		pc.Close()
	}
}

func TestServeSingleAddressAndSoftware(t *testing.T) {
	s := startServe(t, "--primary", "127.0.0.1:0", "--software", "natcheck-test", "--tcp=false")
	l := s.stun(t)
	if len(l.UDP) != 1 || len(l.TCP) != 0 {
		t.Fatalf("stun listening %+v", l)
	}
	w, ok := s.stderr.find(t, "single-address mode: responses carry no OTHER-ADDRESS and CHANGE-REQUEST gets 420; NAT behaviour discovery (RFC 5780) needs two addresses: add --alternate IP[:PORT]")
	if !ok || w.Level != "WARN" {
		t.Errorf("no single-address warning: %s", s.stderr)
	}
	c := listenUDP(t, "127.0.0.1")
	// Over UDP SOFTWARE only goes into a response no larger than the
	// request: a small request gets none, a padded one gets it.
	if m, _ := udpExchange(t, c, mustAddrPorts(t, l.UDP)[0]); m.Contains(stun.AttrSoftware) || m.Contains(stun.AttrOtherAddress) {
		t.Errorf("small request: response %v", m)
	}
	m, _ := udpExchange(t, c, mustAddrPorts(t, l.UDP)[0], stun.NewSoftware(strings.Repeat("p", 100)))
	var sw stun.Software
	if err := sw.GetFrom(m); err != nil || sw.String() != "natcheck-test" || m.Contains(stun.AttrOtherAddress) {
		t.Errorf("response %v (SOFTWARE %q, %v)", m, sw, err)
	}
}

func TestServeSTUNOverTLS(t *testing.T) {
	cert, key, roots := writeCert(t)
	s := startServe(t, "--primary", "127.0.0.1:0", "--stun-tls", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key)
	l := s.stun(t)
	if len(l.TLS) != 1 {
		t.Fatalf("stun listening %+v", l)
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: serveWait}, "tcp", l.TLS[0], &tls.Config{RootCAs: roots})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(serveWait))
	req := stun.MustBuild(stun.BindingRequest, stun.TransactionID)
	if _, err := conn.Write(req.Raw); err != nil {
		t.Fatal(err)
	}
	if m, err := natstun.ReadMessage(conn, natstun.MaxMessageSize); err != nil || m.TransactionID != req.TransactionID {
		t.Fatalf("TLS reply %v: %v", m, err)
	}
}

// writeCert writes a self-signed certificate for 127.0.0.1 and its key as
// PEM files and returns their names and a pool trusting it.
func writeCert(t *testing.T) (certFile, keyFile string, roots *x509.CertPool) {
	t.Helper()
	cfg, roots := stuntest.TLSConfig(t)
	c := cfg.Certificates[0]
	der, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, roots
}

// TestServeBudgetFlood floods natcheck serve from one loopback source
// (bounded: 1000 small CHANGE-REQUESTs) and counts the bytes each way: the
// source gets at most what it sent plus --source-budget and its refill,
// while another source keeps being answered and the drops are logged.
func TestServeBudgetFlood(t *testing.T) {
	const flood, budget = 1000, 1000
	s := startServe(t, "--primary", "127.0.0.1:0", "--alternate", "127.0.0.2:0",
		"--source-budget", fmt.Sprint(budget))
	udp := mustAddrPorts(t, s.stun(t).UDP)
	attacker, other := listenUDP(t, "127.0.0.1"), listenUDP(t, "127.0.0.3")
	change := natstun.ChangeRequest{ChangeIP: true, ChangePort: true}
	sent, got := 0, 0
	buf := make([]byte, 1500)
	// syncAttacker sends a request larger than its response, which is
	// always answered, and reads up to its reply, counting every byte;
	// it keeps the kernel from dropping requests.
	syncAttacker := func() {
		req := stun.MustBuild(stun.BindingRequest, stun.TransactionID, stun.NewSoftware(strings.Repeat("p", 64)))
		if _, err := attacker.WriteToUDPAddrPort(req.Raw, udp[0]); err != nil {
			t.Fatal(err)
		}
		sent += len(req.Raw)
		for range flood + 1 {
			_ = attacker.SetReadDeadline(time.Now().Add(serveWait))
			n, _, err := attacker.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatalf("a request larger than its response was not answered: %v", err)
			}
			got += n
			m := new(stun.Message)
			if stun.Decode(buf[:n], m) == nil && m.TransactionID == req.TransactionID {
				return
			}
		}
	}
	start := time.Now()
	for i := range flood {
		req := stun.MustBuild(stun.BindingRequest, stun.TransactionID, change)
		if _, err := attacker.WriteToUDPAddrPort(req.Raw, udp[0]); err != nil {
			t.Fatal(err)
		}
		sent += len(req.Raw)
		if i%100 == 99 {
			// The other source is answered, from the changed address,
			// in the middle of the flood.
			if m, from := udpExchange(t, other, udp[0], change); m.Type != stun.BindingSuccess || from != udp[3] {
				t.Fatalf("other source: %v from %v", m.Type, from)
			}
			syncAttacker()
		}
	}
	elapsed := time.Since(start)
	// Reflected responses can overtake the last synchronous one (they
	// leave from another socket): read what is left.
	for range flood {
		_ = attacker.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, _, err := attacker.ReadFromUDPAddrPort(buf)
		if err != nil {
			break
		}
		got += n
	}
	// The budget refills at budget/8 bytes a second.
	if limit := sent + budget + int(elapsed.Seconds()*budget/8) + 1; got > limit {
		t.Errorf("sent %d bytes in %v, got %d back, want at most %d", sent, elapsed, got, limit)
	}
	// Without the budget, 1000 requests of 28 bytes get 76 each.
	if got >= sent+flood*(76-28)/2 {
		t.Errorf("sent %d bytes, got %d: not limited", sent, got)
	}
	if !strings.Contains(s.stderr.String(), `"msg":"responses dropped by the byte budget (anti-amplification)"`) {
		t.Errorf("drops not logged: %s", s.stderr)
	}
	// Logging is itself limited: about one line per second, not per drop.
	if n := strings.Count(s.stderr.String(), "dropped by the byte budget"); n > 2+int(elapsed.Seconds()) {
		t.Errorf("%d drop log lines in %v", n, elapsed)
	}
}

// TestServeTrust: a trusted source is answered every time, loopback is
// not trusted by default.
func TestServeTrust(t *testing.T) {
	s := startServe(t, "--primary", "127.0.0.1:0", "--alternate", "127.0.0.2:0",
		"--source-budget", "100", "--trust", "127.0.0.4", "--trust", "::ffff:127.0.0.5/128")
	udp := mustAddrPorts(t, s.stun(t).UDP)
	if l, ok := s.stderr.find(t, "sources exempt from the response budgets"); !ok {
		t.Errorf("trusted prefixes not logged: %v", l)
	}
	untrusted := listenUDP(t, "127.0.0.1")
	for _, ip := range []string{"127.0.0.4", "127.0.0.5"} {
		trusted := listenUDP(t, ip)
		for range 200 {
			if m, _ := udpExchange(t, trusted, udp[0]); m.Type != stun.BindingSuccess {
				t.Fatalf("trusted source %s: %v", ip, m.Type)
			}
		}
	}
	// 100 bytes pay for 2 responses of 76 bytes to 28-byte requests.
	answered := 0
	buf := make([]byte, 1500)
	for range 5 {
		req := stun.MustBuild(stun.BindingRequest, stun.TransactionID, stun.Fingerprint)
		if _, err := untrusted.WriteToUDPAddrPort(req.Raw, udp[0]); err != nil {
			t.Fatal(err)
		}
		_ = untrusted.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if _, _, err := untrusted.ReadFromUDPAddrPort(buf); err == nil {
			answered++
		}
	}
	if answered != 2 {
		t.Errorf("untrusted loopback source: %d of 5 answered, want 2", answered)
	}
}

// TestServeProbe runs natcheck's own probe against natcheck serve on
// loopback: no NAT, and nothing filtered.
func TestServeProbe(t *testing.T) {
	s := startServe(t, "--primary", "127.0.0.1:0", "--alternate", "127.0.0.2:0")
	p := mustAddrPorts(t, s.stun(t).UDP)[0]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	runs := probe.Measure(ctx, probe.Config{
		Servers: []probe.Target{{Host: p.Addr().String(), Port: p.Port()}},
		NoPaths: true,
	}, probe.IPv4)
	if len(runs) != 1 || runs[0].Skipped != "" {
		t.Fatalf("runs %+v", runs)
	}
	r := natclass.Classify(runs[0].Observations)
	okMapping := r.Mapping == natclass.BehaviorNone || r.Mapping == natclass.BehaviorEndpointIndependent
	okFiltering := r.Filtering == natclass.BehaviorNone || r.Filtering == natclass.BehaviorEndpointIndependent
	if !r.UDP || r.BehindNAT != natclass.TriNo || !okMapping || !okFiltering {
		t.Errorf("loopback classified as mapping %v, filtering %v, behind NAT %v, UDP %v", r.Mapping, r.Filtering, r.BehindNAT, r.UDP)
	}
}

// TestServeNatdiscovery runs coturn's turnutils_natdiscovery against
// natcheck serve: it must find no NAT, endpoint-independent mapping and
// endpoint-independent filtering, which is what loopback is.
func TestServeNatdiscovery(t *testing.T) {
	bin, err := exec.LookPath("turnutils_natdiscovery")
	if err != nil {
		t.Skip("turnutils_natdiscovery not installed (Debian package coturn)")
	}
	s := startServe(t, "--primary", "127.0.0.1:0", "--alternate", "127.0.0.2:0")
	p := mustAddrPorts(t, s.stun(t).UDP)[0]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-m", "-f", "-L", "127.0.0.1", "-p", fmt.Sprint(p.Port()), p.Addr().String()).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	text := string(out)
	for _, want := range []string{
		"No NAT!",
		"Endpoint Independent Mapping",
		"NAT with Endpoint Independent Filtering!",
		"Response origin: : " + s.stun(t).Alternate, // the change-IP-and-port reply came from A:a
		"Other addr: : " + s.stun(t).Alternate,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("natdiscovery output lacks %q:\n%s", want, text)
		}
	}
	for _, bad := range []string{"Dependent Mapping", "Dependent Filtering", "rror"} {
		if strings.Contains(strings.ReplaceAll(text, "Independent", ""), bad) {
			t.Errorf("natdiscovery output has %q:\n%s", bad, text)
		}
	}
}

// echoThroughRelay proves a relay by data: the peer sends to the relayed
// address and the client echoes it back through the relay.
func echoThroughRelay(t *testing.T, relay net.PacketConn, peer *net.UDPConn) error {
	t.Helper()
	peerAddr := peer.LocalAddr()
	// Sending from the relay to the peer installs the permission.
	if _, err := relay.WriteTo([]byte("hello peer"), peerAddr); err != nil {
		return err
	}
	buf := make([]byte, 1500)
	_ = peer.SetReadDeadline(time.Now().Add(serveWait))
	n, from, err := peer.ReadFrom(buf)
	if err != nil {
		return fmt.Errorf("peer got nothing through the relay: %w", err)
	}
	if string(buf[:n]) != "hello peer" || from.String() != relay.LocalAddr().String() {
		return fmt.Errorf("peer got %q from %v, relay is %v", buf[:n], from, relay.LocalAddr())
	}
	if _, err := peer.WriteTo([]byte("hello client"), from); err != nil {
		return err
	}
	_ = relay.SetReadDeadline(time.Now().Add(serveWait))
	n, from, err = relay.ReadFrom(buf)
	if err != nil {
		return fmt.Errorf("client got nothing back through the relay: %w", err)
	}
	if string(buf[:n]) != "hello client" || from.String() != peerAddr.String() {
		return fmt.Errorf("client got %q from %v", buf[:n], from)
	}
	return nil
}

func TestServeTURN(t *testing.T) {
	const password, secret = "pa55-word-7f3a", "s3cret-9b1c"
	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	if err := os.WriteFile(users, []byte("# test users\nalice:"+password+"\nbob:"+password+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, key, roots := writeCert(t)
	s := startServe(t, "--primary", "127.0.0.1:0", "--realm", "test",
		"--turn-users", users, "--turn-secret-file", secretFile,
		"--turn-udp", "127.0.0.1:0", "--turn-tcp", "127.0.0.1:0", "--turn-tls", "127.0.0.1:0",
		"--tls-cert", cert, "--tls-key", key,
		"--relay-ports", "41000-41999", "--allow-peer", "127.0.0.1/32", "--turn-user-quota", "1")
	tl, ok := s.stderr.find(t, "turn listening")
	if !ok || len(tl.UDP) != 1 || len(tl.TCP) != 1 || len(tl.TLS) != 1 {
		t.Fatalf("turn listening %+v: %s", tl, s.stderr)
	}
	if !strings.Contains(s.stderr.String(), "credential file is readable by group or others") {
		t.Error("no warning about the world-readable users file")
	}
	peer := listenUDP(t, "127.0.0.1")

	t.Run("udp", func(t *testing.T) {
		relay, err := turntest.AllocateOn(t, listenUDP(t, "127.0.0.1"), tl.UDP[0], "alice", password)
		if err != nil {
			t.Fatal(err)
		}
		if err := echoThroughRelay(t, relay, peer); err != nil {
			t.Fatal(err)
		}
		// alice's quota is 1: a second allocation gets 486.
		_, err = turntest.AllocateOn(t, listenUDP(t, "127.0.0.1"), tl.UDP[0], "alice", password)
		var te *stun.TurnError
		if !errors.As(err, &te) || te.ErrorCodeAttr.Code != stun.CodeAllocQuotaReached {
			t.Errorf("second allocation over quota: %v", err)
		}
	})
	t.Run("tcp", func(t *testing.T) {
		conn, err := net.DialTimeout("tcp", tl.TCP[0], serveWait)
		if err != nil {
			t.Fatal(err)
		}
		relay, err := turntest.AllocateOn(t, turn.NewSTUNConn(conn), tl.TCP[0], "bob", password)
		if err != nil {
			t.Fatal(err)
		}
		if err := echoThroughRelay(t, relay, peer); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("tls-rest", func(t *testing.T) {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: serveWait}, "tcp", tl.TLS[0], &tls.Config{RootCAs: roots})
		if err != nil {
			t.Fatal(err)
		}
		user := fmt.Sprintf("%d:carol", time.Now().Add(time.Hour).Unix())
		mac := hmac.New(sha1.New, []byte(secret))
		mac.Write([]byte(user))
		relay, err := turntest.AllocateOn(t, turn.NewSTUNConn(conn), tl.TLS[0], user, base64.StdEncoding.EncodeToString(mac.Sum(nil)))
		if err != nil {
			t.Fatal(err)
		}
		if err := echoThroughRelay(t, relay, peer); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("refused", func(t *testing.T) {
		// pion/turn v5.1.3, like coturn, answers wrong credentials with
		// 401 (v5.0.12 answered 400 after the 401 challenge).
		refused := func(err error) bool {
			var te *stun.TurnError
			return errors.As(err, &te) && te.ErrorCodeAttr.Code == stun.CodeUnauthorized
		}
		_, err := turntest.AllocateOn(t, listenUDP(t, "127.0.0.1"), tl.UDP[0], "bob", "wrong")
		if !refused(err) {
			t.Errorf("wrong password: %v", err)
		}
		expired := fmt.Sprintf("%d:dave", time.Now().Add(-time.Hour).Unix())
		mac := hmac.New(sha1.New, []byte(secret))
		mac.Write([]byte(expired))
		_, err = turntest.AllocateOn(t, listenUDP(t, "127.0.0.1"), tl.UDP[0], expired, base64.StdEncoding.EncodeToString(mac.Sum(nil)))
		if !refused(err) {
			t.Errorf("expired REST credential: %v", err)
		}
		// A peer outside --allow-peer on loopback is denied by default. Bob's
		// allocation of the tcp subtest counts against his quota of one
		// until the server has seen its connection close: retry a 486 a
		// bounded number of times.
		var relay net.PacketConn
		for try := 0; ; try++ {
			relay, err = turntest.AllocateOn(t, listenUDP(t, "127.0.0.1"), tl.UDP[0], "bob", password)
			var te *stun.TurnError
			if err == nil || try == 40 || !errors.As(err, &te) || te.ErrorCodeAttr.Code != stun.CodeAllocQuotaReached {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			t.Fatal(err)
		}
		denied := listenUDP(t, "127.0.0.5")
		if err := echoThroughRelay(t, relay, denied); err == nil {
			t.Error("relayed to 127.0.0.5, which is loopback and not allowed")
		}
	})

	s.stop(t)
	logs := s.stderr.String()
	for _, leak := range []string{password, secret} {
		if strings.Contains(logs, leak) {
			t.Errorf("log shows a credential %q", leak)
		}
	}
	if !strings.Contains(logs, `"msg":"allocation created"`) || !strings.Contains(logs, `"msg":"turn stats"`) {
		t.Errorf("missing TURN log lines: %s", logs)
	}
}

// TestServePeerFlags checks --allow-peer and --deny-peer parsing; the
// policy itself is tested in turnserver.
func TestServePeerFlags(t *testing.T) {
	var got []netip.Prefix
	for _, arg := range []string{"10.1.0.0/16", "203.0.113.7, 2001:db8::/32", "::ffff:192.0.2.0/120", "10.1.2.3/8"} {
		if err := (servePrefixList{&got}).Set(arg); err != nil {
			t.Fatalf("%q: %v", arg, err)
		}
	}
	want := []netip.Prefix{
		netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("203.0.113.7/32"), netip.MustParsePrefix("2001:db8::/32"),
		netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("10.0.0.0/8"),
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("prefixes %v, want %v", got, want)
	}
	if err := (servePrefixList{&got}).Set("example.com"); err == nil {
		t.Error("a host name accepted")
	}
}

// pairURL is the rendezvous URL from natcheck serve's "pair listening" line.
func (s *served) pairURL(t *testing.T) string {
	t.Helper()
	l, ok := s.stderr.find(t, "pair listening")
	if !ok || l.URL == "" {
		t.Fatalf("no pair listening line with a url: %s", s.stderr)
	}
	return l.URL
}

// TestServePair runs natcheck serve --http with a token and pairs two
// rendezvous clients through it: both meet, a message passes each way, a
// third member and a wrong token are refused, and the stats line at
// shutdown counts them; the token never appears in the log.
func TestServePair(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*serveWait)
	defer cancel()
	const token = "pair-secret-4711"
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServe(t, "--primary", "127.0.0.1:0", "--http", "127.0.0.1:0", "--pair-token-file", tokenFile, "--log-level", "debug")
	u := s.pairURL(t)
	if !strings.HasPrefix(u, "ws://127.0.0.1:") || !strings.HasSuffix(u, "/pair") {
		t.Fatalf("pair url %q", u)
	}
	// Given as host:port, as natcheck pair accepts it.
	hostPort := strings.TrimSuffix(strings.TrimPrefix(u, "ws://"), "/pair")
	a, err := rendezvous.Dial(ctx, hostPort, "lab", rendezvous.DialOptions{Token: token})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := rendezvous.Dial(ctx, u, "lab", rendezvous.DialOptions{Token: token})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if a.Role() != rendezvous.RoleFirst || b.Role() != rendezvous.RoleSecond {
		t.Errorf("roles %q and %q", a.Role(), b.Role())
	}
	for _, c := range []*rendezvous.Client{a, b} {
		if m, err := c.Recv(ctx); err != nil || m.Type != rendezvous.TypePeer || m.Present == nil || !*m.Present {
			t.Fatalf("want peer present, got %+v, %v", m, err)
		}
	}
	if err := a.Send(ctx, rendezvous.Message{Type: rendezvous.TypeOffer, Phase: "direct", SDP: "offer"}); err != nil {
		t.Fatal(err)
	}
	if m, err := b.Recv(ctx); err != nil || m.Type != rendezvous.TypeOffer || m.SDP != "offer" {
		t.Fatalf("b got %+v, %v", m, err)
	}
	if err := b.Send(ctx, rendezvous.Message{Type: rendezvous.TypeAnswer, Phase: "direct", SDP: "answer"}); err != nil {
		t.Fatal(err)
	}
	if m, err := a.Recv(ctx); err != nil || m.Type != rendezvous.TypeAnswer || m.SDP != "answer" {
		t.Fatalf("a got %+v, %v", m, err)
	}
	if _, err := rendezvous.Dial(ctx, u, "lab", rendezvous.DialOptions{Token: token}); !errors.Is(err, rendezvous.ErrRoomFull) {
		t.Errorf("third member: %v, want ErrRoomFull", err)
	}
	if _, err := rendezvous.Dial(ctx, u, "other", rendezvous.DialOptions{Token: "guess"}); !errors.Is(err, rendezvous.ErrUnauthorized) {
		t.Errorf("wrong token: %v, want ErrUnauthorized", err)
	}
	if _, err := rendezvous.Dial(ctx, u, "other", rendezvous.DialOptions{Token: token, PeerServer: true}); !errors.Is(err, rendezvous.ErrNoServerPeer) {
		t.Errorf("peer=server without --pair-ice: %v, want ErrNoServerPeer", err)
	}

	// Shutdown: both clients are told, and the stats line counts.
	s.stop(t)
	for _, c := range []*rendezvous.Client{a, b} {
		for {
			if _, err := c.Recv(ctx); err != nil {
				if !errors.Is(err, rendezvous.ErrClosed) || !strings.Contains(err.Error(), "shutting down") {
					t.Errorf("after shutdown: %v", err)
				}
				break
			}
		}
	}
	l, ok := s.stderr.find(t, "pair stats")
	if !ok || l.Joins == nil || *l.Joins != 2 || l.Forwarded == nil || *l.Forwarded != 2 {
		t.Errorf("pair stats %+v, want 2 joins and 2 forwarded: %s", l, s.stderr)
	}
	if strings.Contains(s.stderr.String(), token) {
		t.Error("the log holds the pair token")
	}
}

// TestServePairTLS serves the rendezvous over TLS with --tls-cert and
// --tls-key: wss:// with the certificate trusted works, without it the
// client says the rendezvous is unreachable.
func TestServePairTLS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*serveWait)
	defer cancel()
	cert, key, roots := writeCert(t)
	s := startServe(t, "--primary", "127.0.0.1:0", "--http", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key)
	u := s.pairURL(t)
	if !strings.HasPrefix(u, "wss://") {
		t.Fatalf("pair url %q, want wss://", u)
	}
	if _, err := rendezvous.Dial(ctx, u, "r", rendezvous.DialOptions{}); !errors.Is(err, rendezvous.ErrUnreachable) {
		t.Errorf("untrusted: %v, want ErrUnreachable", err)
	}
	var cs []*rendezvous.Client
	for range 2 {
		c, err := rendezvous.Dial(ctx, u, "r", rendezvous.DialOptions{TLS: &tls.Config{RootCAs: roots}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cs = append(cs, c)
	}
	for _, c := range cs {
		if m, err := c.Recv(ctx); err != nil || m.Type != rendezvous.TypePeer || !*m.Present {
			t.Fatalf("want peer present, got %+v, %v", m, err)
		}
	}
}

// TestServePairPeerHook checks the wiring of --pair-ice: serve starts the
// server peer given by servePairPeerStart with the address, a client's
// peer=server session reaches its hook, and shutdown stops it. (The pair
// engine sets servePairPeerStart; here a hook that answers an offer.)
func TestServePairPeerHook(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*serveWait)
	defer cancel()
	saved := servePairPeerStart
	t.Cleanup(func() { servePairPeerStart = saved })
	var gotICE netip.AddrPort
	stopped := make(chan struct{})
	servePairPeerStart = func(_ context.Context, ice netip.AddrPort, _ transport.Net, _ *slog.Logger) (rendezvous.PeerFunc, func() error, error) {
		gotICE = ice
		peer := func(ctx context.Context, remote netip.Addr, c rendezvous.Conn) {
			for {
				m, err := c.Recv(ctx)
				if err != nil {
					return
				}
				if m.Type == rendezvous.TypeOffer {
					_ = c.Send(ctx, rendezvous.Message{Type: rendezvous.TypeAnswer, SDP: "from " + remote.String()})
				}
			}
		}
		return peer, func() error { close(stopped); return nil }, nil
	}
	s := startServe(t, "--primary", "127.0.0.1:0", "--http", "127.0.0.1:0", "--pair-ice", "127.0.0.1:3480")
	if gotICE != netip.MustParseAddrPort("127.0.0.1:3480") {
		t.Errorf("server peer started on %v, want 127.0.0.1:3480", gotICE)
	}
	c, err := rendezvous.Dial(ctx, s.pairURL(t), "solo", rendezvous.DialOptions{PeerServer: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if m, err := c.Recv(ctx); err != nil || m.Type != rendezvous.TypePeer || !*m.Present {
		t.Fatalf("want peer present, got %+v, %v", m, err)
	}
	if err := c.Send(ctx, rendezvous.Message{Type: rendezvous.TypeOffer, SDP: "o"}); err != nil {
		t.Fatal(err)
	}
	if m, err := c.Recv(ctx); err != nil || m.Type != rendezvous.TypeAnswer || m.SDP != "from 127.0.0.1" {
		t.Fatalf("want the hook's answer, got %+v, %v", m, err)
	}
	s.stop(t)
	select {
	case <-stopped:
	default:
		t.Error("shutdown did not stop the server peer")
	}
}
