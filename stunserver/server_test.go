package stunserver

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	natstun "github.com/natcheck/natcheck/stun"
)

const (
	replyTimeout   = 2 * time.Second
	silenceTimeout = 200 * time.Millisecond
)

// packetConn is what the tests need of a client socket; *net.UDPConn and
// vnet's UDPConn both have it.
type packetConn interface {
	ReadFrom(b []byte) (int, net.Addr, error)
	WriteTo(b []byte, addr net.Addr) (int, error)
	SetReadDeadline(t time.Time) error
	LocalAddr() net.Addr
}

func localAddr(tb testing.TB, c packetConn) netip.AddrPort {
	tb.Helper()
	ua, ok := c.LocalAddr().(*net.UDPAddr)
	if !ok {
		tb.Fatalf("local address %v", c.LocalAddr())
	}
	return netip.AddrPortFrom(netip.MustParseAddr(ua.IP.String()), uint16(ua.Port))
}

func listenClient(tb testing.TB, ip string) *net.UDPConn {
	tb.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

func send(tb testing.TB, c packetConn, to netip.AddrPort, setters ...stun.Setter) *stun.Message {
	tb.Helper()
	m, err := stun.Build(append([]stun.Setter{stun.BindingRequest, stun.TransactionID}, setters...)...)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := c.WriteTo(m.Raw, net.UDPAddrFromAddrPort(to)); err != nil {
		tb.Fatal(err)
	}
	return m
}

// receive waits up to timeout for the response to req on c and returns it
// with the address it came from; ok is false if none came. Other packets
// are skipped, at most 100 of them.
func receive(tb testing.TB, c packetConn, req *stun.Message, timeout time.Duration) (m *stun.Message, from netip.AddrPort, ok bool) {
	tb.Helper()
	buf := make([]byte, 1500)
	deadline := time.Now().Add(timeout)
	for range 100 {
		// vnet's read deadline fires once: set it before every read.
		if err := c.SetReadDeadline(deadline); err != nil {
			tb.Fatal(err)
		}
		n, addr, err := c.ReadFrom(buf)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, netip.AddrPort{}, false
		}
		if err != nil {
			tb.Fatal(err)
		}
		m = new(stun.Message)
		if err := stun.Decode(slices.Clone(buf[:n]), m); err != nil {
			tb.Fatalf("reply does not decode: %v", err)
		}
		if m.TransactionID != req.TransactionID {
			continue
		}
		if err := stun.Fingerprint.Check(m); err != nil {
			tb.Errorf("reply FINGERPRINT: %v", err)
		}
		ua := addr.(*net.UDPAddr)
		return m, netip.AddrPortFrom(netip.MustParseAddr(ua.IP.String()), uint16(ua.Port)), true
	}
	tb.Fatal("too many unrelated packets")
	return nil, netip.AddrPort{}, false
}

func mustReceive(tb testing.TB, c packetConn, req *stun.Message) (*stun.Message, netip.AddrPort) {
	tb.Helper()
	m, from, ok := receive(tb, c, req, replyTimeout)
	if !ok {
		tb.Fatalf("no reply to %v on %v", req, c.LocalAddr())
	}
	return m, from
}

func mustStart(tb testing.TB, cfg Config) *Server {
	tb.Helper()
	s, err := Start(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Error(err)
		}
	})
	return s
}

var (
	loopP = netip.MustParseAddrPort("127.0.0.1:0")
	loopA = netip.MustParseAddrPort("127.0.0.2:0")
)

// checkChangeRequests sends all four CHANGE-REQUEST combinations to every
// socket of s from c and checks where each reply came from and what it says.
func checkChangeRequests(t *testing.T, s *Server, c packetConn, wantMapped netip.AddrPort) {
	t.Helper()
	addrs := s.Addrs()
	if len(addrs) != 4 || addrs[sockPP] != s.Primary() || addrs[sockAA] != s.Alternate() {
		t.Fatalf("Addrs() = %v, Primary %v, Alternate %v", addrs, s.Primary(), s.Alternate())
	}
	for to := range 4 {
		for _, change := range []natstun.ChangeRequest{{}, {ChangePort: true}, {ChangeIP: true}, {ChangeIP: true, ChangePort: true}} {
			want := to
			if change.ChangeIP {
				want ^= changeIPBit
			}
			if change.ChangePort {
				want ^= changePortBit
			}
			req := send(t, c, addrs[to], change, stun.Fingerprint)
			m, from := mustReceive(t, c, req)
			if m.Type != stun.BindingSuccess {
				t.Errorf("to %v, %v: type %v", addrs[to], change, m.Type)
				continue
			}
			if from != addrs[want] {
				t.Errorf("to %v, %v: reply from %v, want %v", addrs[to], change, from, addrs[want])
			}
			if got := getAddr(t, m, stun.AttrResponseOrigin); got != addrs[want] {
				t.Errorf("to %v, %v: RESPONSE-ORIGIN %v, want %v", addrs[to], change, got, addrs[want])
			}
			if got := getAddr(t, m, stun.AttrOtherAddress); got != addrs[to^3] {
				t.Errorf("to %v, %v: OTHER-ADDRESS %v, want %v", addrs[to], change, got, addrs[to^3])
			}
			if got := getAddr(t, m, stun.AttrXORMappedAddress); got != wantMapped {
				t.Errorf("to %v, %v: XOR-MAPPED-ADDRESS %v, want %v", addrs[to], change, got, wantMapped)
			}
			if got := getAddr(t, m, stun.AttrMappedAddress); got != wantMapped {
				t.Errorf("to %v, %v: MAPPED-ADDRESS %v, want %v", addrs[to], change, got, wantMapped)
			}
		}
	}
}

func TestLoopbackChangeRequest(t *testing.T) {
	s := mustStart(t, Config{Primary: loopP, Alternate: loopA})
	if s.Primary().Addr() != loopP.Addr() || s.Alternate().Addr() != loopA.Addr() ||
		s.Primary().Port() == 0 || s.Alternate().Port() == 0 || s.Primary().Port() == s.Alternate().Port() {
		t.Fatalf("bound %v and %v", s.Primary(), s.Alternate())
	}
	c := listenClient(t, "127.0.0.1")
	checkChangeRequests(t, s, c, localAddr(t, c))
	st := waitStats(s, func(st Stats) bool { return st.Responses == 16 })
	if st.Requests != 16 || st.Responses != 16 || st.Malformed != 0 || st.RateLimited != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestLoopbackResponsePort(t *testing.T) {
	s := mustStart(t, Config{Primary: loopP, Alternate: loopA})
	c1 := listenClient(t, "127.0.0.1")
	c2 := listenClient(t, "127.0.0.1")
	port := localAddr(t, c2).Port()
	for _, change := range []natstun.ChangeRequest{{}, {ChangeIP: true, ChangePort: true}} {
		req := send(t, c1, s.Primary(), natstun.ResponsePort(port), change)
		m, from := mustReceive(t, c2, req)
		wantFrom := s.Primary()
		if change.ChangeIP {
			wantFrom = s.Alternate()
		}
		if from != wantFrom {
			t.Errorf("%v: reply from %v, want %v", change, from, wantFrom)
		}
		if got := getAddr(t, m, stun.AttrXORMappedAddress); got != localAddr(t, c1) {
			t.Errorf("%v: XOR-MAPPED-ADDRESS %v, want the requesting socket %v", change, got, localAddr(t, c1))
		}
		if _, _, ok := receive(t, c1, req, silenceTimeout); ok {
			t.Errorf("%v: reply also arrived on the requesting socket", change)
		}
	}
}

func TestLoopbackMisbehaviours(t *testing.T) {
	c := listenClient(t, "127.0.0.1")
	both := natstun.ChangeRequest{ChangeIP: true, ChangePort: true}

	t.Run("IgnoreChangeRequest", func(t *testing.T) {
		s := mustStart(t, Config{Primary: loopP, Alternate: loopA, IgnoreChangeRequest: true})
		req := send(t, c, s.Primary(), both)
		m, from := mustReceive(t, c, req)
		if from != s.Primary() || getAddr(t, m, stun.AttrResponseOrigin) != s.Primary() {
			t.Errorf("reply from %v, RESPONSE-ORIGIN %v; want both %v", from, getAddr(t, m, stun.AttrResponseOrigin), s.Primary())
		}
		if got := getAddr(t, m, stun.AttrOtherAddress); got != s.Alternate() {
			t.Errorf("OTHER-ADDRESS %v, want %v still advertised", got, s.Alternate())
		}
	})
	t.Run("AdvertiseOther", func(t *testing.T) {
		bogus := netip.MustParseAddrPort("127.0.0.1:9")
		s := mustStart(t, Config{Primary: loopP, Alternate: loopA, AdvertiseOther: bogus})
		req := send(t, c, s.Primary(), both)
		m, from := mustReceive(t, c, req)
		if got := getAddr(t, m, stun.AttrOtherAddress); got != bogus {
			t.Errorf("OTHER-ADDRESS %v, want %v", got, bogus)
		}
		if from != s.Alternate() {
			t.Errorf("reply from %v, want %v: only the advertisement is bogus", from, s.Alternate())
		}
	})
	t.Run("OmitMappedAddress", func(t *testing.T) {
		s := mustStart(t, Config{Primary: loopP, Alternate: loopA, OmitMappedAddress: true, Software: "natcheck-test"})
		req := send(t, c, s.Primary())
		m, _ := mustReceive(t, c, req)
		if m.Contains(stun.AttrMappedAddress) {
			t.Error("MAPPED-ADDRESS sent")
		}
		if got := getAddr(t, m, stun.AttrXORMappedAddress); got != localAddr(t, c) {
			t.Errorf("XOR-MAPPED-ADDRESS %v", got)
		}
		if m.Contains(stun.AttrSoftware) {
			t.Error("SOFTWARE in reply to a small UDP request: amplification")
		}
	})
	t.Run("MappedAddressOverride", func(t *testing.T) {
		alg := netip.MustParseAddrPort("10.1.2.3:4567")
		s := mustStart(t, Config{Primary: loopP, Alternate: loopA,
			MappedAddressOverride: func(netip.AddrPort) netip.AddrPort { return alg }})
		req := send(t, c, s.Primary())
		m, _ := mustReceive(t, c, req)
		if got := getAddr(t, m, stun.AttrMappedAddress); got != alg {
			t.Errorf("MAPPED-ADDRESS %v, want %v", got, alg)
		}
		if got := getAddr(t, m, stun.AttrXORMappedAddress); got != localAddr(t, c) {
			t.Errorf("XOR-MAPPED-ADDRESS %v", got)
		}
		if m.Contains(stun.AttrSoftware) {
			t.Error("SOFTWARE sent though not configured")
		}
	})
}

func TestLoopbackSingleAddress(t *testing.T) {
	s := mustStart(t, Config{Primary: loopP})
	if s.Alternate().IsValid() || len(s.Addrs()) != 1 {
		t.Fatalf("Alternate %v, Addrs %v", s.Alternate(), s.Addrs())
	}
	c := listenClient(t, "127.0.0.1")

	req := send(t, c, s.Primary(), natstun.ChangeRequest{}, stun.Fingerprint)
	m, from := mustReceive(t, c, req)
	if m.Type != stun.BindingSuccess || from != s.Primary() {
		t.Fatalf("type %v from %v", m.Type, from)
	}
	if m.Contains(stun.AttrOtherAddress) {
		t.Error("OTHER-ADDRESS in single-address mode")
	}
	if got := getAddr(t, m, stun.AttrResponseOrigin); got != s.Primary() {
		t.Errorf("RESPONSE-ORIGIN %v", got)
	}

	for _, change := range []natstun.ChangeRequest{{ChangeIP: true}, {ChangePort: true}} {
		req = send(t, c, s.Primary(), change, stun.Fingerprint)
		m, from = mustReceive(t, c, req)
		if m.Type != stun.BindingError || from != s.Primary() {
			t.Fatalf("%v: type %v from %v", change, m.Type, from)
		}
		if got := errorCode(t, m); got != stun.CodeUnknownAttribute {
			t.Errorf("%v: code %d, want 420", change, got)
		}
		if got := unknownAttrs(t, m); !slices.Equal(got, stun.UnknownAttributes{stun.AttrChangeRequest}) {
			t.Errorf("%v: UNKNOWN-ATTRIBUTES %v", change, got)
		}
	}
	if st := waitStats(s, func(st Stats) bool { return st.ErrorResponses == 2 && st.Responses == 1 }); st.Responses != 1 || st.ErrorResponses != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestLoopbackUnknownAttribute(t *testing.T) {
	s := mustStart(t, Config{Primary: loopP, Alternate: loopA})
	c := listenClient(t, "127.0.0.1")
	req := send(t, c, s.Primary(), natstun.ChangeRequest{ChangeIP: true}, rawAttr{0x7F01, []byte("?")}, stun.Fingerprint)
	m, from := mustReceive(t, c, req)
	if from != s.Primary() {
		t.Errorf("error from %v, want the receiving socket %v", from, s.Primary())
	}
	if m.Type != stun.BindingError || errorCode(t, m) != stun.CodeUnknownAttribute {
		t.Fatalf("type %v", m.Type)
	}
	if got := unknownAttrs(t, m); !slices.Equal(got, stun.UnknownAttributes{0x7F01}) {
		t.Errorf("UNKNOWN-ATTRIBUTES %v", got)
	}
	// A comprehension-optional unknown attribute is ignored.
	req = send(t, c, s.Primary(), rawAttr{0xFF01, []byte("?")})
	if m, _ = mustReceive(t, c, req); m.Type != stun.BindingSuccess {
		t.Errorf("optional attribute: type %v", m.Type)
	}
}

func TestLoopbackMalformed(t *testing.T) {
	s := mustStart(t, Config{Primary: loopP, Alternate: loopA})
	c := listenClient(t, "127.0.0.1")
	bad := malformed(t)
	bad["oversized"] = make([]byte, 2*readBufferSize)
	for name, pkt := range bad {
		if len(pkt) == 0 {
			continue // an empty datagram is valid UDP but uninteresting here
		}
		if _, err := c.WriteTo(pkt, net.UDPAddrFromAddrPort(s.Primary())); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	// The reader handles packets in order: once this request is answered,
	// everything before it has been handled.
	req := send(t, c, s.Primary())
	buf := make([]byte, 1500)
	if err := c.SetReadDeadline(time.Now().Add(replyTimeout)); err != nil {
		t.Fatal(err)
	}
	n, _, err := c.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	m := new(stun.Message)
	if err := stun.Decode(buf[:n], m); err != nil || m.TransactionID != req.TransactionID {
		t.Fatalf("first packet back is not the reply to the last request (%v): a malformed packet was answered", err)
	}
	if st := waitStats(s, func(st Stats) bool { return st.Responses == 1 }); st.Malformed != uint64(len(bad)-1) || st.Responses != 1 || st.ErrorResponses != 0 {
		t.Errorf("stats %+v, want %d malformed", st, len(bad)-1)
	}
}

// TestBudgetLoopback: plain and reflected responses to one source, loopback
// included, are bounded by its byte budget (1000 bytes; refilled at 125
// bytes a second), while a trusted source is never limited.
func TestBudgetLoopback(t *testing.T) {
	const flood = 300
	s := mustStart(t, Config{Primary: loopP, Alternate: loopA, SourceBudget: 1000,
		Trust: []netip.Prefix{netip.MustParsePrefix("127.0.0.4/32")}})
	attacker := listenClient(t, "127.0.0.1")
	trusted := listenClient(t, "127.0.0.4")
	change := natstun.ChangeRequest{ChangePort: true}

	start := time.Now()
	var sent, got int
	buf := make([]byte, 1500)
	for i := range flood {
		var req *stun.Message
		if i%2 == 0 {
			req = send(t, attacker, s.Primary(), change)
		} else {
			req = send(t, attacker, s.Primary())
		}
		sent += len(req.Raw)
		// One at a time, so that no request is lost in a socket buffer.
		if err := attacker.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		if n, _, err := attacker.ReadFrom(buf); err == nil {
			got += n
		}
	}
	elapsed := time.Since(start)
	st := waitStats(s, func(st Stats) bool { return st.Requests == flood })
	// A 76-byte response to a 28- or 36-byte request: the budget pays 48
	// or 40 bytes, so about 1000/44 = 22 responses, plus the refill.
	limit := sent + 1000 + int(elapsed.Seconds()*125) + 1
	if got > limit || st.RateLimited == 0 || st.SourceBudgetDrops != st.RateLimited {
		t.Errorf("%d requests (%d bytes) in %v: %d bytes back, want at most %d; stats %+v",
			flood, sent, elapsed, got, limit, st)
	}
	if st.Responses+st.RateLimited != flood {
		t.Errorf("stats %+v: requests lost", st)
	}

	// Another source is answered, from the changed port; a trusted one
	// always.
	other := listenClient(t, "127.0.0.3")
	req := send(t, other, s.Primary(), change)
	if _, from := mustReceive(t, other, req); from != s.Addrs()[sockPA] {
		t.Errorf("reply from %v", from)
	}
	for range 100 {
		req := send(t, trusted, s.Primary(), change)
		mustReceive(t, trusted, req)
	}
}

// waitStats returns s's counters once done accepts them, or after
// replyTimeout: a counter is updated just after the packet is sent.
func waitStats(s *Server, done func(Stats) bool) Stats {
	deadline := time.Now().Add(replyTimeout)
	for {
		st := s.Stats()
		if done(st) || time.Now().After(deadline) {
			return st
		}
		time.Sleep(time.Millisecond)
	}
}

// drain reads c until the reply to req, at most 1000 packets.
func drain(tb testing.TB, c packetConn, req *stun.Message) {
	tb.Helper()
	buf := make([]byte, 1500)
	for range 1000 {
		if err := c.SetReadDeadline(time.Now().Add(replyTimeout)); err != nil {
			tb.Fatal(err)
		}
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			tb.Fatal(err)
		}
		m := new(stun.Message)
		if stun.Decode(buf[:n], m) == nil && m.TransactionID == req.TransactionID {
			return
		}
	}
	tb.Fatal("reply not found")
}

func TestStartErrors(t *testing.T) {
	ctx := context.Background()
	for name, cfg := range map[string]Config{
		"no primary":            {},
		"unspecified primary":   {Primary: netip.MustParseAddrPort("0.0.0.0:0")},
		"unspecified alternate": {Primary: loopP, Alternate: netip.MustParseAddrPort("0.0.0.0:0")},
		"same address":          {Primary: loopP, Alternate: netip.MustParseAddrPort("127.0.0.1:0")},
		"mixed families":        {Primary: loopP, Alternate: netip.MustParseAddrPort("[::1]:0")},
		"same port":             {Primary: netip.MustParseAddrPort("127.0.0.1:4000"), Alternate: netip.MustParseAddrPort("127.0.0.2:4000")},
		"long software":         {Primary: loopP, Software: string(make([]byte, 800))},
		"negative budget":       {Primary: loopP, SourceBudget: -1},
		"invalid trust":         {Primary: loopP, Trust: []netip.Prefix{{}}},
		"not my address":        {Primary: netip.MustParseAddrPort("192.0.2.1:0")},
	} {
		if s, err := Start(ctx, cfg); err == nil {
			_ = s.Close()
			t.Errorf("%s: no error", name)
		}
	}

	// A fixed port already in use is an error, not a retry loop.
	busy := listenClient(t, "127.0.0.1")
	if s, err := Start(ctx, Config{Primary: localAddr(t, busy), Alternate: loopA}); err == nil {
		_ = s.Close()
		t.Error("busy primary port: no error")
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if s, err := Start(cancelled, Config{Primary: loopP, Alternate: loopA}); !errors.Is(err, context.Canceled) {
		if s != nil {
			_ = s.Close()
		}
		t.Errorf("cancelled context: err = %v", err)
	}
}

func TestFixedPorts(t *testing.T) {
	// Find two ports free on both addresses, then ask for them.
	s := mustStart(t, Config{Primary: loopP, Alternate: loopA})
	p, a := s.Primary(), s.Alternate()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Start(context.Background(), Config{Primary: p, Alternate: a})
	if err != nil {
		t.Skipf("ports taken meanwhile: %v", err)
	}
	defer s2.Close()
	if s2.Primary() != p || s2.Alternate() != a {
		t.Errorf("bound %v and %v, want %v and %v", s2.Primary(), s2.Alternate(), p, a)
	}
}

func TestCloseAndContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	s, err := Start(ctx, Config{Primary: loopP, Alternate: loopA})
	if err != nil {
		t.Fatal(err)
	}
	c := listenClient(t, "127.0.0.1")
	mustReceive(t, c, send(t, c, s.Primary()))

	cancel() // stops the server, as Close would
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.wg.Wait()
	}()
	select {
	case <-done:
	case <-time.After(replyTimeout):
		t.Fatal("server still running after its context was cancelled")
	}
	if _, _, ok := receive(t, c, send(t, c, s.Primary()), silenceTimeout); ok {
		t.Error("reply after the context was cancelled")
	}
	_ = s.Close() // the first Close ran in the context's goroutine
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	// After Close, the same ports can be bound again.
	for _, ap := range s.Addrs() {
		conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(ap))
		if err != nil {
			t.Errorf("%v still bound: %v", ap, err)
			continue
		}
		conn.Close()
	}
}

func TestCloseConcurrent(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	s, err := Start(ctx, Config{Primary: loopP, Alternate: loopA})
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 4)
	for range 4 {
		go func() { errs <- s.Close() }()
	}
	cancel()
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if st := s.Stats(); st != (Stats{}) {
		t.Errorf("stats %+v of an idle server", st)
	}
}
