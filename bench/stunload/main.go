// Command stunload is a bounded STUN Binding load generator for loopback
// benchmarks: N UDP sockets each keep a window of requests in flight to one
// server until a total count is sent or a duration passes, and it prints
// the answered requests per second and the p50/p99 latency.
//
//	stunload -server 127.0.0.1:3478 -sockets 16 -requests 200000 -duration 10s
//
// Output is one line of key=value pairs (see -h). Every request carries a
// sequence number in its transaction ID, so replies are matched exactly;
// a reply that does not come within -timeout counts as lost and its slot
// in the window is reused.
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
	"slices"
	"sync"
	"sync/atomic"
	"time"

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
	flag.Parse()
	if err := run(*server, *local, *sockets, *window, *requests, *duration, *timeout); err != nil {
		fmt.Fprintf(os.Stderr, "stunload: %v\n", err)
		os.Exit(1)
	}
}

// result is what one socket measured.
type result struct {
	sent, answered, lost uint64
	latencies            []time.Duration
}

func run(server, localIP string, sockets, window, requests int, duration, timeout time.Duration) error {
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
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(lip, 0)))
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
			results[i] = load(ctx, c, to, uint32(i), window, &budget, timeout, requests/sockets+window)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)

	var total result
	for _, r := range results {
		total.sent += r.sent
		total.answered += r.answered
		total.lost += r.lost
		total.latencies = append(total.latencies, r.latencies...)
	}
	slices.Sort(total.latencies)
	pct := func(p float64) time.Duration {
		if len(total.latencies) == 0 {
			return 0
		}
		return total.latencies[min(len(total.latencies)-1, int(p*float64(len(total.latencies))))]
	}
	fmt.Printf("sent=%d answered=%d lost=%d seconds=%.3f rps=%.0f p50_us=%.1f p99_us=%.1f\n",
		total.sent, total.answered, total.lost, elapsed.Seconds(),
		float64(total.answered)/elapsed.Seconds(),
		float64(pct(0.50).Nanoseconds())/1e3, float64(pct(0.99).Nanoseconds())/1e3)
	return nil
}

// load runs one socket: it keeps window requests in flight, each with its
// sequence number in the transaction ID, until the shared budget is spent
// or ctx is done, and then waits for the last replies.
func load(ctx context.Context, c *net.UDPConn, to netip.AddrPort, id uint32, window int, budget *atomic.Int64, timeout time.Duration, hint int) result {
	r := result{latencies: make([]time.Duration, 0, min(hint, 1<<22))}
	sentAt := make(map[uint64]time.Time, window)
	var seq uint64
	req := make([]byte, stun.HeaderSize)
	binary.BigEndian.PutUint16(req[0:2], bindingReq)
	binary.BigEndian.PutUint32(req[4:8], stun.MagicCookie)
	binary.BigEndian.PutUint32(req[8:12], id)
	send := func() bool {
		if ctx.Err() != nil || budget.Add(-1) < 0 {
			return false
		}
		seq++
		binary.BigEndian.PutUint64(req[12:20], seq)
		sentAt[seq] = time.Now()
		if _, err := c.WriteToUDPAddrPort(req, to); err != nil {
			delete(sentAt, seq)
			r.lost++
			return true
		}
		r.sent++
		return true
	}
	for range window {
		if !send() {
			break
		}
	}
	buf := make([]byte, 1500)
	for len(sentAt) > 0 {
		_ = c.SetReadDeadline(time.Now().Add(timeout))
		n, _, err := c.ReadFromUDPAddrPort(buf)
		now := time.Now()
		if err != nil {
			// Everything in flight is older than timeout: lost.
			r.lost += uint64(len(sentAt))
			clear(sentAt)
			for range window {
				if !send() {
					break
				}
			}
			continue
		}
		if n < stun.HeaderSize || binary.BigEndian.Uint16(buf[0:2]) != bindingOK || binary.BigEndian.Uint32(buf[8:12]) != id {
			continue
		}
		s := binary.BigEndian.Uint64(buf[12:20])
		t, ok := sentAt[s]
		if !ok {
			continue
		}
		delete(sentAt, s)
		r.answered++
		r.latencies = append(r.latencies, now.Sub(t))
		send()
	}
	return r
}
