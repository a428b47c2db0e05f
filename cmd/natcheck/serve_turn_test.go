package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	natstun "github.com/natcheck/natcheck/stun"
)

// TestServeMaxConnAgeFlag: --max-conn-age must be a positive duration, is
// 5 minutes by default, and reaches the TURN configuration.
func TestServeMaxConnAgeFlag(t *testing.T) {
	for _, v := range []string{"-1h", "0", "soon"} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), []string{"serve", "--primary", "127.0.0.1", "--max-conn-age", v}, &stdout, &stderr, env{})
		msg := stderr.String()
		if code != exitUsage || !strings.HasPrefix(msg, "natcheck serve: ") || strings.Count(msg, "\n") != 1 ||
			!strings.Contains(msg, `invalid value "`+v+`" for flag -max-conn-age: give a positive duration such as 5m`) {
			t.Errorf("--max-conn-age %s: exit %d, %q", v, code, msg)
		}
	}
	o, err := parseServeArgs([]string{"--primary", "127.0.0.1"}, io.Discard)
	if err != nil || o.maxConnAge != 5*time.Minute {
		t.Errorf("default: %v %v, want 5m0s", o.maxConnAge, err)
	}
	users := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(users, []byte("alice:pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err = parseServeArgs([]string{"--primary", "127.0.0.1", "--max-conn-age", "90s", "--turn-users", users, "--turn-tcp", "127.0.0.1:0"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := serveTURNConfig(o, slog.New(slog.DiscardHandler))
	if err != nil || cfg.MaxConnAge != 90*time.Second {
		t.Errorf("TURN config max conn age %v (%v), want 1m30s", cfg.MaxConnAge, err)
	}
}

// TestServeMaxConnAge: a STUN TCP client sending a request well within
// every idle timeout is closed at --max-conn-age.
func TestServeMaxConnAge(t *testing.T) {
	const idle, age = 300 * time.Millisecond, time.Second
	s := startServe(t, "--primary", "127.0.0.1:0", "--idle-timeout", idle.String(), "--max-conn-age", age.String())
	tcp := s.stun(t).TCP
	if len(tcp) == 0 {
		t.Fatalf("no TCP listener: %s", s.stderr)
	}
	dialed := time.Now()
	c, err := net.DialTimeout("tcp", tcp[0], serveWait)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var talked time.Duration
	closed := false
	for range 1000 { // at 20 ms, far beyond the age; a guard against hanging
		req := stun.MustBuild(stun.BindingRequest, stun.TransactionID)
		_ = c.SetDeadline(time.Now().Add(serveWait))
		if err := natstun.WriteMessage(c, req.Raw); err != nil {
			closed = true
			break
		}
		m, err := natstun.ReadMessage(c, natstun.MaxMessageSize)
		if err != nil {
			closed = true
			break
		}
		if m.TransactionID != req.TransactionID {
			t.Fatal("response to another transaction")
		}
		talked = time.Since(dialed)
		time.Sleep(20 * time.Millisecond)
	}
	if !closed {
		t.Fatal("a busy connection was not closed")
	}
	if talked <= idle {
		t.Errorf("talked for %v only, not longer than the idle timeout %v", talked, idle)
	}
	if open := time.Since(dialed); open < age {
		t.Errorf("closed after %v, before the max age %v", open, age)
	}
}

// TestServeSharedBudget: STUN and TURN share one byte budget, so a source
// that spent its budget on STUN responses gets no more from the TURN port
// (each 401 to an unauthenticated Allocate is 3.2 times the request).
func TestServeSharedBudget(t *testing.T) {
	const budget = 1000
	users := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(users, []byte("alice:pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServe(t, "--primary", "127.0.0.1:0", "--source-budget", "1000",
		"--turn-users", users, "--turn-udp", "127.0.0.1:0")
	stunAddr := mustAddrPorts(t, s.stun(t).UDP)[0]
	tl, ok := s.stderr.find(t, "turn listening")
	if !ok || len(tl.UDP) != 1 {
		t.Fatalf("turn listening %+v: %s", tl, s.stderr)
	}
	turnAddr := netip.MustParseAddrPort(tl.UDP[0])
	attacker := listenUDP(t, "127.0.0.1")
	sent, got := 0, 0
	start := time.Now()
	send := func(to netip.AddrPort, m *stun.Message) {
		if _, err := attacker.WriteToUDPAddrPort(m.Raw, to); err != nil {
			t.Fatal(err)
		}
		sent += len(m.Raw)
	}
	drain := func() (n int) {
		buf := make([]byte, 1500)
		for {
			_ = attacker.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			k, _, err := attacker.ReadFromUDPAddrPort(buf)
			if err != nil {
				return n
			}
			got += k
			n++
		}
	}
	// 40 Binding requests of 20 bytes: 56 bytes of deficit each, the
	// budget pays for 17 of them.
	for range 40 {
		send(stunAddr, stun.MustBuild(stun.TransactionID, stun.BindingRequest))
	}
	if n := drain(); n == 0 || n == 40 {
		t.Fatalf("%d of 40 STUN responses: want the budget to pay for some, not all", n)
	}
	// The TURN port then answers from what is left: almost nothing.
	for range 40 {
		send(turnAddr, stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest)))
	}
	drain()
	elapsed := time.Since(start)
	if limit := sent + budget + int(elapsed.Seconds()*budget/8) + 1; got > limit {
		t.Errorf("sent %d bytes to STUN and TURN in %v, got %d back, want at most %d", sent, elapsed, got, limit)
	}
}
