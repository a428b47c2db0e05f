package stunserver

import (
	"errors"
	"net"
	"net/netip"
	"time"

	"github.com/pion/stun/v3"

	"github.com/natcheck/natcheck/internal/udpbudget"
	natstun "github.com/natcheck/natcheck/stun"
)

// addrPortConn is implemented by *net.UDPConn: it reads and writes without
// allocating a net.UDPAddr per packet.
type addrPortConn interface {
	ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error)
	WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error)
}

// serve reads and answers the requests arriving on socket i until the
// socket is closed. It sets no read deadline: closing the socket unblocks
// the read, with real sockets and with vnet alike.
func (s *Server) serve(i int) {
	defer s.wg.Done()
	conn := s.conns[i]
	fast, _ := conn.(addrPortConn)
	buf := make([]byte, readBufferSize)
	req, resp := new(stun.Message), stun.New()
	errs := 0
	backoff := time.Millisecond
	for errs < maxReadErrors {
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
			errs++
			s.log.Debug("read error", "socket", s.h.addrs[i], "err", err)
			time.Sleep(backoff)
			backoff = min(2*backoff, maxReadBackoff)
			continue
		}
		errs, backoff = 0, time.Millisecond
		if err != nil { // e.g. vnet's io.ErrShortBuffer: a truncated packet
			s.malformed.Add(1)
			continue
		}
		s.answer(buf[:n], src, i, req, resp)
	}
	s.log.Error("socket reader stopped after repeated errors", "socket", s.h.addrs[i])
}

// answer handles one packet and sends the response, if any.
func (s *Server) answer(pkt []byte, src netip.AddrPort, local int, req, resp *stun.Message) {
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
	var err error
	if fast, ok := s.conns[r.from].(addrPortConn); ok {
		_, err = fast.WriteToUDPAddrPort(resp.Raw, r.to)
	} else {
		_, err = s.conns[r.from].WriteTo(resp.Raw, net.UDPAddrFromAddrPort(r.to))
	}
	if err != nil {
		s.sendErrors.Add(1)
		s.log.Debug("send error", "from", s.h.addrs[r.from], "to", r.to, "err", err)
		return
	}
	if r.act == actError {
		s.errorResponses.Add(1)
		s.log.Debug("error response", "to", r.to, "code", r.code)
		return
	}
	s.responses.Add(1)
}
