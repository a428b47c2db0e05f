// Package connlimit bounds the stream (TCP and TLS) connections a server
// holds open: in all, and from one source, so that one client cannot take
// every connection, and it closes connections that stay silent or that
// have been open too long, however busy.
//
// A Limiter does the counting for a server with its own accept loop; a
// Listener wraps a net.Listener with a Limiter and idle timeouts for a
// server that takes a net.Listener, such as pion/turn's.
package connlimit

import (
	"cmp"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	natstun "github.com/natcheck/natcheck/stun"
)

// logInterval is the least time between two refusals a Limiter asks its
// caller to log.
const logInterval = time.Second

// Accept's pause after an accept error doubles from minAcceptBackoff up to
// maxAcceptBackoff.
const (
	minAcceptBackoff = 10 * time.Millisecond
	maxAcceptBackoff = time.Second
)

// SourceKey is what per-source limits count by: an IPv4 address, or the
// /64 an IPv6 address is in, since one host commonly holds a whole /64 and
// could otherwise take every slot with addresses of its own.
func SourceKey(ip netip.Addr) netip.Addr {
	ip = ip.Unmap()
	if ip.Is4() {
		return ip
	}
	p, err := ip.WithZone("").Prefix(64)
	if err != nil {
		return ip
	}
	return p.Addr()
}

// Limiter counts the connections a server holds open, in all and per
// source (SourceKey), and closes them all on Close. Its methods are safe
// for concurrent use.
type Limiter struct {
	max, perSource int
	now            func() time.Time

	mu      sync.Mutex
	closed  bool
	conns   map[io.Closer]netip.Addr // to their source key
	bySrc   map[netip.Addr]int
	lastLog time.Time
	refused uint64 // since the last refusal with Log set
}

// New returns a Limiter that admits at most maxConns connections at once,
// and at most perSource of them from one source. Both must be positive.
func New(maxConns, perSource int) *Limiter {
	return &Limiter{
		max: maxConns, perSource: perSource, now: time.Now,
		conns: make(map[io.Closer]netip.Addr), bySrc: make(map[netip.Addr]int),
	}
}

// Refusal describes a connection that Admit refused.
type Refusal struct {
	// Closed means the Limiter was closed; no other field is set.
	Closed bool
	// Source is the SourceKey of the connection's address.
	Source netip.Addr
	// Open is the number of connections open, and FromSource the number
	// of them from Source.
	Open, FromSource int
	// Log is set on the first refusal and then at most once a second, so
	// that a caller that logs only these writes one line a second however
	// many connections it refuses. Refused is then the number of refusals
	// since the last one with Log set, this one included.
	Log     bool
	Refused uint64
}

// Admit registers c, whose peer is at src, unless a limit is reached or the
// Limiter is closed. The caller closes a refused connection, and calls
// Release when it closes an admitted one.
func (l *Limiter) Admit(c io.Closer, src netip.Addr) (Refusal, bool) {
	key := SourceKey(src)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return Refusal{Closed: true}, false
	}
	if len(l.conns) >= l.max || l.bySrc[key] >= l.perSource {
		r := Refusal{Source: key, Open: len(l.conns), FromSource: l.bySrc[key]}
		l.refused++
		if now := l.now(); now.Sub(l.lastLog) >= logInterval {
			r.Log, r.Refused = true, l.refused
			l.lastLog, l.refused = now, 0
		}
		return r, false
	}
	l.conns[c] = key
	l.bySrc[key]++
	return Refusal{}, true
}

// Release forgets c; it does nothing if c is not admitted.
func (l *Limiter) Release(c io.Closer) {
	l.mu.Lock()
	defer l.mu.Unlock()
	key, ok := l.conns[c]
	if !ok {
		return
	}
	delete(l.conns, c)
	if l.bySrc[key] <= 1 {
		delete(l.bySrc, key)
	} else {
		l.bySrc[key]--
	}
}

// Open returns the number of connections admitted and not released.
func (l *Limiter) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

// Close closes every admitted connection and refuses all later ones. The
// connections' Close methods may call Release.
func (l *Limiter) Close() {
	l.mu.Lock()
	l.closed = true
	conns := make([]io.Closer, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

// ListenerConfig configures a Listener.
type ListenerConfig struct {
	// MaxConns and MaxConnsPerSource are the limits of the Listener's
	// Limiter (New); both must be positive.
	MaxConns, MaxConnsPerSource int
	// FirstTimeout closes a connection whose peer sends nothing for this
	// long after it is accepted; 0 means no limit.
	FirstTimeout time.Duration
	// IdleTimeout closes a connection whose peer sends nothing for this
	// long after its last bytes; 0 means no limit.
	IdleTimeout time.Duration
	// MaxAge closes a connection this long after it is accepted, however
	// much its peer sends, unless Hold holds it then; 0 means no limit.
	// Without it, a client that sends a little before every idle timeout
	// keeps its connection for ever.
	MaxAge time.Duration
	// Refused, if not nil, is told of every connection refused for a
	// limit (not of those refused because the Listener is closing).
	Refused func(Refusal)
}

// Listener is a net.Listener whose Accept returns only the connections
// within its limits and closes the others at once (accepting them frees
// the kernel's backlog). Its connections close themselves when silent:
// the timeouts run on timers rather than read deadlines, which
// crypto/tls uses for its own handshake timeout.
type Listener struct {
	net.Listener
	cfg     ListenerConfig
	limiter *Limiter

	mu    sync.Mutex
	conns map[[2]netip.AddrPort]*conn // by remote and local address
}

// NewListener wraps ln.
func NewListener(ln net.Listener, cfg ListenerConfig) *Listener {
	return &Listener{
		Listener: ln, cfg: cfg, limiter: New(cfg.MaxConns, cfg.MaxConnsPerSource),
		conns: make(map[[2]netip.AddrPort]*conn),
	}
}

// connKey is the key of Listener.conns.
func connKey(remote, local net.Addr) [2]netip.AddrPort {
	r, l := natstun.AddrPortOf(remote), natstun.AddrPortOf(local)
	return [2]netip.AddrPort{
		netip.AddrPortFrom(r.Addr().Unmap(), r.Port()),
		netip.AddrPortFrom(l.Addr().Unmap(), l.Port()),
	}
}

// Hold suspends the MaxAge of the open connection with the remote and local
// addresses given, until as many Unhold calls; a server holds a
// connection that carries state its client keeps alive, such as a TURN
// allocation. It reports whether there is such a connection.
func (l *Listener) Hold(remote, local net.Addr) bool {
	l.mu.Lock()
	c := l.conns[connKey(remote, local)]
	l.mu.Unlock()
	if c == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.holds++
	if c.age != nil {
		c.age.Stop()
	}
	return true
}

// unholdGrace is the least time a connection stays open after its last
// hold ends.
const unholdGrace = 2 * time.Second

// Unhold undoes a Hold of the connection with the addresses given. When
// no Hold is left, MaxAge applies again: a connection older than it is
// closed after unholdGrace.
func (l *Listener) Unhold(remote, local net.Addr) {
	l.mu.Lock()
	c := l.conns[connKey(remote, local)]
	l.mu.Unlock()
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.holds == 0 {
		return
	}
	if c.holds--; c.holds == 0 && c.age != nil {
		// A grace period past the age: the server may still be writing the
		// reply to the request that ended the hold (a Refresh with lifetime
		// 0 deletes the allocation before its success response goes out).
		c.age.Reset(max(l.cfg.MaxAge-time.Since(c.accepted), unholdGrace))
	}
}

// Accept returns the next connection within the limits. Errors other than
// the listener being closed (EMFILE, say) are paused on, with backoff, and
// retried for as long as the listener is open: giving up would leave the
// server without connections for the life of the process.
func (l *Listener) Accept() (net.Conn, error) {
	backoff := minAcceptBackoff
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil, err
			}
			time.Sleep(backoff)
			backoff = min(2*backoff, maxAcceptBackoff)
			continue
		}
		backoff = minAcceptBackoff
		lc := &conn{Conn: c, l: l, key: connKey(c.RemoteAddr(), c.LocalAddr()), accepted: time.Now()}
		// Hold the timer's place before Admit: Close may run as soon as
		// lc is admitted.
		lc.mu.Lock()
		r, ok := l.limiter.Admit(lc, natstun.AddrPortOf(c.RemoteAddr()).Addr())
		if !ok {
			lc.mu.Unlock()
			// Tell of the refusal before the close: whoever sees the
			// connection closed may look for its refusal at once.
			if !r.Closed && l.cfg.Refused != nil {
				l.cfg.Refused(r)
			}
			_ = c.Close()
			continue
		}
		if d := cmp.Or(l.cfg.FirstTimeout, l.cfg.IdleTimeout); d > 0 {
			lc.timer = time.AfterFunc(d, func() { _ = lc.Close() })
		}
		if l.cfg.MaxAge > 0 {
			lc.age = time.AfterFunc(l.cfg.MaxAge, func() { _ = lc.Close() })
		}
		l.mu.Lock()
		l.conns[lc.key] = lc
		l.mu.Unlock()
		lc.mu.Unlock()
		return lc, nil
	}
}

// CloseConns closes every connection the Listener accepted that is still
// open; Accept refuses all connections afterwards. It does not close the
// underlying listener.
func (l *Listener) CloseConns() { l.limiter.Close() }

// Open returns the number of connections the Listener accepted that are
// still open.
func (l *Listener) Open() int { return l.limiter.Open() }

// conn is a connection of a Listener.
type conn struct {
	net.Conn
	l        *Listener
	key      [2]netip.AddrPort
	accepted time.Time
	once     sync.Once

	mu    sync.Mutex
	timer *time.Timer // idle; nil without timeouts
	age   *time.Timer // MaxAge; nil without
	holds int
}

func (c *conn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.mu.Lock()
		if c.timer != nil {
			if c.l.cfg.IdleTimeout > 0 {
				c.timer.Reset(c.l.cfg.IdleTimeout)
			} else {
				c.timer.Stop()
			}
		}
		c.mu.Unlock()
	}
	return n, err
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.mu.Lock()
		if c.timer != nil {
			c.timer.Stop()
		}
		if c.age != nil {
			c.age.Stop()
		}
		c.mu.Unlock()
		c.l.mu.Lock()
		if c.l.conns[c.key] == c {
			delete(c.l.conns, c.key)
		}
		c.l.mu.Unlock()
		c.l.limiter.Release(c)
	})
	return err
}
