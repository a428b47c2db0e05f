package stunserver

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

// TestTCPMaxConnAge: a client sending a Binding request well within every
// idle timeout is still closed at the connection's max age.
func TestTCPMaxConnAge(t *testing.T) {
	const idle, age = 300 * time.Millisecond, time.Second
	s := mustStart(t, Config{Primary: loopP, TCP: true, IdleTimeout: idle, MaxConnAge: age})
	dialed := time.Now()
	sc := dialTCP(t, "127.0.0.1", s.TCPAddrs()[0])
	var talked time.Duration
	closed := false
	for range 1000 { // at 20 ms, far beyond the age; a guard against hanging
		req := stun.MustBuild(stun.BindingRequest, stun.TransactionID)
		if _, err := sc.c.Write(req.Raw); err != nil {
			closed = true
			break
		}
		m, err := sc.read()
		var ne net.Error
		if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
			closed = true
			break
		}
		if err != nil || m.TransactionID != req.TransactionID {
			t.Fatalf("no response: %v", err)
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
	if _, err := Start(context.Background(), Config{Primary: loopP, TCP: true, MaxConnAge: -time.Second}); err == nil {
		t.Error("a negative max connection age accepted")
	}
}
