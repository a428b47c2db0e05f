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
	if !c.allocated.has(to) {
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

// clientSet holds the UDP client addresses that have an allocation.
type clientSet struct {
	mu sync.Mutex
	m  map[netip.AddrPort]int
}

func (s *clientSet) add(a net.Addr, d int) {
	ap := natstun.AddrPortOf(a)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[netip.AddrPort]int{}
	}
	if s.m[ap] += d; s.m[ap] <= 0 {
		delete(s.m, ap)
	}
}

func (s *clientSet) has(ap netip.AddrPort) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[ap] > 0
}
