package turnserver_test

import (
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"

	"github.com/natcheck/natcheck/turnserver"
)

// watchedConn is a client connection that tells when a Read fails, as it
// does once the server closes the connection.
type watchedConn struct {
	net.Conn
	once sync.Once
	done chan struct{}
}

func (c *watchedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil {
		c.once.Do(func() { close(c.done) })
	}
	return n, err
}

func (c *watchedConn) closedWithin(d time.Duration) bool {
	select {
	case <-c.done:
		return true
	case <-time.After(d):
		return false
	}
}

// TestConnAge: a TCP connection without an allocation is closed at
// MaxConnAge however busy; one with an allocation outlives it, and is
// closed once its allocation is deleted.
func TestConnAge(t *testing.T) {
	const first, age = 300 * time.Millisecond, time.Second
	s := start(t, turnserver.Config{TCP: []netip.AddrPort{loopback}, FirstTimeout: first, MaxConnAge: age})
	to := s.TCPAddrs()[0]

	// Binding requests every 20 ms: never idle, but closed at its age.
	busy := dialTCP(t, to)
	dialed := time.Now()
	var talked time.Duration
	for range 1000 { // at 20 ms, far beyond the age; a guard against hanging
		req := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
		_ = busy.SetDeadline(time.Now().Add(wait))
		if _, err := busy.Write(req.Raw); err != nil {
			break
		}
		var resp stun.Message
		resp.Raw = make([]byte, 1500)
		n, err := busy.Read(resp.Raw)
		if err != nil {
			break
		}
		resp.Raw = resp.Raw[:n]
		if err := resp.Decode(); err != nil || resp.Type != stun.BindingSuccess {
			t.Fatalf("binding response %v %v", resp.Type, err)
		}
		talked = time.Since(dialed)
		time.Sleep(20 * time.Millisecond)
	}
	if !closedByServer(busy) {
		t.Fatal("a busy connection without an allocation was not closed")
	}
	if talked <= first {
		t.Errorf("talked for %v only, not longer than the first timeout %v", talked, first)
	}
	if open := time.Since(dialed); open < age {
		t.Errorf("closed after %v, before the max age %v", open, age)
	}

	// An allocation holds its connection past the age.
	raw, err := net.DialTimeout("tcp4", to.String(), wait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	wc := &watchedConn{Conn: raw, done: make(chan struct{})}
	c, relay := turnClient(t, turn.NewSTUNConn(wc), to.String())
	if wc.closedWithin(2 * age) {
		t.Fatal("a connection with an allocation was closed")
	}
	peer := &net.UDPAddr{IP: net.IPv4(1, 2, 3, 5), Port: 9}
	if err := c.CreatePermission(peer); err != nil {
		t.Fatalf("CreatePermission past the max age: %v", err)
	}
	// Deleting the allocation (a Refresh with lifetime 0) lets the age
	// close the connection.
	_ = relay.Close()
	if !wc.closedWithin(wait) {
		t.Error("the connection outlived its allocation past its max age")
	}
}

// TestConnAgeUDPAllocation: a UDP allocation from the same address and
// port as a TCP connection to the same server address does not hold that
// connection past its age (pion reports every allocation as UDP; only the
// client's address type tells them apart).
func TestConnAgeUDPAllocation(t *testing.T) {
	const age = 500 * time.Millisecond
	// One port for the server's UDP and TCP listeners.
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	server := netip.MustParseAddrPort(l.Addr().String())
	l.Close()
	s := start(t, turnserver.Config{UDP: []netip.AddrPort{server}, TCP: []netip.AddrPort{server}, MaxConnAge: age})
	if s.TCPAddrs()[0] != server {
		t.Fatalf("TCP listener on %v, want %v", s.TCPAddrs()[0], server)
	}
	tcp := dialTCP(t, server)
	// The UDP allocation comes from the TCP connection's own address.
	udp, err := net.ListenPacket("udp4", tcp.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { udp.Close() })
	turnClient(t, udp, server.String())

	dialed := time.Now()
	for range 500 { // at 20 ms, far beyond the age; a guard against hanging
		req := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
		_ = tcp.SetDeadline(time.Now().Add(wait))
		if _, err := tcp.Write(req.Raw); err != nil {
			break
		}
		if _, err := tcp.Read(make([]byte, 1500)); err != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !closedByServer(tcp) {
		t.Fatal("a busy TCP connection was held past its age by a UDP allocation from its address")
	}
	if open := time.Since(dialed); open < age {
		t.Errorf("closed after %v, before the max age %v", open, age)
	}
}
