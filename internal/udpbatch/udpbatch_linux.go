package udpbatch

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsghdr is struct mmsghdr: the kernel writes the datagram's length in n.
// Its size and padding follow the platform's alignment of unix.Msghdr.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// side is the state of one direction: the headers, one iovec and one
// socket address per message, all allocated once by New.
type side struct {
	hs    []mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6 // large enough for IPv4 too
	count int                     // messages of the current call
	done  int                     // result of the call
	errno syscall.Errno
	trap  uintptr               // SYS_RECVMMSG or SYS_SENDMMSG
	fn    func(fd uintptr) bool // call, bound once, so that a call does not allocate
}

// Conn is a UDP socket with batched reads and writes. One goroutine may
// read and another write at the same time; ReadBatch (and WriteBatch) must
// not be called by two goroutines at once.
type Conn struct {
	rc   syscall.RawConn
	ipv6 bool // the socket is AF_INET6
	r, w side
}

// New wraps c for batches of at most batch messages (1 to MaxBatch).
func New(c *net.UDPConn, batch int) (*Conn, error) {
	if batch < 1 || batch > MaxBatch {
		return nil, fmt.Errorf("udpbatch: batch %d not in 1..%d", batch, MaxBatch)
	}
	la, ok := c.LocalAddr().(*net.UDPAddr)
	if !ok {
		return nil, fmt.Errorf("udpbatch: local address %v is not UDP", c.LocalAddr())
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("udpbatch: %w", err)
	}
	b := &Conn{rc: rc}
	// Go binds udp sockets of an IPv4 address (including 0.0.0.0 when
	// asked for "udp4") as AF_INET; ask the kernel rather than guess.
	var domain int
	var serr error
	if err := rc.Control(func(fd uintptr) {
		domain, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
	}); err != nil {
		return nil, fmt.Errorf("udpbatch: %w", err)
	}
	if serr != nil {
		// Old kernels lack SO_DOMAIN: an IPv4 local address means AF_INET,
		// except for the wildcard of a dual-stack socket.
		b.ipv6 = la.IP.To4() == nil || la.IP.IsUnspecified()
	} else {
		b.ipv6 = domain == unix.AF_INET6
	}
	for _, s := range []*side{&b.r, &b.w} {
		s.hs = make([]mmsghdr, batch)
		s.iovs = make([]unix.Iovec, batch)
		s.names = make([]unix.RawSockaddrInet6, batch)
		for i := range s.hs {
			s.hs[i].hdr.Iov = &s.iovs[i]
			s.hs[i].hdr.SetIovlen(1)
		}
	}
	b.r.trap, b.w.trap = unix.SYS_RECVMMSG, unix.SYS_SENDMMSG
	b.r.fn, b.w.fn = b.r.call, b.w.call
	return b, nil
}

// The calls are made with RawSyscall6, without telling the runtime that
// the goroutine enters the kernel: with MSG_DONTWAIT (and Go's sockets
// being non-blocking anyway) they never sleep, and one call of a batch
// takes some tens of microseconds. Measured under bench/serve-vs-coturn.sh
// on 2 CPUs, this cost serve 10-20% less CPU per request than Syscall6 and
// answered more requests per second (bench/README.md); the likely reason
// is that with Syscall6 the runtime hands the P of a goroutine in a long
// call to another thread and wakes it. The price is that a stop-the-world
// pause may wait for one call to return.

// call makes the side's system call (recvmmsg or sendmmsg) once: false
// when the socket is not ready, so that RawConn waits and calls again.
func (s *side) call(fd uintptr) bool {
	for {
		n, _, e := unix.RawSyscall6(s.trap, fd, uintptr(unsafe.Pointer(&s.hs[0])), uintptr(s.count), unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false // wait until the socket is ready
		}
		s.done, s.errno = int(n), e
		return true
	}
}

// ReadBatch waits for at least one datagram and reads up to len(ms) (at
// most the batch of New) of those queued. It returns how many it read;
// ms[i].N, Trunc and Addr describe each. Every ms[i].Buf must be non-empty.
// It honours the read deadline of the socket.
func (c *Conn) ReadBatch(ms []Message) (int, error) {
	s := &c.r
	s.count = min(len(ms), len(s.hs))
	if s.count == 0 {
		return 0, nil
	}
	for i := range s.count {
		if len(ms[i].Buf) == 0 {
			return 0, errors.New("udpbatch: empty read buffer")
		}
		s.iovs[i].Base = &ms[i].Buf[0]
		s.iovs[i].SetLen(len(ms[i].Buf))
		h := &s.hs[i].hdr
		h.Name = (*byte)(unsafe.Pointer(&s.names[i]))
		h.Namelen = unix.SizeofSockaddrInet6
		h.Flags = 0
	}
	s.done, s.errno = 0, 0
	if err := c.rc.Read(s.fn); err != nil {
		return 0, err
	}
	if s.errno != 0 {
		return 0, &net.OpError{Op: "recvmmsg", Net: "udp", Err: s.errno}
	}
	for i := range s.done {
		h := &s.hs[i]
		ms[i].N = int(h.n)
		ms[i].Trunc = h.hdr.Flags&unix.MSG_TRUNC != 0
		ms[i].Addr = decode(&s.names[i], h.hdr.Namelen)
	}
	return s.done, nil
}

// WriteBatch sends ms in order, as many as the socket takes, waiting when
// its buffer is full. It returns how many it sent; when that is less than
// len(ms) (or the batch of New), err is why ms[n] could not be sent, and
// the caller may go on with ms[n+1:]. It honours the write deadline.
func (c *Conn) WriteBatch(ms []Message) (int, error) {
	s := &c.w
	sent := 0
	for sent < len(ms) {
		s.count = min(len(ms)-sent, len(s.hs))
		for i := range s.count {
			m := &ms[sent+i]
			if len(m.Buf) > 0 {
				s.iovs[i].Base = &m.Buf[0]
			} else {
				s.iovs[i].Base = nil
			}
			s.iovs[i].SetLen(len(m.Buf))
			h := &s.hs[i].hdr
			h.Name, h.Namelen = nil, 0
			if m.Addr.IsValid() {
				n, err := encode(&s.names[i], m.Addr, c.ipv6)
				if err != nil {
					if i == 0 {
						return sent, &net.OpError{Op: "sendmmsg", Net: "udp", Err: err}
					}
					s.count = i // send those before it; the next round reports it
					break
				}
				h.Name, h.Namelen = (*byte)(unsafe.Pointer(&s.names[i])), n
			}
		}
		s.done, s.errno = 0, 0
		if err := c.rc.Write(s.fn); err != nil {
			return sent, err
		}
		if s.errno != 0 {
			return sent, &net.OpError{Op: "sendmmsg", Net: "udp", Err: s.errno}
		}
		if s.done <= 0 { // not expected: the kernel sends at least one or fails
			return sent, &net.OpError{Op: "sendmmsg", Net: "udp", Err: syscall.EIO}
		}
		sent += s.done
	}
	return sent, nil
}

// decode returns the address the kernel wrote into sa (n bytes).
func decode(sa *unix.RawSockaddrInet6, n uint32) netip.AddrPort {
	switch sa.Family {
	case unix.AF_INET:
		if n < unix.SizeofSockaddrInet4 {
			return netip.AddrPort{}
		}
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		port := netPort(&sa4.Port)
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), port)
	case unix.AF_INET6:
		if n < unix.SizeofSockaddrInet6 {
			return netip.AddrPort{}
		}
		port := netPort(&sa.Port)
		ip := netip.AddrFrom16(sa.Addr)
		if sa.Scope_id != 0 {
			// Rare (link-local sources): a numeric zone keeps the scope
			// for the reply; this allocates a string.
			ip = ip.WithZone(strconv.FormatUint(uint64(sa.Scope_id), 10))
		}
		return netip.AddrPortFrom(ip, port)
	}
	return netip.AddrPort{}
}

// encode writes ap into sa for a socket of the given family and returns
// the length of the address.
func encode(sa *unix.RawSockaddrInet6, ap netip.AddrPort, ipv6 bool) (uint32, error) {
	ip := ap.Addr()
	port := ap.Port()
	if !ipv6 {
		ip = ip.Unmap()
		if !ip.Is4() {
			return 0, fmt.Errorf("IPv6 destination %v on an IPv4 socket", ip)
		}
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		*sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: ip.As4()}
		setNetPort(&sa4.Port, port)
		return unix.SizeofSockaddrInet4, nil
	}
	*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: ip.As16()}
	setNetPort(&sa.Port, port)
	if z := ip.Zone(); z != "" {
		id, err := zoneIndex(z)
		if err != nil {
			return 0, err
		}
		sa.Scope_id = id
	}
	return unix.SizeofSockaddrInet6, nil
}

// zoneIndex returns the interface index of an IPv6 zone: a number, or an
// interface name.
func zoneIndex(z string) (uint32, error) {
	if n, err := strconv.ParseUint(z, 10, 32); err == nil {
		return uint32(n), nil
	}
	ifi, err := net.InterfaceByName(z)
	if err != nil {
		return 0, err
	}
	return uint32(ifi.Index), nil
}

// netPort reads a port stored in network byte order.
func netPort(p *uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(p))
	return uint16(b[0])<<8 | uint16(b[1])
}

// setNetPort stores a port in network byte order.
func setNetPort(p *uint16, port uint16) {
	b := (*[2]byte)(unsafe.Pointer(p))
	b[0], b[1] = byte(port>>8), byte(port)
}
