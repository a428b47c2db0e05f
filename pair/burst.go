package pair

import (
	"context"
	"encoding/binary"
	"net"
	"slices"
	"sync"
	"time"
)

// The burst: each packet starts with burstMagic, a kind byte (probe or
// echo), a sequence number and the sender's send time in nanoseconds since
// its burst began, padded to the burst size. The other side sends each
// probe back as an echo of the same length, unchanged but for the kind.
var burstMagic = [4]byte{'N', 'C', 'P', 'B'}

const (
	kindProbe = 'p'
	kindEcho  = 'e'
	// burstHeader is magic, kind, sequence and time.
	burstHeader = 4 + 1 + 4 + 8
	// maxBurstPacket bounds a burst packet, sent or echoed.
	maxBurstPacket = 1200
	// maxBurst bounds the packets of one burst, and the echoes one
	// phase sends.
	maxBurst = 1000
)

// burstStats is what one burst measured.
type burstStats struct {
	sent, echoed int
	rtts         []time.Duration
}

func (b burstStats) loss() float64 {
	if b.sent == 0 {
		return 0
	}
	return 1 - float64(b.echoed)/float64(b.sent)
}

func (b burstStats) medianRTT() time.Duration {
	if len(b.rtts) == 0 {
		return 0
	}
	r := slices.Clone(b.rtts)
	slices.Sort(r)
	if len(r)%2 == 1 {
		return r[len(r)/2]
	}
	return (r[len(r)/2-1] + r[len(r)/2]) / 2
}

// burster reads conn: it echoes the peer's probes (at most maxBurst, no
// bigger than received) and records the echoes of its own.
type burster struct {
	conn  net.Conn
	start time.Time

	mu     sync.Mutex
	echoes map[uint32]time.Duration // sequence -> RTT
	// sent is how many probes went out: only their echoes are kept, so
	// the map holds at most maxBurst entries whatever the peer sends.
	sent uint32
	done chan struct{}
}

func newBurster(conn net.Conn) *burster {
	b := &burster{conn: conn, start: time.Now(), echoes: map[uint32]time.Duration{}, done: make(chan struct{})}
	go b.read()
	return b
}

// read runs until conn is closed.
func (b *burster) read() {
	defer close(b.done)
	buf := make([]byte, 1500)
	echoed := 0
	for {
		n, err := b.conn.Read(buf)
		if err != nil {
			return
		}
		if n < burstHeader || n > maxBurstPacket || [4]byte(buf[:4]) != burstMagic {
			continue
		}
		switch buf[4] {
		case kindProbe:
			if echoed >= maxBurst {
				continue
			}
			echoed++
			buf[4] = kindEcho
			_, _ = b.conn.Write(buf[:n])
		case kindEcho:
			seq := binary.BigEndian.Uint32(buf[5:])
			sent := time.Duration(binary.BigEndian.Uint64(buf[9:]))
			rtt := time.Since(b.start) - sent
			b.mu.Lock()
			if _, dup := b.echoes[seq]; !dup && rtt >= 0 && seq < b.sent {
				b.echoes[seq] = rtt
			}
			b.mu.Unlock()
		}
	}
}

// send sends count probes of size bytes, interval apart, then waits for
// the echoes: until all are back, or for grace after the last probe.
func (b *burster) send(ctx context.Context, count, size int, interval, grace time.Duration) burstStats {
	size = max(burstHeader, min(size, maxBurstPacket))
	count = min(count, maxBurst)
	pkt := make([]byte, size)
	copy(pkt, burstMagic[:])
	pkt[4] = kindProbe
	var st burstStats
	t := time.NewTicker(interval)
	defer t.Stop()
	for i := range count {
		binary.BigEndian.PutUint32(pkt[5:], uint32(i))
		binary.BigEndian.PutUint64(pkt[9:], uint64(time.Since(b.start)))
		b.mu.Lock()
		b.sent = uint32(i) + 1
		b.mu.Unlock()
		if _, err := b.conn.Write(pkt); err != nil {
			break
		}
		st.sent++
		if i == count-1 {
			break
		}
		select {
		case <-ctx.Done():
			return b.stats(st)
		case <-t.C:
		}
	}
	deadline := time.NewTimer(grace)
	defer deadline.Stop()
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	for {
		b.mu.Lock()
		all := len(b.echoes) >= st.sent
		b.mu.Unlock()
		if all {
			break
		}
		select {
		case <-ctx.Done():
			return b.stats(st)
		case <-deadline.C:
			return b.stats(st)
		case <-poll.C:
		}
	}
	return b.stats(st)
}

func (b *burster) stats(st burstStats) burstStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	for seq, rtt := range b.echoes {
		if int(seq) < st.sent {
			st.echoed++
			st.rtts = append(st.rtts, rtt)
		}
	}
	return st
}
