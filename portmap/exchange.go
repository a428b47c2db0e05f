package portmap

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// retransmit is when requests are sent, relative to the first: RFC 6886
// section 3.1 starts at 250 ms and doubles; this starts at 100 ms so that a
// lost first request still fits the detection budget.
var retransmit = []time.Duration{0, 100 * time.Millisecond, 300 * time.Millisecond, 700 * time.Millisecond, 1500 * time.Millisecond, 3100 * time.Millisecond}

// exchange sends req on conn (connected to gw) on the retransmit schedule
// until parse accepts a reply from gw or ctx ends. parse returns nil for an
// answer, an errSkip to keep waiting, or another error that ends the
// exchange as the gateway's answer. answered reports whether a reply that
// was not skipped arrived.
func exchange(ctx context.Context, conn *net.UDPConn, gw netip.AddrPort, req []byte, parse func([]byte) error) (answered bool, err error) {
	send := func() error {
		if _, err := conn.Write(req); err != nil {
			return fmt.Errorf("sending to %s: %w", gw, err)
		}
		return nil
	}
	accept := func(b []byte, from netip.AddrPort) error {
		if !sameAddr(from.Addr(), gw.Addr()) || from.Port() != gw.Port() {
			return skip("a reply from %s, not the gateway %s", from, gw)
		}
		return parse(b)
	}
	return await(ctx, conn, send, accept, "answer", gw.String())
}

// await calls send on the retransmit schedule and reads replies on conn
// until accept takes one or ctx ends. accept returns nil for an answer, an
// errSkip to keep waiting, or another error that ends the wait as the
// answer. answered reports whether a reply that was not skipped arrived;
// when none did, the error says how long it waited for what ("no answer
// from GW within ...") and why replies were ignored. A read error other
// than a timeout (ICMP port unreachable on a connected socket: nothing
// listens) ends the wait with that error, prefixed with peer.
func await(ctx context.Context, conn *net.UDPConn, send func() error, accept func(b []byte, from netip.AddrPort) error, what, peer string) (answered bool, err error) {
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	start := time.Now()
	next := 0
	var skipped int
	var lastSkip string
	buf := make([]byte, 2048)
	for ctx.Err() == nil {
		if next < len(retransmit) && time.Since(start) >= retransmit[next] {
			if err := send(); err != nil {
				return false, err
			}
			next++
		}
		deadline := time.Time{}
		if next < len(retransmit) {
			deadline = start.Add(retransmit[next])
		}
		if d, ok := ctx.Deadline(); ok && (deadline.IsZero() || d.Before(deadline)) {
			deadline = d
		}
		conn.SetReadDeadline(deadline)
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if ctx.Err() != nil {
				break
			}
			return false, fmt.Errorf("%s: %w", peer, err)
		}
		err = accept(buf[:n], from)
		var s errSkip
		if errors.As(err, &s) {
			skipped++
			lastSkip = s.reason
			continue
		}
		return true, err
	}
	msg := fmt.Sprintf("no %s from %s within %v", what, peer, time.Since(start).Round(time.Millisecond))
	if skipped > 0 {
		msg += fmt.Sprintf(" (ignored %d unusable replies, the last: %s)", skipped, lastSkip)
	}
	return false, errors.New(msg)
}

// dial opens a UDP socket connected to gw; its local address is the
// client address PCP and UPnP need.
func dial(gw netip.AddrPort) (*net.UDPConn, error) {
	return net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(gw))
}

func localAddr(c *net.UDPConn) netip.Addr {
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap().WithZone("")
}

func sameAddr(a, b netip.Addr) bool { return a.Unmap().WithZone("") == b.Unmap().WithZone("") }
