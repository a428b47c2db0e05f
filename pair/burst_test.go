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
	// 200 datagrams of a few bytes fit in a loopback socket's receive
	// buffer, so none is lost before the burster reads it.
	const n = 200
	for i := range n {
		binary.BigEndian.PutUint32(pkt[5:], uint32(i))
		if _, err := peer.WriteTo(pkt, to); err != nil {
			t.Fatal(err)
		}
	}
	// A probe after them: its echo says the burster has read them. It is
	// sent again (at most 50 times) should a busy machine drop it.
	pkt[4] = kindProbe
	buf := make([]byte, 1500)
	for try := 0; ; try++ {
		if _, err := peer.WriteTo(pkt, to); err != nil {
			t.Fatal(err)
		}
		peer.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if _, err := peer.Read(buf); err == nil {
			break
		} else if try == 49 {
			t.Fatalf("no echo of the probe after 50 tries: %v", err)
		}
	}
	b.mu.Lock()
	kept := len(b.echoes)
	b.mu.Unlock()
	if kept != 0 {
		t.Errorf("kept %d echoes of probes never sent", kept)
	}
}
