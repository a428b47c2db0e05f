package connlimit

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestSourceKeyGroupsIPv6By64(t *testing.T) {
	a, b := netip.MustParseAddr("2001:db8:1:2::1"), netip.MustParseAddr("2001:db8:1:2:ffff::9")
	if SourceKey(a) != SourceKey(b) {
		t.Errorf("%s and %s are one /64 but count apart", a, b)
	}
	if c := netip.MustParseAddr("2001:db8:1:3::1"); SourceKey(a) == SourceKey(c) {
		t.Errorf("%s and %s are different /64s but count together", a, c)
	}
	v4 := netip.MustParseAddr("192.0.2.7")
	if SourceKey(v4) != v4 || SourceKey(netip.AddrFrom16(v4.As16())) != v4 {
		t.Errorf("IPv4 keys: %s %s", SourceKey(v4), SourceKey(netip.AddrFrom16(v4.As16())))
	}
}

// closer is a connection for Limiter tests.
type closer struct {
	closed  atomic.Bool
	onClose func()
}

func (c *closer) Close() error {
	c.closed.Store(true)
	if c.onClose != nil {
		c.onClose()
	}
	return nil
}

func TestLimiter(t *testing.T) {
	clock := time.Unix(1000, 0)
	l := New(3, 2)
	l.now = func() time.Time { return clock }
	a := netip.MustParseAddr("192.0.2.1")
	admit := func(src netip.Addr) (*closer, Refusal, bool) {
		c := new(closer)
		r, ok := l.Admit(c, src)
		return c, r, ok
	}
	a1, _, ok1 := admit(a)
	_, _, ok2 := admit(netip.MustParseAddr("::ffff:192.0.2.1")) // the same source
	if !ok1 || !ok2 {
		t.Fatal("first two connections of a source refused")
	}
	_, r, ok := admit(a)
	if want := (Refusal{Source: a, Open: 2, FromSource: 2, Log: true, Refused: 1}); ok || r != want {
		t.Errorf("third of a source: %v %+v, want refused %+v", ok, r, want)
	}
	if _, _, ok := admit(netip.MustParseAddr("198.51.100.1")); !ok {
		t.Error("another source refused")
	}
	other := netip.MustParseAddr("203.0.113.1")
	_, r, ok = admit(other)
	if want := (Refusal{Source: other, Open: 3, FromSource: 0}); ok || r != want {
		t.Errorf("over the total: %v %+v, want refused %+v (no log line within a second)", ok, r, want)
	}
	clock = clock.Add(time.Second)
	if _, r, ok = admit(other); ok || !r.Log || r.Refused != 2 {
		t.Errorf("a second later: %v %+v, want a log line for 2 refusals", ok, r)
	}
	l.Release(a1)
	l.Release(a1)          // twice: no effect
	l.Release(new(closer)) // never admitted: no effect
	if l.Open() != 2 {
		t.Errorf("%d open after a release, want 2", l.Open())
	}
	if _, _, ok := admit(a); !ok {
		t.Error("no room after a release")
	}
	if _, _, ok := admit(a); ok {
		t.Error("a release made room for two")
	}
}

func TestLimiterIPv6By64(t *testing.T) {
	l := New(10, 1)
	if _, ok := l.Admit(new(closer), netip.MustParseAddr("2001:db8::1")); !ok {
		t.Fatal("first refused")
	}
	if _, ok := l.Admit(new(closer), netip.MustParseAddr("2001:db8::2")); ok {
		t.Error("a second address of the same /64 admitted over a per-source limit of 1")
	}
	if _, ok := l.Admit(new(closer), netip.MustParseAddr("2001:db8:0:1::1")); !ok {
		t.Error("another /64 refused")
	}
}

func TestLimiterClose(t *testing.T) {
	l := New(10, 10)
	var cs []*closer
	for i := range 3 {
		c := new(closer)
		c.onClose = func() { l.Release(c) } // as a real connection does
		if _, ok := l.Admit(c, netip.AddrFrom4([4]byte{192, 0, 2, byte(i)})); !ok {
			t.Fatal("refused")
		}
		cs = append(cs, c)
	}
	l.Close()
	for i, c := range cs {
		if !c.closed.Load() {
			t.Errorf("connection %d open after Close", i)
		}
	}
	if l.Open() != 0 {
		t.Errorf("%d open after Close", l.Open())
	}
	if r, ok := l.Admit(new(closer), netip.MustParseAddr("192.0.2.9")); ok || r != (Refusal{Closed: true}) {
		t.Errorf("after Close: %v %+v", ok, r)
	}
}

// serveEcho accepts on l until it is closed and echoes what each
// connection sends; wg waits for it.
func serveEcho(wg *sync.WaitGroup, l net.Listener) {
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			})
		}
	})
}

func listen(t *testing.T, cfg ListenerConfig) *Listener {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := NewListener(ln, cfg)
	var wg sync.WaitGroup
	t.Cleanup(func() {
		l.Close()
		l.CloseConns()
		wg.Wait()
	})
	serveEcho(&wg, l)
	return l
}

func dial(t *testing.T, from string, l net.Listener) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp4", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// echoes reports whether c answers a byte with it.
func echoes(c net.Conn) bool {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte{'x'}); err != nil {
		return false
	}
	b := make([]byte, 1)
	_, err := io.ReadFull(c, b)
	return err == nil && b[0] == 'x'
}

// closed waits up to 5 s for the server to close c.
func closed(c net.Conn) bool {
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Read(make([]byte, 1))
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err)
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && !op.Timeout()
}

func TestListenerLimits(t *testing.T) {
	var mu sync.Mutex
	var refusals []Refusal
	l := listen(t, ListenerConfig{MaxConns: 3, MaxConnsPerSource: 2, Refused: func(r Refusal) {
		mu.Lock()
		defer mu.Unlock()
		refusals = append(refusals, r)
	}})
	a1, a2 := dial(t, "127.0.0.1", l), dial(t, "127.0.0.1", l)
	if !echoes(a1) || !echoes(a2) {
		t.Fatal("first two connections not served")
	}
	if !closed(dial(t, "127.0.0.1", l)) {
		t.Error("third connection from one source not closed")
	}
	if b := dial(t, "127.0.0.3", l); !echoes(b) {
		t.Error("another source not served")
	}
	if !closed(dial(t, "127.0.0.4", l)) {
		t.Error("connection over MaxConns not closed")
	}
	mu.Lock()
	if len(refusals) != 2 || refusals[0].Source != netip.MustParseAddr("127.0.0.1") || refusals[1].Open != 3 {
		t.Errorf("refusals %+v", refusals)
	}
	mu.Unlock()
	// Closing a connection makes room again, once the server sees it.
	a1.Close()
	for range 100 {
		if c := dial(t, "127.0.0.1", l); echoes(c) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Error("no room after a connection closed")
}

func TestListenerTimeouts(t *testing.T) {
	const first, idle = 100 * time.Millisecond, 300 * time.Millisecond
	l := listen(t, ListenerConfig{MaxConns: 10, MaxConnsPerSource: 10, FirstTimeout: first, IdleTimeout: idle})
	silent := dial(t, "127.0.0.1", l)
	start := time.Now()
	if !closed(silent) {
		t.Fatal("silent connection not closed")
	}
	if d := time.Since(start); d > first+idle {
		t.Errorf("silent connection closed after %v, want about %v", d, first)
	}
	// Data moves the deadline to the idle timeout.
	talker := dial(t, "127.0.0.1", l)
	if !echoes(talker) {
		t.Fatal("not served")
	}
	time.Sleep(2 * first)
	if !echoes(talker) {
		t.Fatal("closed after the first timeout although it sent data")
	}
	start = time.Now()
	if !closed(talker) {
		t.Fatal("idle connection not closed")
	}
	if d := time.Since(start); d < idle/2 {
		t.Errorf("idle connection closed after %v, want about %v", d, idle)
	}
	if n := l.Open(); n != 0 {
		for range 100 {
			if n = l.Open(); n == 0 {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if n != 0 {
			t.Errorf("%d connections counted after they closed", n)
		}
	}
}

func TestListenerCloseConns(t *testing.T) {
	var refused atomic.Int32
	l := listen(t, ListenerConfig{MaxConns: 10, MaxConnsPerSource: 10, Refused: func(Refusal) { refused.Add(1) }})
	c := dial(t, "127.0.0.1", l)
	if !echoes(c) {
		t.Fatal("not served")
	}
	l.CloseConns()
	if !closed(c) {
		t.Error("connection open after CloseConns")
	}
	if !closed(dial(t, "127.0.0.1", l)) {
		t.Error("connection served after CloseConns")
	}
	if n := refused.Load(); n != 0 {
		t.Errorf("%d refusals reported for a closing listener", n)
	}
}

// flakyListener fails its first Accepts, then hands out one end of a pipe,
// then reports itself closed.
type flakyListener struct {
	fails int
	conn  net.Conn
}

func (f *flakyListener) Accept() (net.Conn, error) {
	switch {
	case f.fails > 0:
		f.fails--
		return nil, errors.New("accept: too many open files")
	case f.conn != nil:
		c := f.conn
		f.conn = nil
		return c, nil
	}
	return nil, net.ErrClosed
}

func (f *flakyListener) Close() error   { return nil }
func (f *flakyListener) Addr() net.Addr { return &net.TCPAddr{} }

func TestListenerRetriesAcceptErrors(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	l := NewListener(&flakyListener{fails: 3, conn: a}, ListenerConfig{MaxConns: 1, MaxConnsPerSource: 1})
	c, err := l.Accept()
	if err != nil {
		t.Fatalf("Accept after errors: %v", err)
	}
	defer c.Close()
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept on a closed listener: %v", err)
	}
}

// talkUntilClosed echoes a byte on c every few milliseconds until it fails
// (at most maxRounds times, a guard against hanging) and returns when it
// last echoed and whether the server closed c (rather than it timing out
// or the rounds running out).
func talkUntilClosed(c net.Conn, maxRounds int) (last time.Time, closedByServer bool) {
	b := make([]byte, 1)
	for range maxRounds {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		_, err := c.Write([]byte{'x'})
		if err == nil {
			_, err = io.ReadFull(c, b)
		}
		if err != nil {
			return last, errors.Is(err, io.EOF) || isReset(err)
		}
		last = time.Now()
		time.Sleep(20 * time.Millisecond)
	}
	return last, false
}

// TestListenerMaxAge: a connection that keeps talking, so that the idle
// timeout never closes it, is closed at its MaxAge; one that is held is
// not, until it is released.
func TestListenerMaxAge(t *testing.T) {
	const idle, age = 300 * time.Millisecond, time.Second
	l := listen(t, ListenerConfig{MaxConns: 10, MaxConnsPerSource: 10, FirstTimeout: idle, IdleTimeout: idle, MaxAge: age})
	dialed := time.Now()
	talker := dial(t, "127.0.0.1", l)
	last, ok := talkUntilClosed(talker, 1000)
	if !ok {
		t.Fatal("a connection that keeps talking was not closed")
	}
	if open := last.Sub(dialed); open <= idle {
		t.Errorf("talked for %v only, not longer than the idle timeout %v", open, idle)
	}
	if open := time.Since(dialed); open < age {
		t.Errorf("closed after %v, before its max age %v", open, age)
	}

	held := dial(t, "127.0.0.1", l)
	if !echoes(held) {
		t.Fatal("not served")
	}
	if !l.Hold(held.LocalAddr(), held.RemoteAddr()) {
		t.Fatal("Hold found no connection")
	}
	if l.Hold(held.RemoteAddr(), held.LocalAddr()) {
		t.Error("Hold found a connection for the wrong addresses")
	}
	l.Unhold(held.RemoteAddr(), held.LocalAddr()) // no such connection: nothing
	dialed = time.Now()
	for time.Since(dialed) < 2*age {
		if !echoes(held) {
			t.Fatalf("a held connection closed after %v", time.Since(dialed))
		}
		time.Sleep(20 * time.Millisecond)
	}
	l.Unhold(held.LocalAddr(), held.RemoteAddr())
	if !closed(held) {
		t.Error("a connection past its max age stayed open once released")
	}
}
