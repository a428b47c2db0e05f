// Package stunserver implements an RFC 5780 STUN server that answers Binding
// requests on two addresses and two ports, over UDP, TCP and TLS, and
// honours CHANGE-REQUEST and RESPONSE-PORT.
package stunserver

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"

	"github.com/natcheck/natcheck/internal/connlimit"
	"github.com/natcheck/natcheck/internal/udpbudget"
	natstun "github.com/natcheck/natcheck/stun"
)

// Limits of the server.
const (
	// maxBindAttempts bounds the attempts to find free ports p and a such
	// that all four sockets P:p, P:a, A:p and A:a can be bound.
	maxBindAttempts = 32
	// readBufferSize is the largest request read; longer ones are
	// truncated and then dropped as malformed.
	readBufferSize = natstun.DefaultMaxMessageSize
	// maxReadErrors is how many consecutive read errors, other than the
	// socket being closed, stop a socket's reader.
	maxReadErrors = 100
	// maxReadBackoff caps the pause after a read error.
	maxReadBackoff = 100 * time.Millisecond
	// socketBufferSize is the receive and send buffer asked for each UDP
	// socket (SO_RCVBUF, SO_SNDBUF).
	socketBufferSize = 4 << 20
	// maxSoftwareLen is the limit of SOFTWARE, RFC 8489 section 14.14.
	maxSoftwareLen = 763
)

// Stats are counters of a Server since Start.
type Stats struct {
	// Requests counts Binding requests accepted for processing, including
	// those answered with an error.
	Requests uint64
	// Responses counts success responses sent.
	Responses uint64
	// ErrorResponses counts error responses sent (400 and 420).
	ErrorResponses uint64
	// Malformed counts packets dropped without a reply: not STUN, not a
	// request, not Binding, bad framing or a wrong FINGERPRINT.
	Malformed uint64
	// RateLimited counts UDP responses dropped by the byte budgets
	// (Config.SourceBudget and Config.GlobalBudget); it is the sum of
	// SourceBudgetDrops and GlobalBudgetDrops.
	RateLimited uint64
	// SourceBudgetDrops counts responses dropped because the source's
	// budget could not pay them.
	SourceBudgetDrops uint64
	// GlobalBudgetDrops counts responses dropped because the global budget
	// could not pay them.
	GlobalBudgetDrops uint64
	// SendErrors counts responses that the network refused to send.
	SendErrors uint64
	// StreamConns counts TCP and TLS connections accepted for serving.
	StreamConns uint64
	// StreamRefused counts TCP and TLS connections closed at once because
	// MaxConns or MaxConnsPerSource was reached.
	StreamRefused uint64
}

// Server is a running STUN server. Its methods are safe for concurrent use.
type Server struct {
	h      handler
	conns  []transport.UDPConn // indexed like handler.addrs
	log    *slog.Logger
	budget *udpbudget.Budget // nil when unlimited

	tcp []streamListener // indexed like conns, when Config.TCP is set
	tls []streamListener // one per Config.TLSAddrs
	st  *streams

	closing   atomic.Bool
	closeOnce sync.Once
	closeErr  error
	stopCtx   func() bool
	wg        sync.WaitGroup

	requests, responses, errorResponses atomic.Uint64
	malformed, sendErrors               atomic.Uint64
	sourceDrops, globalDrops            atomic.Uint64 // this server's, of a budget maybe shared
	tcpConns, tcpRejected               atomic.Uint64
}

// Start binds the server's sockets and starts answering requests on them.
// The server runs until Close is called or ctx is done.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("stunserver: start: %w", err)
	}
	nw := cfg.Net
	if nw == nil {
		std, err := stdnet.NewNet()
		if err != nil {
			return nil, fmt.Errorf("stunserver: open host network: %w", err)
		}
		nw = std
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}

	s := &Server{
		log: logger,
		h: handler{
			ignoreChange:   cfg.IgnoreChangeRequest,
			advertiseOther: cfg.AdvertiseOther,
			omitMapped:     cfg.OmitMappedAddress,
			mappedOverride: cfg.MappedAddressOverride,
		},
	}
	if cfg.Software != "" {
		s.h.software = []byte(cfg.Software)
	}
	switch {
	case cfg.Unlimited || cfg.ReflectionRate < 0:
	case cfg.Budget != nil:
		s.budget = cfg.Budget
	default:
		s.budget = udpbudget.New(cfg.Trust, cmp.Or(cfg.SourceBudget, udpbudget.DefaultSource),
			cmp.Or(cfg.GlobalBudget, udpbudget.DefaultGlobal), nil, logger)
	}

	s.st = &streams{
		limits:     connlimit.New(cmp.Or(cfg.MaxConns, defaultMaxConns), cmp.Or(cfg.MaxConnsPerSource, defaultMaxConnsPerSource)),
		idle:       cmp.Or(cfg.IdleTimeout, defaultIdleTimeout),
		maxAge:     cfg.MaxConnAge,
		maxMessage: cmp.Or(cfg.MaxMessageSize, defaultMaxMessageSize),
	}

	s.h.dual = cfg.Alternate.IsValid()
	if err := s.bind(ctx, nw, cfg); err != nil {
		return nil, err
	}
	for _, ap := range cfg.TLSAddrs {
		ln, addr, err := listenTCP(nw, ap)
		if err != nil {
			s.closeListeners()
			return nil, fmt.Errorf("stunserver: listen for tls on %v: %w", ap, err)
		}
		s.tls = append(s.tls, streamListener{ln: ln, addr: addr, local: -1, tls: cfg.TLSConfig})
	}

	for i, c := range s.conns {
		s.wg.Add(1)
		go s.serve(i, c)
	}
	for _, l := range append(slices.Clip(s.tcp), s.tls...) {
		s.wg.Add(1)
		go s.accept(l)
	}
	s.stopCtx = context.AfterFunc(ctx, func() { _ = s.close() })
	logger.Debug("stun server started", "primary", s.Primary(), "alternate", s.Alternate(),
		"tcp", s.TCPAddrs(), "tls", s.TLSAddrs())
	return s, nil
}

// bind binds the UDP sockets and, with cfg.TCP, the TCP listeners on the
// same addresses. A port given as 0 is chosen by the system for the first
// socket on it; when the other sockets cannot have it, bind starts again,
// at most maxBindAttempts times.
func (s *Server) bind(ctx context.Context, nw transport.Net, cfg Config) error {
	retryable := cfg.Primary.Port() == 0 || (s.h.dual && cfg.Alternate.Port() == 0)
	var lastErr error
	for range maxBindAttempts {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("stunserver: listen: %w", err)
		}
		err := s.tryBind(nw, cfg)
		if err == nil {
			return nil
		}
		lastErr = err
		var fatal fatalBindError
		if !retryable || errors.As(err, &fatal) {
			break
		}
	}
	if !s.h.dual {
		return fmt.Errorf("stunserver: listen on primary address: %w", lastErr)
	}
	return fmt.Errorf("stunserver: listen on four sockets: %w", lastErr)
}

// tryBind makes one attempt of bind; on failure it leaves nothing bound.
func (s *Server) tryBind(nw transport.Net, cfg Config) error {
	var (
		conns []transport.UDPConn
		addrs [4]netip.AddrPort
		err   error
	)
	if !s.h.dual {
		var c transport.UDPConn
		if c, addrs[sockPP], err = listen(nw, cfg.Primary); err != nil {
			if cfg.Primary.Port() != 0 {
				err = fatalBindError{err}
			}
			return err
		}
		conns = []transport.UDPConn{c}
	} else if conns, err = tryListenFour(nw, cfg.Primary, cfg.Alternate, &addrs); err != nil {
		return err
	}
	var lns []streamListener
	if cfg.TCP {
		for i := range conns {
			ln, _, err := listenTCP(nw, addrs[i])
			if err != nil {
				for _, c := range conns {
					_ = c.Close()
				}
				for _, l := range lns {
					_ = l.ln.Close()
				}
				if errors.Is(err, transport.ErrNotSupported) {
					err = fatalBindError{err}
				}
				return fmt.Errorf("tcp %v: %w", addrs[i], err)
			}
			lns = append(lns, streamListener{ln: ln, addr: addrs[i], local: i})
		}
	}
	s.conns, s.h.addrs, s.tcp = conns, addrs, lns
	return nil
}

// closeListeners closes the sockets and listeners bound so far; it is used
// when Start fails half way.
func (s *Server) closeListeners() {
	for _, c := range s.conns {
		_ = c.Close()
	}
	for _, l := range append(slices.Clip(s.tcp), s.tls...) {
		_ = l.ln.Close()
	}
}

// listen binds one UDP socket to ap and returns it with its actual address.
func listen(nw transport.Net, ap netip.AddrPort) (transport.UDPConn, netip.AddrPort, error) {
	ip := ap.Addr().Unmap()
	network := "udp4"
	if !ip.Is4() {
		network = "udp6"
	}
	c, err := nw.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, ap.Port())))
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	ua, ok := c.LocalAddr().(*net.UDPAddr)
	if !ok || ua.Port <= 0 || ua.Port > math.MaxUint16 {
		_ = c.Close()
		return nil, netip.AddrPort{}, fmt.Errorf("unexpected local address %v", c.LocalAddr())
	}
	if uc, ok := c.(*net.UDPConn); ok {
		// Room for bursts: with the default (about 200 KiB, some 250
		// small datagrams) a loaded server drops requests that a moment
		// later it would have had time for. The kernel caps both at
		// net.core.rmem_max and wmem_max; coturn asks for the same.
		_ = uc.SetReadBuffer(socketBufferSize)
		_ = uc.SetWriteBuffer(socketBufferSize)
	}
	return c, netip.AddrPortFrom(ip, uint16(ua.Port)), nil
}

// fatalBindError marks a bind failure that choosing other ports cannot fix.
type fatalBindError struct{ err error }

func (e fatalBindError) Error() string { return e.err.Error() }
func (e fatalBindError) Unwrap() error { return e.err }

// tryListenFour binds P:p, P:a, A:p and A:a once. A port given as 0 is
// chosen by binding P:0 (or A:0) first and then trying the same port on the
// other address; bind starts again on a conflict.
func tryListenFour(nw transport.Net, primary, alternate netip.AddrPort, addrs *[4]netip.AddrPort) (conns []transport.UDPConn, err error) {
	conns = make([]transport.UDPConn, 4)
	defer func() {
		if err != nil {
			for _, c := range conns {
				if c != nil {
					_ = c.Close()
				}
			}
		}
	}()
	var got [4]netip.AddrPort
	if conns[sockPP], got[sockPP], err = listen(nw, primary); err != nil {
		// Nothing else is bound yet: another attempt cannot do better
		// unless the port was chosen by the system.
		if primary.Port() != 0 {
			err = fatalBindError{err}
		}
		return conns, fmt.Errorf("%v: %w", primary, err)
	}
	p := got[sockPP].Port()
	ap := netip.AddrPortFrom(alternate.Addr(), p)
	if conns[sockAP], got[sockAP], err = listen(nw, ap); err != nil {
		return conns, fmt.Errorf("%v: %w", ap, err)
	}
	if conns[sockAA], got[sockAA], err = listen(nw, alternate); err != nil {
		return conns, fmt.Errorf("%v: %w", alternate, err)
	}
	pa := netip.AddrPortFrom(primary.Addr(), got[sockAA].Port())
	if conns[sockPA], got[sockPA], err = listen(nw, pa); err != nil {
		return conns, fmt.Errorf("%v: %w", pa, err)
	}
	*addrs = got
	return conns, nil
}

// Close stops the server, closes its sockets and waits for its goroutines.
// It is idempotent; later calls return nil.
func (s *Server) Close() error {
	s.stopCtx() // set before Start returned
	return s.close()
}

// close is Close without releasing the context: it also runs when the
// context of Start is done.
func (s *Server) close() error {
	first := false
	s.closeOnce.Do(func() {
		first = true
		s.closing.Store(true)
		var errs []error
		for _, c := range s.conns {
			if err := c.Close(); err != nil {
				errs = append(errs, err)
			}
		}
		for _, l := range append(slices.Clip(s.tcp), s.tls...) {
			if err := l.ln.Close(); err != nil {
				errs = append(errs, err)
			}
		}
		s.closeStreams()
		if err := errors.Join(errs...); err != nil {
			s.closeErr = fmt.Errorf("stunserver: close: %w", err)
		}
	})
	s.wg.Wait()
	if !first {
		return nil
	}
	return s.closeErr
}

// Primary returns the bound primary address P:p.
func (s *Server) Primary() netip.AddrPort { return s.h.addrs[sockPP] }

// Alternate returns the bound alternate address A:a, or the zero value in
// single-address mode.
func (s *Server) Alternate() netip.AddrPort {
	if !s.h.dual {
		return netip.AddrPort{}
	}
	return s.h.addrs[sockAA]
}

// Addrs returns the addresses of the server's sockets: P:p alone in
// single-address mode, else P:p, P:a, A:p and A:a in this order.
func (s *Server) Addrs() []netip.AddrPort {
	if !s.h.dual {
		return []netip.AddrPort{s.h.addrs[sockPP]}
	}
	return append([]netip.AddrPort(nil), s.h.addrs[:]...)
}

// TCPAddrs returns the addresses of the server's TCP listeners, in the
// order of Addrs, or nil without Config.TCP.
func (s *Server) TCPAddrs() []netip.AddrPort {
	var out []netip.AddrPort
	for _, l := range s.tcp {
		out = append(out, l.addr)
	}
	return out
}

// TLSAddrs returns the bound addresses of the server's TLS listeners, in
// the order of Config.TLSAddrs, or nil.
func (s *Server) TLSAddrs() []netip.AddrPort {
	var out []netip.AddrPort
	for _, l := range s.tls {
		out = append(out, l.addr)
	}
	return out
}

// Stats returns a snapshot of the server's counters.
func (s *Server) Stats() Stats {
	src, global := s.sourceDrops.Load(), s.globalDrops.Load()
	return Stats{
		SourceBudgetDrops: src,
		GlobalBudgetDrops: global,
		Requests:          s.requests.Load(),
		Responses:         s.responses.Load(),
		ErrorResponses:    s.errorResponses.Load(),
		Malformed:         s.malformed.Load(),
		RateLimited:       src + global,
		SendErrors:        s.sendErrors.Load(),
		StreamConns:       s.tcpConns.Load(),
		StreamRefused:     s.tcpRejected.Load(),
	}
}
