package pair

import (
	"encoding/binary"
	"net"
	"testing"
	"time"
)

// TestBurstUnaskedEchoes: echoes of probes this side never sent are not
// kept: a peer (or a client of the server peer, which sends no burst)
// cannot grow the burster's memory with made-up sequence numbers.
func TestBurstUnaskedEchoes(t *testing.T) {
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	// conn talks only to peer, as an ICE conn does.
	conn, err := net.DialUDP("udp4", nil, peer.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	to := conn.LocalAddr()
	b := newBurster(conn)
	defer func() { conn.Close(); <-b.done }()
	pkt := make([]byte, burstHeader)
	copy(pkt, burstMagic[:])
	pkt[4] = kindEcho
	const n = 2000
	for i := range n {
		binary.BigEndian.PutUint32(pkt[5:], uint32(i))
		if _, err := peer.WriteTo(pkt, to); err != nil {
			t.Fatal(err)
		}
	}
	// A probe after them: its echo says the burster has read them.
	pkt[4] = kindProbe
	if _, err := peer.WriteTo(pkt, to); err != nil {
		t.Fatal(err)
	}
	peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 1500)
	if _, err := peer.Read(buf); err != nil {
		t.Fatalf("no echo of the probe: %v", err)
	}
	b.mu.Lock()
	kept := len(b.echoes)
	b.mu.Unlock()
	if kept != 0 {
		t.Errorf("kept %d echoes of probes never sent", kept)
	}
}
