package stunserver

import (
	"errors"
	"net"
	"net/netip"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/transport/v5"

	"github.com/natcheck/natcheck/internal/udpbatch"
	"github.com/natcheck/natcheck/internal/udpbudget"
	natstun "github.com/natcheck/natcheck/stun"
)

// batchSize is how many datagrams a reader takes from its socket in one
// system call, and how many responses it sends in one, on Linux.
const batchSize = 32

// addrPortConn is implemented by *net.UDPConn: it reads and writes without
// allocating a net.UDPAddr per packet.
type addrPortConn interface {
	ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error)
	WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error)
}

// serve reads and answers the requests arriving on conn, a socket bound to
// the address of socket i, until it is closed. A real socket is read and
// written in batches where the system allows (recvmmsg/sendmmsg); others
// (vnet) one packet at a time. It sets no read deadline: closing the socket
// unblocks the read, with real sockets and with vnet alike.
func (s *Server) serve(i int, conn transport.UDPConn) {
	defer s.wg.Done()
	if uc, ok := conn.(*net.UDPConn); ok {
		if b, err := udpbatch.New(uc, batchSize); err == nil {
			s.serveBatch(i, b)
			return
		}
	}
	fast, _ := conn.(addrPortConn)
	buf := make([]byte, readBufferSize)
	req, resp := new(stun.Message), stun.New()
	var rd readErrors
	for !rd.tooMany() {
		var (
			n   int
			src netip.AddrPort
			err error
		)
		if fast != nil {
			n, src, err = fast.ReadFromUDPAddrPort(buf)
		} else {
			var addr net.Addr
			n, addr, err = conn.ReadFrom(buf)
			src = natstun.AddrPortOf(addr)
		}
		if s.closing.Load() || errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil && n <= 0 {
			s.readError(i, err, &rd)
			continue
		}
		rd.reset()
		if err != nil { // e.g. vnet's io.ErrShortBuffer: a truncated packet
			s.malformed.Add(1)
			continue
		}
		s.answer(buf[:n], src, i, req, resp, nil)
	}
	s.log.Error("socket reader stopped after repeated errors", "socket", s.h.addrs[i])
}

// serveBatch is serve for a socket read and written in batches: it reads
// up to batchSize requests, answers them, and sends the responses that
// leave from this socket in one call.
func (s *Server) serveBatch(i int, b *udpbatch.Conn) {
	in := make([]udpbatch.Message, batchSize)
	bufs := make([]byte, batchSize*readBufferSize)
	for k := range in {
		in[k].Buf = bufs[k*readBufferSize : (k+1)*readBufferSize : (k+1)*readBufferSize]
	}
	out := newOutbox(b, i)
	req, resp := new(stun.Message), stun.New()
	var rd readErrors
	for !rd.tooMany() {
		n, err := b.ReadBatch(in)
		if s.closing.Load() || errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			s.readError(i, err, &rd)
			continue
		}
		rd.reset()
		for _, m := range in[:n] {
			if m.Trunc { // longer than any request served
				s.malformed.Add(1)
				continue
			}
			s.answer(m.Buf[:m.N], m.Addr, i, req, resp, out)
		}
		out.flush(s)
	}
	s.log.Error("socket reader stopped after repeated errors", "socket", s.h.addrs[i])
}

// readErrors counts consecutive read errors and paces the retries.
type readErrors struct {
	n       int
	backoff time.Duration
}

func (r *readErrors) tooMany() bool { return r.n >= maxReadErrors }
func (r *readErrors) reset()        { r.n, r.backoff = 0, 0 }

// readError logs a read error on socket i and pauses before the next read.
func (s *Server) readError(i int, err error, r *readErrors) {
	r.n++
	r.backoff = min(max(2*r.backoff, time.Millisecond), maxReadBackoff)
	s.log.Debug("read error", "socket", s.h.addrs[i], "err", err)
	time.Sleep(r.backoff)
}

// outbox collects the responses a batch reader sends from its own socket,
// to send them in one call.
type outbox struct {
	b     *udpbatch.Conn
	local int // index of the socket the outbox sends from
	ms    []udpbatch.Message
	acts  []action
	n     int
}

func newOutbox(b *udpbatch.Conn, local int) *outbox {
	o := &outbox{b: b, local: local, ms: make([]udpbatch.Message, batchSize), acts: make([]action, batchSize)}
	for k := range o.ms {
		o.ms[k].Buf = make([]byte, 0, 256) // grows, once, for larger responses
	}
	return o
}

// add queues a copy of pkt for to; it sends the queue first when full.
func (o *outbox) add(s *Server, pkt []byte, to netip.AddrPort, act action) {
	if o.n == len(o.ms) {
		o.flush(s)
	}
	m := &o.ms[o.n]
	m.Buf = append(m.Buf[:0], pkt...)
	m.Addr = to
	o.acts[o.n] = act
	o.n++
}

// flush sends the queued responses and counts them.
func (o *outbox) flush(s *Server) {
	k := 0
	for k < o.n {
		sent, err := o.b.WriteBatch(o.ms[k:o.n])
		for _, act := range o.acts[k : k+sent] {
			s.sent(act, o.local, netip.AddrPort{}, nil)
		}
		k += sent
		if err != nil {
			if s.closing.Load() || errors.Is(err, net.ErrClosed) {
				break
			}
			s.sent(o.acts[k], o.local, o.ms[k].Addr, err)
			k++
		}
	}
	o.n = 0
}

// answer handles one packet and sends the response, if any: at once, or,
// when out is not nil and the response leaves from out's socket, with the
// next flush of out.
func (s *Server) answer(pkt []byte, src netip.AddrPort, local int, req, resp *stun.Message, out *outbox) {
	r := s.h.handle(pkt, src, local, req, resp)
	if r.act == actDrop {
		s.malformed.Add(1)
		return
	}
	s.requests.Add(1)
	if s.budget != nil {
		switch s.budget.Charge(r.to.Addr(), len(pkt), len(resp.Raw)) {
		case udpbudget.SourceDrop:
			s.sourceDrops.Add(1)
			return // logged by the budget
		case udpbudget.GlobalDrop:
			s.globalDrops.Add(1)
			return
		}
	}
	if r.act == actError {
		s.log.Debug("error response", "to", r.to, "code", r.code)
	}
	if out != nil && r.from == out.local {
		out.add(s, resp.Raw, r.to, r.act)
		return
	}
	var err error
	if fast, ok := s.conns[r.from].(addrPortConn); ok {
		_, err = fast.WriteToUDPAddrPort(resp.Raw, r.to)
	} else {
		_, err = s.conns[r.from].WriteTo(resp.Raw, net.UDPAddrFromAddrPort(r.to))
	}
	s.sent(r.act, r.from, r.to, err)
}

// sent counts a response sent from socket from to to, or that could not be
// sent (err).
func (s *Server) sent(act action, from int, to netip.AddrPort, err error) {
	if err != nil {
		s.sendErrors.Add(1)
		s.log.Debug("send error", "from", s.h.addrs[from], "to", to, "err", err)
		return
	}
	if act == actError {
		s.errorResponses.Add(1)
		return
	}
	s.responses.Add(1)
}
