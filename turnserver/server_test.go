package turnserver_test

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/turn/v5"

	"github.com/natcheck/natcheck/internal/syncbuf"
	"github.com/natcheck/natcheck/internal/turnauth"
	"github.com/natcheck/natcheck/natclass"
	"github.com/natcheck/natcheck/stunserver/stuntest"
	"github.com/natcheck/natcheck/turncheck"
	"github.com/natcheck/natcheck/turncheck/turntest"
	"github.com/natcheck/natcheck/turnserver"
)

const (
	realm    = "test"
	password = "pa55-word-7f3a"
	secret   = "s3cret-9b1c"
	wait     = 5 * time.Second
)

var (
	loopback = netip.MustParseAddrPort("127.0.0.1:0")
	// allowLoopback lets the relays reach the tests' peers on 127.0.0.1.
	allowLoopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
)

// start starts a server with static users alice and bob and the REST
// secret, unless cfg has credentials, and closes it when the test ends.
func start(t *testing.T, cfg turnserver.Config) *turnserver.Server {
	t.Helper()
	cfg.Realm = realm
	if cfg.Users == nil && cfg.Secret == "" {
		cfg.Users = map[string][]byte{
			"alice": turn.GenerateAuthKey("alice", realm, password),
			"bob":   turn.GenerateAuthKey("bob", realm, password),
		}
		cfg.Secret = secret
	}
	s, err := turnserver.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

func longTerm(user string) turncheck.Credentials {
	return turncheck.Credentials{User: user, Password: turncheck.NewSecret(password)}
}

func rest(user string, lifetime time.Duration) turncheck.Credentials {
	return turncheck.Credentials{User: user, SharedSecret: turncheck.NewSecret(secret), Lifetime: lifetime}
}

// check runs natcheck's TURN check (allocate, permission, data through the
// relay to a peer on 127.0.0.1 and back, release) against raw.
func check(t *testing.T, raw string, c turncheck.Credentials, o turncheck.Options) natclass.TURNCheck {
	t.Helper()
	u, err := turncheck.ParseURL(raw)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return turncheck.Check(ctx, turncheck.Server{URL: u, Credentials: c}, o)
}

// waitStats polls s until ok or 5 s pass, and returns the last stats.
func waitStats(s *turnserver.Server, ok func(turnserver.Stats) bool) turnserver.Stats {
	st := s.Stats()
	for deadline := time.Now().Add(wait); !ok(st) && time.Now().Before(deadline); st = s.Stats() {
		time.Sleep(5 * time.Millisecond)
	}
	return st
}

// TestRelay proves the relay by data over UDP, TCP and TLS, with static
// users and REST credentials.
func TestRelay(t *testing.T) {
	tlsCfg, roots := stuntest.TLSConfig(t)
	var logs syncbuf.Buffer
	s := start(t, turnserver.Config{
		UDP: []netip.AddrPort{loopback}, TCP: []netip.AddrPort{loopback}, TLS: []netip.AddrPort{loopback},
		TLSConfig: tlsCfg, AllowPeers: allowLoopback, RelayMinPort: 41000, RelayMaxPort: 41999,
		Logger: slog.New(slog.NewJSONHandler(&logs, nil)),
	})
	if len(s.UDPAddrs()) != 1 || len(s.TCPAddrs()) != 1 || len(s.TLSAddrs()) != 1 || s.UDPAddrs()[0].Port() == 0 {
		t.Fatalf("addresses %v %v %v", s.UDPAddrs(), s.TCPAddrs(), s.TLSAddrs())
	}
	urls := []string{
		"turn:" + s.UDPAddrs()[0].String(),
		"turn:" + s.TCPAddrs()[0].String() + "?transport=tcp",
		"turns:" + s.TLSAddrs()[0].String(),
	}
	checks := 0
	for _, raw := range urls {
		for name, c := range map[string]turncheck.Credentials{"static": longTerm("alice"), "rest": rest("carol", time.Hour)} {
			res := check(t, raw, c, turncheck.Options{RootCAs: roots})
			checks++
			if !res.OK || res.Data == nil || res.Data.Received == 0 || res.Released != natclass.TriYes || res.Realm != realm {
				t.Errorf("%s %s: ok %v (%s %s), data %+v, released %v, realm %q", raw, name, res.OK, res.FailedStep, res.Error, res.Data, res.Released, res.Realm)
			}
			if p := res.Relayed.Port(); p < 41000 || p > 41999 || res.Relayed.Addr() != loopback.Addr() {
				t.Errorf("%s %s: relayed address %v, want 127.0.0.1 and a port in 41000-41999", raw, name, res.Relayed)
			}
		}
	}
	st := waitStats(s, func(st turnserver.Stats) bool { return st.Allocations == 0 })
	if st.Created != uint64(checks) || st.Allocations != 0 || st.QuotaRefused != 0 || st.PeersDenied != 0 {
		t.Errorf("stats %+v after %d checks that released their allocations", st, checks)
	}
	out := logs.String()
	if n := strings.Count(out, `"msg":"allocation created"`); n != checks {
		t.Errorf("%d allocation created lines, want %d", n, checks)
	}
	for _, leak := range []string{password, secret} {
		if strings.Contains(out, leak) {
			t.Errorf("log shows a credential %q", leak)
		}
	}
}

func TestQuota(t *testing.T) {
	var logs syncbuf.Buffer
	s := start(t, turnserver.Config{
		UDP: []netip.AddrPort{loopback}, AllowPeers: allowLoopback, MaxAllocations: 2, UserQuota: 1,
		Logger: slog.New(slog.NewJSONHandler(&logs, nil)),
	})
	raw := "turn:" + s.UDPAddrs()[0].String()
	if _, err := turntest.Allocate(t, s.UDPAddrs()[0], "alice", password); err != nil {
		t.Fatal(err)
	}
	// alice has her one allocation.
	if res := check(t, raw, longTerm("alice"), turncheck.Options{}); res.FailedStep != natclass.TURNStepAllocate || res.ErrorCode != 486 {
		t.Errorf("alice's second allocation: %s %d %s", res.FailedStep, res.ErrorCode, res.Error)
	}
	// A REST user counts as the user after the colon.
	name := turnauth.Username(time.Now().Add(time.Hour), "bob")
	if _, err := turntest.Allocate(t, s.UDPAddrs()[0], name, turnauth.Password(secret, name)); err != nil {
		t.Fatal(err)
	}
	if res := check(t, raw, rest("bob", time.Hour), turncheck.Options{}); res.ErrorCode != 486 {
		t.Errorf("bob's second allocation: %s %d %s", res.FailedStep, res.ErrorCode, res.Error)
	}
	// Two allocations are all the server takes.
	if res := check(t, raw, rest("carol", time.Hour), turncheck.Options{}); res.ErrorCode != 486 {
		t.Errorf("a third allocation: %s %d %s", res.FailedStep, res.ErrorCode, res.Error)
	}
	if st := s.Stats(); st.Allocations != 2 || st.Created != 2 || st.QuotaRefused != 3 {
		t.Errorf("stats %+v", st)
	}
	if n := strings.Count(logs.String(), `"msg":"allocation refused: quota reached"`); n < 1 || n > 2 {
		t.Errorf("%d quota log lines for 3 refusals within about a second, want 1 or 2", n)
	}
}

func TestRefusals(t *testing.T) {
	s := start(t, turnserver.Config{UDP: []netip.AddrPort{loopback}})
	raw := "turn:" + s.UDPAddrs()[0].String()
	// pion/turn v5.1.3, like coturn, answers wrong credentials with 401
	// (v5.0.12 answered 400 after the 401 challenge).
	for name, c := range map[string]turncheck.Credentials{
		"wrong password": {User: "alice", Password: turncheck.NewSecret("wrong")},
		"unknown user":   {User: "mallory", Password: turncheck.NewSecret(password)},
		"expired REST":   rest("carol", -time.Hour),
		"wrong secret":   {User: "carol", SharedSecret: turncheck.NewSecret("wrong")},
	} {
		if res := check(t, raw, c, turncheck.Options{}); res.FailedStep != natclass.TURNStepAllocate || res.ErrorCode != 401 {
			t.Errorf("%s: %s %d %s", name, res.FailedStep, res.ErrorCode, res.Error)
		}
	}
	if st := s.Stats(); st.AuthFailed < 4 || st.Created != 0 {
		t.Errorf("stats %+v", st)
	}
	// Loopback peers are denied by default.
	if res := check(t, raw, longTerm("alice"), turncheck.Options{}); res.FailedStep != natclass.TURNStepPermission || res.ErrorCode != 403 {
		t.Errorf("loopback peer: %s %d %s", res.FailedStep, res.ErrorCode, res.Error)
	}
	if st := s.Stats(); st.PeersDenied == 0 {
		t.Errorf("stats %+v: no peer denied", st)
	}
}

// TestRelayAddress: a listener on an unspecified address uses the Relay of
// its family, whose public address is what clients are given.
func TestRelayAddress(t *testing.T) {
	s := start(t, turnserver.Config{
		UDP:    []netip.AddrPort{netip.MustParseAddrPort("0.0.0.0:0")},
		Relays: []turnserver.Relay{{Public: netip.MustParseAddr("192.0.2.1"), Local: netip.MustParseAddr("127.0.0.1")}},
	})
	server := netip.AddrPortFrom(loopback.Addr(), s.UDPAddrs()[0].Port())
	relay, err := turntest.Allocate(t, server, "alice", password)
	if err != nil {
		t.Fatal(err)
	}
	if ua, ok := relay.LocalAddr().(*net.UDPAddr); !ok || !ua.IP.Equal(net.IPv4(192, 0, 2, 1)) {
		t.Errorf("relayed address %v, want 192.0.2.1", relay.LocalAddr())
	}
}

func dialTCP(t *testing.T, to netip.AddrPort) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp4", to.String(), wait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedByServer reports whether the server closes c within 5 s.
func closedByServer(c net.Conn) bool {
	_ = c.SetReadDeadline(time.Now().Add(wait))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

func TestConnectionLimits(t *testing.T) {
	var logs syncbuf.Buffer
	s := start(t, turnserver.Config{
		TCP: []netip.AddrPort{loopback}, AllowPeers: allowLoopback,
		MaxConnsPerSource: 1, FirstTimeout: 200 * time.Millisecond,
		Logger: slog.New(slog.NewJSONHandler(&logs, nil)),
	})
	to := s.TCPAddrs()[0]
	silent := dialTCP(t, to)
	time.Sleep(20 * time.Millisecond) // let the server accept it first
	if !closedByServer(dialTCP(t, to)) {
		t.Error("a second connection from one source was served")
	}
	// The refusal is logged just after the connection is closed.
	for deadline := time.Now().Add(wait); !strings.Contains(logs.String(), `"msg":"turn connection refused: limit reached"`); {
		if time.Now().After(deadline) {
			t.Fatalf("refusal not logged: %s", logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	if !closedByServer(silent) {
		t.Fatal("silent connection not closed")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("silent connection closed after %v, want about 200ms", d)
	}
	// Room again: a whole check over TCP, which talks in time.
	var res natclass.TURNCheck
	for range 50 {
		if res = check(t, "turn:"+to.String()+"?transport=tcp", longTerm("alice"), turncheck.Options{}); res.OK {
			break
		}
		time.Sleep(20 * time.Millisecond) // the server has not seen the close yet
	}
	if !res.OK {
		t.Errorf("check over TCP after the silent connection closed: %s %s", res.FailedStep, res.Error)
	}
}

func TestStartErrors(t *testing.T) {
	users := map[string][]byte{"alice": turn.GenerateAuthKey("alice", realm, password)}
	udp := []netip.AddrPort{loopback}
	for name, cfg := range map[string]turnserver.Config{
		"no listener":             {Users: users},
		"no credentials":          {UDP: udp},
		"tls without config":      {Users: users, TLS: udp},
		"tls config without cert": {Users: users, TLS: udp, TLSConfig: &tls.Config{}},
		"relay ports reversed":    {Users: users, UDP: udp, RelayMinPort: 5000, RelayMaxPort: 4000},
		"relay min port alone":    {Users: users, UDP: udp, RelayMinPort: 5000},
		"negative quota":          {Users: users, UDP: udp, UserQuota: -1},
		"negative timeout":        {Users: users, UDP: udp, FirstTimeout: -time.Second},
		"unspecified no relay":    {Users: users, UDP: []netip.AddrPort{netip.MustParseAddrPort("0.0.0.0:0")}},
		"two relays of a family":  {Users: users, UDP: udp, Relays: []turnserver.Relay{{Public: netip.MustParseAddr("192.0.2.1")}, {Public: netip.MustParseAddr("192.0.2.2")}}},
		"unspecified relay":       {Users: users, UDP: udp, Relays: []turnserver.Relay{{Public: netip.MustParseAddr("0.0.0.0")}}},
		"relay of mixed families": {Users: users, UDP: udp, Relays: []turnserver.Relay{{Public: netip.MustParseAddr("192.0.2.1"), Local: netip.MustParseAddr("::1")}}},
	} {
		if s, err := turnserver.Start(context.Background(), cfg); err == nil {
			s.Close()
			t.Errorf("%s: started", name)
		} else if !strings.HasPrefix(err.Error(), "turnserver: ") {
			t.Errorf("%s: error %q lacks the package prefix", name, err)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := turnserver.Start(ctx, turnserver.Config{Users: users, UDP: udp}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v", err)
	}

	// A listener that cannot be bound fails Start and leaves nothing bound.
	busy, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	free := freeUDPPort(t)
	_, err = turnserver.Start(context.Background(), turnserver.Config{Users: users, UDP: []netip.AddrPort{free},
		TCP: []netip.AddrPort{busy.Addr().(*net.TCPAddr).AddrPort()}})
	if err == nil || !strings.Contains(err.Error(), "listen on tcp") {
		t.Fatalf("busy TCP port: %v", err)
	}
	pc, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(free))
	if err != nil {
		t.Fatalf("UDP listener left bound after the failed start: %v", err)
	}
	pc.Close()
}

// freeUDPPort returns an address on 127.0.0.1 that was free a moment ago.
func freeUDPPort(t *testing.T) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(loopback))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

// TestClose: when the context of Start ends, the server closes its
// listeners and connections; Close then returns nil.
func TestClose(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	s, err := turnserver.Start(ctx, turnserver.Config{
		Users: map[string][]byte{"alice": turn.GenerateAuthKey("alice", realm, password)},
		UDP:   []netip.AddrPort{loopback}, TCP: []netip.AddrPort{loopback},
	})
	if err != nil {
		t.Fatal(err)
	}
	conn := dialTCP(t, s.TCPAddrs()[0])
	time.Sleep(20 * time.Millisecond) // let the server accept it
	cancel()
	if !closedByServer(conn) {
		t.Error("TCP connection open after the context ended")
	}
	for _, ap := range s.UDPAddrs() {
		var pc *net.UDPConn
		for range 100 {
			if pc, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(ap)); err == nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err != nil {
			t.Errorf("%v still bound after the context ended: %v", ap, err)
			continue
		}
		pc.Close()
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close after the context ended: %v", err)
	}
}
