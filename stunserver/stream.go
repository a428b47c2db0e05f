package stunserver

import (
	"bufio"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/transport/v5"

	"github.com/natcheck/natcheck/internal/connlimit"
	natstun "github.com/natcheck/natcheck/stun"
)

// Defaults of the stream (TCP and TLS) limits.
const (
	defaultMaxConns          = 1024
	defaultMaxConnsPerSource = 32
	defaultIdleTimeout       = 30 * time.Second
	defaultMaxConnAge        = 5 * time.Minute
	defaultMaxMessageSize    = natstun.DefaultMaxMessageSize
	// streamWriteTimeout bounds the time a response may take to leave, so
	// that a client that does not read cannot hold a connection.
	streamWriteTimeout = 5 * time.Second
	// maxHandshakeTimeout caps the TLS handshake time.
	maxHandshakeTimeout = 10 * time.Second
)

// streamListener is one TCP or TLS listener.
type streamListener struct {
	ln    net.Listener
	addr  netip.AddrPort // bound address
	local int            // index of the RFC 5780 address, or -1
	tls   *tls.Config    // nil for plain TCP
}

// streams holds the state of the TCP and TLS side of a Server.
type streams struct {
	limits     *connlimit.Limiter
	idle       time.Duration
	maxAge     time.Duration
	maxMessage int
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// listenTCP binds a TCP listener on ap; port 0 picks a free port. The
// address may be unspecified (only TLSAddrs allow it).
func listenTCP(nw transport.Net, ap netip.AddrPort) (net.Listener, netip.AddrPort, error) {
	ip := ap.Addr().Unmap()
	network := "tcp4"
	if !ip.Is4() {
		network = "tcp6"
	}
	ln, err := nw.ListenTCP(network, net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, ap.Port())))
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	got := natstun.AddrPortOf(ln.Addr())
	if got.Port() == 0 {
		_ = ln.Close()
		return nil, netip.AddrPort{}, fmt.Errorf("unexpected local address %v", ln.Addr())
	}
	return ln, netip.AddrPortFrom(ip, got.Port()), nil
}

// accept accepts connections on l until it is closed. Connections over the
// limits are closed at once: accepting them frees the kernel's backlog.
func (s *Server) accept(l streamListener) {
	defer s.wg.Done()
	backoff := time.Millisecond
	for {
		c, err := l.ln.Accept()
		if s.closing.Load() || errors.Is(err, net.ErrClosed) {
			if c != nil {
				_ = c.Close()
			}
			return
		}
		if err != nil {
			// For example EMFILE: pause rather than spin, and never give
			// up: the listener must come back once the cause goes away.
			s.log.Debug("accept error", "listener", l.addr, "err", err)
			time.Sleep(backoff)
			backoff = min(2*backoff, maxReadBackoff)
			continue
		}
		backoff = time.Millisecond
		src := natstun.AddrPortOf(c.RemoteAddr())
		if !s.admit(c, src) {
			_ = c.Close()
			continue
		}
		s.tcpConns.Add(1)
		s.wg.Add(1)
		go s.serveConn(l, c, src)
	}
}

// admit registers c from src unless a limit is reached or the server is
// closing; it logs refusals at most once a second.
func (s *Server) admit(c net.Conn, src netip.AddrPort) bool {
	r, ok := s.st.limits.Admit(c, src.Addr())
	if ok || r.Closed {
		return ok
	}
	s.tcpRejected.Add(1)
	if r.Log {
		s.log.Warn("stream connections refused: limit reached", "source", r.Source,
			"open", r.Open, "from_source", r.FromSource, "refused", r.Refused)
	}
	return false
}

// release forgets c.
func (s *Server) release(c net.Conn) { s.st.limits.Release(c) }

// closeStreams closes every open connection; the listeners are closed by
// the caller. No connection is admitted afterwards.
func (s *Server) closeStreams() {
	if s.st != nil {
		s.st.limits.Close()
	}
}

// serveConn answers the STUN messages arriving back to back on c (RFC 8489
// section 6.2.2) until the peer closes it, a message is malformed or too
// long (framing cannot be trusted after that), no complete message arrives
// within the idle timeout, a response cannot be written in time, or the
// connection reaches its max age.
func (s *Server) serveConn(l streamListener, c net.Conn, src netip.AddrPort) {
	defer s.wg.Done()
	defer s.release(c)
	defer c.Close()
	st := s.st
	end := time.Now().Add(cmp.Or(st.maxAge, defaultMaxConnAge))

	if l.tls != nil {
		tc := tls.Server(c, l.tls)
		ctx, cancel := context.WithDeadline(context.Background(), minTime(time.Now().Add(min(st.idle, maxHandshakeTimeout)), end))
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			s.log.Debug("tls handshake failed", "source", src, "err", err)
			return
		}
		c = tc
	}
	origin := natstun.AddrPortOf(c.LocalAddr())
	if !origin.IsValid() {
		origin = l.addr
	}

	r := bufio.NewReaderSize(c, min(st.maxMessage, readBufferSize))
	buf := make([]byte, 0, min(st.maxMessage, readBufferSize))
	req, resp := new(stun.Message), stun.New()
	for {
		// The deadline covers a whole message: a client trickling bytes
		// cannot keep the connection longer than the idle timeout, nor
		// one sending messages past the max age.
		if time.Now().After(end) {
			s.log.Debug("connection closed at its max age", "source", src)
			return
		}
		if err := c.SetReadDeadline(minTime(time.Now().Add(st.idle), end)); err != nil {
			return
		}
		msg, err := natstun.ReadFrame(r, buf, st.maxMessage)
		if err != nil {
			// Malformed: the stream ended inside a message, or a whole
			// header came that is not STUN or too long (dropped without
			// a reply), or the rest of its message did not come. A
			// stream that ends or stalls before a header is complete
			// is not.
			if errors.Is(err, io.ErrUnexpectedEOF) || len(msg) >= natstun.HeaderSize {
				s.malformed.Add(1)
			}
			return
		}
		buf = msg[:0]
		out := s.h.handleStream(msg, src, l.local, origin, req, resp)
		if out.act == actDrop {
			s.malformed.Add(1)
			return
		}
		s.requests.Add(1)
		if err := c.SetWriteDeadline(time.Now().Add(streamWriteTimeout)); err != nil {
			return
		}
		if err := natstun.WriteMessage(c, resp.Raw); err != nil {
			s.sendErrors.Add(1)
			s.log.Debug("send error", "to", src, "err", err)
			return
		}
		if out.act == actError {
			s.errorResponses.Add(1)
		} else {
			s.responses.Add(1)
		}
	}
}
