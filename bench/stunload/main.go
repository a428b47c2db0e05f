// Command stunload is a bounded STUN Binding load generator for loopback
// benchmarks: N UDP sockets each keep a window of requests in flight to one
// server until a total count is sent or a duration passes, and it prints
// the answered requests per second and the p50/p99 latency.
//
//	stunload -server 127.0.0.1:3478 -sockets 16 -requests 200000 -duration 10s
//
// Output is one line of key=value pairs (see -h). Every request carries its
// window slot and a sequence number in its transaction ID, so replies are
// matched exactly; a reply that does not come within -timeout counts as
// lost and its slot in the window is reused at once. On Linux each socket
// reads and writes up to -batch datagrams per system call (recvmmsg,
// sendmmsg), so that the generator spends less of the machine's CPU than
// the server it loads.
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/natcheck/natcheck/internal/udpbatch"
	"github.com/natcheck/natcheck/stun"
)

const (
	bindingReq  = 0x0001
	bindingOK   = 0x0101
	maxSockets  = 1024
	maxWindow   = 1024
	maxRequests = 100_000_000
)

func main() {
	server := flag.String("server", "127.0.0.1:3478", "STUN server `IP:PORT` (an IP literal)")
	local := flag.String("local", "127.0.0.1", "local `IP` of the sockets")
	sockets := flag.Int("sockets", 16, "number of client sockets (sources)")
	window := flag.Int("window", 8, "requests in flight per socket")
	requests := flag.Int("requests", 200_000, "total requests to send, at most")
	duration := flag.Duration("duration", 10*time.Second, "stop sending after this long, at most")
	timeout := flag.Duration("timeout", 200*time.Millisecond, "a request unanswered this long is lost")
	batch := flag.Int("batch", 32, "datagrams per system call at most (recvmmsg/sendmmsg, Linux); 1 for one per call")
	procs := flag.Int("procs", 0, "CPUs the generator's goroutines run on at once (GOMAXPROCS); 0: all")
	flag.Parse()
	if *procs < 0 || *procs > runtime.NumCPU() {
		fmt.Fprintf(os.Stderr, "stunload: -procs must be 0 to %d (the CPUs of this machine)\n", runtime.NumCPU())
		os.Exit(2)
	}
	if *procs > 0 {
		runtime.GOMAXPROCS(*procs)
	}
	if err := run(*server, *local, *sockets, *window, *batch, *requests, *duration, *timeout); err != nil {
		fmt.Fprintf(os.Stderr, "stunload: %v\n", err)
		os.Exit(1)
	}
}

// result is what one socket measured.
type result struct {
	sent, answered, lost, sendErrors uint64
	latencies                        []time.Duration
}

func run(server, localIP string, sockets, window, batch, requests int, duration, timeout time.Duration) error {
	to, err := netip.ParseAddrPort(server)
	if err != nil {
		return fmt.Errorf("-server: %w", err)
	}
	lip, err := netip.ParseAddr(localIP)
	if err != nil {
		return fmt.Errorf("-local: %w", err)
	}
	switch {
	case sockets < 1 || sockets > maxSockets:
		return fmt.Errorf("-sockets must be 1 to %d", maxSockets)
	case window < 1 || window > maxWindow:
		return fmt.Errorf("-window must be 1 to %d", maxWindow)
	case batch < 1 || batch > udpbatch.MaxBatch:
		return fmt.Errorf("-batch must be 1 to %d", udpbatch.MaxBatch)
	case requests < 1 || requests > maxRequests:
		return fmt.Errorf("-requests must be 1 to %d", maxRequests)
	case duration <= 0 || duration > 10*time.Minute || timeout <= 0:
		return errors.New("-duration must be positive and at most 10m, -timeout positive")
	}
	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()

	var budget atomic.Int64
	budget.Store(int64(requests))
	results := make([]result, sockets)
	var wg sync.WaitGroup
	conns := make([]*net.UDPConn, sockets)
	for i := range conns {
		// Connected: the kernel delivers only the server's datagrams.
		c, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(lip, 0)), net.UDPAddrFromAddrPort(to))
		if err != nil {
			return err
		}
		defer c.Close()
		conns[i] = c
	}
	start := time.Now()
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = load(ctx, c, uint32(i), window, min(batch, window), &budget, timeout, requests/sockets+window)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)

	var total result
	for _, r := range results {
		total.sent += r.sent
		total.answered += r.answered
		total.lost += r.lost
		total.sendErrors += r.sendErrors
		total.latencies = append(total.latencies, r.latencies...)
	}
	slices.Sort(total.latencies)
	pct := func(p float64) time.Duration {
		if len(total.latencies) == 0 {
			return 0
		}
		return total.latencies[min(len(total.latencies)-1, int(p*float64(len(total.latencies))))]
	}
	fmt.Printf("sent=%d answered=%d lost=%d seconds=%.3f rps=%.0f p50_us=%.1f p99_us=%.1f send_errors=%d\n",
		total.sent, total.answered, total.lost, elapsed.Seconds(),
		float64(total.answered)/elapsed.Seconds(),
		float64(pct(0.50).Nanoseconds())/1e3, float64(pct(0.99).Nanoseconds())/1e3, total.sendErrors)
	return nil
}

// slot is one place in a socket's window.
type slot struct {
	seq    uint64 // sequence number of the request in flight
	sentAt time.Time
	busy   bool
}

// sock is one client socket: a connected UDP socket, read and written in
// batches where the system has recvmmsg/sendmmsg.
type sock struct {
	c    *net.UDPConn
	b    *udpbatch.Conn // nil: one datagram per call
	in   []udpbatch.Message
	out  []udpbatch.Message
	plen int
}

func (s *sock) read() (int, error) {
	if s.b != nil {
		return s.b.ReadBatch(s.in)
	}
	n, err := s.c.Read(s.in[0].Buf)
	s.in[0].N = n
	if err != nil {
		return 0, err
	}
	return 1, nil
}

// write sends s.out[:n] and calls failed with the index of each message
// the socket refused.
func (s *sock) write(n int, failed func(i int)) {
	i := 0
	for i < n {
		if s.b == nil {
			if _, err := s.c.Write(s.out[i].Buf); err != nil {
				failed(i)
			}
			i++
			continue
		}
		k, err := s.b.WriteBatch(s.out[i:n])
		i += k
		if err != nil {
			failed(i)
			i++
		}
	}
}

// load runs one socket: it keeps window requests in flight, each with its
// slot and sequence number in the transaction ID, until the shared budget
// is spent or ctx is done, and then waits for the last replies. A request
// unanswered after timeout is lost and its slot reused at once, so that
// losses do not shrink the window for the rest of the run.
func load(ctx context.Context, c *net.UDPConn, id uint32, window, batch int, budget *atomic.Int64, timeout time.Duration, hint int) result {
	r := result{latencies: make([]time.Duration, 0, min(hint, 1<<22))}
	s := &sock{c: c, in: make([]udpbatch.Message, batch), out: make([]udpbatch.Message, window)}
	if batch > 1 {
		if b, err := udpbatch.New(c, batch); err == nil {
			s.b = b
		}
	}
	if s.b == nil {
		s.in = s.in[:1]
	}
	for i := range s.in {
		s.in[i].Buf = make([]byte, 1500)
	}
	slots := make([]slot, window)
	free := make([]uint16, 0, window)
	for i := window - 1; i >= 0; i-- {
		free = append(free, uint16(i))
	}
	var seq uint64
	reqs := make([]byte, window*stun.HeaderSize)
	stopped := false
	// fill sends a request on every free slot while the budget lasts.
	fill := func(now time.Time) {
		n := 0
		for len(free) > 0 && !stopped {
			if ctx.Err() != nil || budget.Add(-1) < 0 {
				stopped = true
				break
			}
			k := free[len(free)-1]
			free = free[:len(free)-1]
			seq++
			slots[k] = slot{seq: seq, sentAt: now, busy: true}
			req := reqs[int(k)*stun.HeaderSize : int(k+1)*stun.HeaderSize]
			binary.BigEndian.PutUint16(req[0:2], bindingReq)
			binary.BigEndian.PutUint16(req[2:4], 0)
			binary.BigEndian.PutUint32(req[4:8], stun.MagicCookie)
			binary.BigEndian.PutUint32(req[8:12], id)
			binary.BigEndian.PutUint64(req[12:20], uint64(k)<<48|seq&(1<<48-1))
			s.out[n] = udpbatch.Message{Buf: req}
			n++
		}
		if n == 0 {
			return
		}
		r.sent += uint64(n)
		s.write(n, func(i int) {
			k := binary.BigEndian.Uint16(s.out[i].Buf[12:14])
			slots[k].busy = false
			free = append(free, k)
			r.sent--
			r.sendErrors++
		})
	}
	inFlight := func() int { return window - len(free) }
	fill(time.Now())
	tick := max(timeout/4, time.Millisecond)
	lastScan := time.Now()
	for inFlight() > 0 {
		_ = c.SetReadDeadline(time.Now().Add(tick))
		n, err := s.read()
		if ne, ok := err.(net.Error); err != nil && (!ok || !ne.Timeout()) {
			// e.g. ECONNREFUSED from an ICMP error on the connected
			// socket: do not spin on it; the requests time out as lost.
			time.Sleep(time.Millisecond)
		}
		now := time.Now()
		for _, m := range s.in[:n] {
			buf := m.Buf[:m.N]
			if len(buf) < stun.HeaderSize || binary.BigEndian.Uint16(buf[0:2]) != bindingOK || binary.BigEndian.Uint32(buf[8:12]) != id {
				continue
			}
			v := binary.BigEndian.Uint64(buf[12:20])
			k := int(v >> 48)
			if k >= window || !slots[k].busy || slots[k].seq&(1<<48-1) != v&(1<<48-1) {
				continue
			}
			slots[k].busy = false
			free = append(free, uint16(k))
			r.answered++
			r.latencies = append(r.latencies, now.Sub(slots[k].sentAt))
		}
		if err != nil || now.Sub(lastScan) >= tick {
			lastScan = now
			for k := range slots {
				if slots[k].busy && now.Sub(slots[k].sentAt) >= timeout {
					slots[k].busy = false
					free = append(free, uint16(k))
					r.lost++
				}
			}
		}
		fill(now)
	}
	return r
}
