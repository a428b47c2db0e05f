package turnserver_test

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/natcheck/natcheck/internal/udpbudget"
	"github.com/natcheck/natcheck/turnserver"
)

// TestUDPBudget: a source without an allocation gets no more than it sent
// plus its budget, however many unauthenticated Allocate requests it sends
// (each 401 with REALM and NONCE is 3.4 times the request); a client with
// an allocation gets its relayed data whatever the budget.
func TestUDPBudget(t *testing.T) {
	const srcBudget = 1000
	budget := udpbudget.New(nil, srcBudget, 1<<20, nil, nil)
	s := start(t, turnserver.Config{
		UDP: []netip.AddrPort{loopback}, AllowPeers: allowLoopback, Budget: budget,
	})
	server := net.UDPAddrFromAddrPort(s.UDPAddrs()[0])

	// 200 unauthenticated Allocates of 20 bytes from 127.0.0.1.
	flood, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer flood.Close()
	const n = 200
	sent := 0
	start := time.Now()
	for range n {
		req := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest))
		if _, err := flood.WriteTo(req.Raw, server); err != nil {
			t.Fatal(err)
		}
		sent += len(req.Raw)
	}
	got, replies := 0, 0
	buf := make([]byte, 1500)
	for {
		_ = flood.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		k, _, err := flood.ReadFrom(buf)
		if err != nil {
			break
		}
		got += k
		replies++
	}
	elapsed := time.Since(start)
	// The budget refills at srcBudget per 8 s.
	bound := sent + srcBudget + int(float64(srcBudget)*elapsed.Seconds()/8) + 1
	if got > bound || replies == 0 {
		t.Errorf("%d replies, %d bytes for %d requests of %d bytes in %v: want some, and at most %d bytes", replies, got, n, sent, elapsed, bound)
	}
	if st := s.Stats(); st.BudgetDrops == 0 {
		t.Errorf("stats %+v: no budget drops", st)
	}

	// A client on another address allocates and gets far more relayed
	// data than its budget would pay for.
	conn, err := net.ListenPacket("udp4", "127.0.0.5:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, relay := turnClient(t, conn, server.String())
	peer, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	// The permission comes from the client's first send to the peer.
	if _, err := relay.WriteTo([]byte("hello"), peer.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	_ = peer.SetReadDeadline(time.Now().Add(wait))
	k, from, err := peer.ReadFrom(buf)
	if err != nil || string(buf[:k]) != "hello" {
		t.Fatalf("peer read %q %v", buf[:k], err)
	}
	const packets, size = 20, 500 // 10,000 bytes, ten times the budget
	received := 0
	for range packets {
		if _, err := peer.WriteTo(make([]byte, size), from); err != nil {
			t.Fatal(err)
		}
		_ = relay.SetReadDeadline(time.Now().Add(wait))
		if k, _, err := relay.ReadFrom(buf); err == nil && k == size {
			received++
		}
	}
	if received != packets {
		t.Errorf("the client with an allocation got %d of %d relayed packets", received, packets)
	}

	// Responses to the allocated client's address are charged all the
	// same: anyone can forge it. 200 Allocates of 20 bytes would get 200
	// 401s of 64 bytes; the budget pays for at most (4000+1000)/64 = 78
	// of them (plus what refills meanwhile).
	before := s.Stats().BudgetDrops
	for range n {
		req := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest))
		if _, err := conn.WriteTo(req.Raw, server); err != nil {
			t.Fatal(err)
		}
	}
	var drops uint64
	for range 100 { // until the server has handled them all, at most 5 s
		if drops = s.Stats().BudgetDrops - before; drops >= 100 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if drops < 100 {
		t.Errorf("%d of %d 401s to an allocated client's address dropped, want at least 100", drops, n)
	}
}
