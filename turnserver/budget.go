package turnserver

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/natcheck/natcheck/internal/udpbudget"
	natstun "github.com/natcheck/natcheck/stun"
)

// budgetConn is a UDP listener whose sends to clients without an
// allocation are paid from a byte budget (udpbudget), as natcheck serve's
// STUN responses are: a forged source can make the server answer it with
// Binding responses and 401s carrying REALM and NONCE (3.4 times the
// request, more with a long realm). Sends to a client that holds an
// allocation (it proved its address by authenticating) are not charged:
// they carry its relayed data.
//
// pion's read loop handles a datagram before it reads the next, so the
// response to a request is written between that request's ReadFrom and
// the next: the last request's source and size are what a response to
// that source is charged against.
type budgetConn struct {
	net.PacketConn
	budget    *udpbudget.Budget
	allocated *clientSet
	drops     *atomic.Uint64

	local netip.AddrPort // the listener's address, as pion reports it

	mu      sync.Mutex
	lastSrc netip.AddrPort
	lastLen int
}

func (c *budgetConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, addr, err := c.PacketConn.ReadFrom(b)
	if err == nil {
		c.mu.Lock()
		c.lastSrc, c.lastLen = natstun.AddrPortOf(addr), n
		c.mu.Unlock()
	}
	return n, addr, err
}

func (c *budgetConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	to := natstun.AddrPortOf(addr)
	if !relayedData(b) || !c.allocated.has(to, c.local) {
		req := 0
		c.mu.Lock()
		if to == c.lastSrc {
			req, c.lastLen = c.lastLen, 0 // one request pays for one response
		}
		c.mu.Unlock()
		if !c.budget.Allow(to.Addr(), req, len(b)) {
			c.drops.Add(1)
			return len(b), nil // dropped, as a lossy network would
		}
	}
	return c.PacketConn.WriteTo(b, addr)
}

// relayedData reports whether b is relayed data to a client: a
// ChannelData message (first two bits 01, RFC 8656 section 12.4) or a
// Data indication (RFC 8656 section 11.4: method 0x007, class indication).
func relayedData(b []byte) bool {
	if len(b) < 4 {
		return false
	}
	if b[0]&0xC0 == 0x40 {
		return true
	}
	return len(b) >= 20 && b[0] == 0x00 && b[1] == 0x17 // Data indication, 0x0017
}

// clientSet holds the UDP clients that have an allocation, each with the
// listener address it came to.
type clientSet struct {
	mu sync.Mutex
	m  map[[2]netip.AddrPort]int
}

func (s *clientSet) add(client, listener net.Addr, d int) {
	k := [2]netip.AddrPort{natstun.AddrPortOf(client), natstun.AddrPortOf(listener)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[[2]netip.AddrPort]int{}
	}
	if s.m[k] += d; s.m[k] <= 0 {
		delete(s.m, k)
	}
}

func (s *clientSet) has(client, listener netip.AddrPort) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[[2]netip.AddrPort{client, listener}] > 0
}
