//go:build linux

package udpbatch

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"
)

func listen(t *testing.T, network, addr string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Skipf("listen %s %s: %v", network, addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	return c
}

func local(c *net.UDPConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }

// TestReadWriteBatch sends datagrams from three plain sockets to a batch
// socket, reads them in batches, checks payloads and sources, answers them
// in one WriteBatch and checks that each plain socket got its answer.
func TestReadWriteBatch(t *testing.T) {
	for _, tc := range []struct{ network, addr string }{{"udp4", "127.0.0.1:0"}, {"udp6", "[::1]:0"}} {
		t.Run(tc.network, func(t *testing.T) {
			srv := listen(t, tc.network, tc.addr)
			b, err := New(srv, 8)
			if err != nil {
				t.Fatal(err)
			}
			var peers []*net.UDPConn
			want := map[string]netip.AddrPort{}
			for i := range 3 {
				p := listen(t, tc.network, tc.addr)
				peers = append(peers, p)
				for j := range 2 {
					msg := fmt.Sprintf("peer %d msg %d", i, j)
					if _, err := p.WriteToUDPAddrPort([]byte(msg), local(srv)); err != nil {
						t.Fatal(err)
					}
					want[msg] = local(p)
				}
			}
			ms := make([]Message, 4)
			for i := range ms {
				ms[i].Buf = make([]byte, 64)
			}
			got := map[string]netip.AddrPort{}
			var replies []Message
			for len(got) < len(want) {
				n, err := b.ReadBatch(ms)
				if err != nil {
					t.Fatalf("ReadBatch: %v (got %d of %d)", err, len(got), len(want))
				}
				if n < 1 || n > len(ms) {
					t.Fatalf("ReadBatch returned %d", n)
				}
				for _, m := range ms[:n] {
					msg := string(m.Buf[:m.N])
					got[msg] = m.Addr
					replies = append(replies, Message{Buf: []byte("re: " + msg), Addr: m.Addr})
				}
			}
			for msg, src := range want {
				if got[msg] != src {
					t.Errorf("%q: source %v, want %v", msg, got[msg], src)
				}
			}
			if n, err := b.WriteBatch(replies); n != len(replies) || err != nil {
				t.Fatalf("WriteBatch = %d, %v; want %d, nil", n, err, len(replies))
			}
			buf := make([]byte, 64)
			for i, p := range peers {
				var texts []string
				for range 2 {
					n, from, err := p.ReadFromUDPAddrPort(buf)
					if err != nil {
						t.Fatalf("peer %d: %v", i, err)
					}
					if from != local(srv) {
						t.Errorf("peer %d: reply from %v, want %v", i, from, local(srv))
					}
					texts = append(texts, string(buf[:n]))
				}
				for j := range 2 {
					w := fmt.Sprintf("re: peer %d msg %d", i, j)
					if texts[0] != w && texts[1] != w {
						t.Errorf("peer %d got %q, want %q among them", i, texts, w)
					}
				}
			}
		})
	}
}

// TestTruncated checks that a datagram longer than its buffer is marked.
func TestTruncated(t *testing.T) {
	srv := listen(t, "udp4", "127.0.0.1:0")
	p := listen(t, "udp4", "127.0.0.1:0")
	b, err := New(srv, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"0123456789", "01"} {
		if _, err := p.WriteToUDPAddrPort([]byte(s), local(srv)); err != nil {
			t.Fatal(err)
		}
	}
	ms := []Message{{Buf: make([]byte, 4)}, {Buf: make([]byte, 4)}}
	got := 0
	for got < 2 {
		n, err := b.ReadBatch(ms[got:])
		if err != nil {
			t.Fatal(err)
		}
		got += n
	}
	if !ms[0].Trunc || ms[0].N != 4 || !bytes.Equal(ms[0].Buf, []byte("0123")) {
		t.Errorf("long datagram: Trunc=%v N=%d %q; want true 4 \"0123\"", ms[0].Trunc, ms[0].N, ms[0].Buf)
	}
	if ms[1].Trunc || ms[1].N != 2 {
		t.Errorf("short datagram: Trunc=%v N=%d; want false 2", ms[1].Trunc, ms[1].N)
	}
}

// TestWriteError checks that a message that cannot be sent is reported by
// its index and that the others are sent.
func TestWriteError(t *testing.T) {
	srv := listen(t, "udp4", "127.0.0.1:0")
	p := listen(t, "udp4", "127.0.0.1:0")
	b, err := New(srv, 4)
	if err != nil {
		t.Fatal(err)
	}
	ms := []Message{
		{Buf: []byte("a"), Addr: local(p)},
		{Buf: []byte("b"), Addr: netip.MustParseAddrPort("[2001:db8::1]:9")}, // IPv6 on an IPv4 socket
		{Buf: []byte("c"), Addr: local(p)},
	}
	n, err := b.WriteBatch(ms)
	if n != 1 || err == nil {
		t.Fatalf("WriteBatch = %d, %v; want 1 and an error", n, err)
	}
	if n, err := b.WriteBatch(ms[2:]); n != 1 || err != nil {
		t.Fatalf("WriteBatch of the rest = %d, %v; want 1, nil", n, err)
	}
	buf := make([]byte, 8)
	var got []string
	for range 2 {
		n, _, err := p.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(buf[:n]))
	}
	if got[0] != "a" || got[1] != "c" {
		t.Errorf("received %q, want [a c]", got)
	}
}

// TestDeadlineAndClose checks that ReadBatch honours the read deadline and
// returns net.ErrClosed once the socket is closed.
func TestDeadlineAndClose(t *testing.T) {
	srv := listen(t, "udp4", "127.0.0.1:0")
	b, err := New(srv, 2)
	if err != nil {
		t.Fatal(err)
	}
	ms := []Message{{Buf: make([]byte, 8)}}
	_ = srv.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	if _, err := b.ReadBatch(ms); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("ReadBatch after the deadline: %v, want a deadline error", err)
	}
	_ = srv.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() { _, err := b.ReadBatch(ms); done <- err }()
	time.Sleep(10 * time.Millisecond)
	_ = srv.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("ReadBatch on a closed socket: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ReadBatch did not return after Close")
	}
}

// TestNoAllocs checks that a read and a write of a batch allocate nothing.
func TestNoAllocs(t *testing.T) {
	srv := listen(t, "udp4", "127.0.0.1:0")
	p := listen(t, "udp4", "127.0.0.1:0")
	b, err := New(srv, 4)
	if err != nil {
		t.Fatal(err)
	}
	in := []Message{{Buf: make([]byte, 64)}, {Buf: make([]byte, 64)}}
	out := []Message{{Buf: []byte("pong"), Addr: local(p)}}
	pb, err := New(p, 4)
	if err != nil {
		t.Fatal(err)
	}
	ping := []Message{{Buf: []byte("ping"), Addr: local(srv)}}
	back := []Message{{Buf: make([]byte, 64)}}
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := pb.WriteBatch(ping); err != nil {
			t.Fatal(err)
		}
		if _, err := b.ReadBatch(in); err != nil {
			t.Fatal(err)
		}
		if _, err := b.WriteBatch(out); err != nil {
			t.Fatal(err)
		}
		if _, err := pb.ReadBatch(back); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per round trip, want 0", allocs)
	}
}
