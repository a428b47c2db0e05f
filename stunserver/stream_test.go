package stunserver

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/natcheck/natcheck/internal/testcert"
	natstun "github.com/natcheck/natcheck/stun"
)

// selfSigned returns a server TLS config with a fresh self-signed
// certificate for 127.0.0.1, ::1 and "localhost", and a pool that trusts it.
func selfSigned(tb testing.TB) (*tls.Config, *x509.CertPool) {
	tb.Helper()
	cfg, pool, err := testcert.SelfSigned("stunserver test")
	if err != nil {
		tb.Fatal(err)
	}
	return cfg, pool
}

// streamClient is a STUN client on one TCP or TLS connection.
type streamClient struct {
	tb testing.TB
	c  net.Conn
	r  *bufio.Reader
}

func dialTCP(tb testing.TB, from string, to netip.AddrPort) *streamClient {
	tb.Helper()
	d := net.Dialer{Timeout: replyTimeout}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	c, err := d.Dial("tcp", to.String())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return &streamClient{tb: tb, c: c, r: bufio.NewReader(c)}
}

func dialTLS(tb testing.TB, to netip.AddrPort, roots *x509.CertPool) *streamClient {
	tb.Helper()
	d := &net.Dialer{Timeout: replyTimeout}
	c, err := tls.DialWithDialer(d, "tcp", to.String(), &tls.Config{RootCAs: roots})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return &streamClient{tb: tb, c: c, r: bufio.NewReader(c)}
}

func (sc *streamClient) local() netip.AddrPort  { return natstun.AddrPortOf(sc.c.LocalAddr()) }
func (sc *streamClient) remote() netip.AddrPort { return natstun.AddrPortOf(sc.c.RemoteAddr()) }

func (sc *streamClient) write(b []byte) {
	sc.tb.Helper()
	if err := sc.c.SetWriteDeadline(time.Now().Add(replyTimeout)); err != nil {
		sc.tb.Fatal(err)
	}
	if _, err := sc.c.Write(b); err != nil {
		sc.tb.Fatal(err)
	}
}

// read reads one framed STUN message; err is io.EOF (or a reset) when the
// server closed the connection.
func (sc *streamClient) read() (*stun.Message, error) {
	sc.tb.Helper()
	if err := sc.c.SetReadDeadline(time.Now().Add(replyTimeout)); err != nil {
		sc.tb.Fatal(err)
	}
	m, err := natstun.ReadMessage(sc.r, natstun.MaxMessageSize)
	if errors.Is(err, natstun.ErrMalformed) {
		sc.tb.Fatalf("response does not decode: %v", err)
	}
	if err != nil {
		return nil, err
	}
	if err := stun.Fingerprint.Check(m); err != nil {
		sc.tb.Errorf("response FINGERPRINT: %v", err)
	}
	return m, nil
}

// roundTrip sends one Binding request and returns its response.
func (sc *streamClient) roundTrip(setters ...stun.Setter) *stun.Message {
	sc.tb.Helper()
	req := stun.MustBuild(append([]stun.Setter{stun.BindingRequest, stun.TransactionID}, setters...)...)
	sc.write(req.Raw)
	m, err := sc.read()
	if err != nil {
		sc.tb.Fatalf("no response over %v: %v", sc.remote(), err)
	}
	if m.TransactionID != req.TransactionID {
		sc.tb.Fatalf("response to another transaction")
	}
	return m
}

// expectClosed checks that the server closes the connection without
// sending anything more.
func (sc *streamClient) expectClosed(what string) {
	sc.tb.Helper()
	if err := sc.c.SetReadDeadline(time.Now().Add(replyTimeout)); err != nil {
		sc.tb.Fatal(err)
	}
	n, err := io.Copy(io.Discard, sc.r)
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		sc.tb.Errorf("%s: connection still open", what)
	case n > 0:
		sc.tb.Errorf("%s: %d bytes of reply", what, n)
	}
}

func TestTCPFourAddresses(t *testing.T) {
	s := mustStart(t, Config{Primary: loopP, Alternate: loopA, TCP: true})
	addrs := s.Addrs()
	if got := s.TCPAddrs(); !slices.Equal(got, addrs) {
		t.Fatalf("TCPAddrs %v, want the UDP addresses %v", got, addrs)
	}
	for i, to := range addrs {
		sc := dialTCP(t, "127.0.0.1", to)
		for _, setters := range [][]stun.Setter{nil, {natstun.ChangeRequest{}, stun.Fingerprint}} {
			m := sc.roundTrip(setters...)
			if m.Type != stun.BindingSuccess {
				t.Fatalf("%v: type %v", to, m.Type)
			}
			if got := getAddr(t, m, stun.AttrXORMappedAddress); got != sc.local() {
				t.Errorf("%v: XOR-MAPPED-ADDRESS %v, want %v", to, got, sc.local())
			}
			if got := getAddr(t, m, stun.AttrMappedAddress); got != sc.local() {
				t.Errorf("%v: MAPPED-ADDRESS %v, want %v", to, got, sc.local())
			}
			if got := getAddr(t, m, stun.AttrResponseOrigin); got != to {
				t.Errorf("%v: RESPONSE-ORIGIN %v", to, got)
			}
			if got := getAddr(t, m, stun.AttrOtherAddress); got != addrs[i^3] {
				t.Errorf("%v: OTHER-ADDRESS %v, want %v", to, got, addrs[i^3])
			}
		}
		// Over a stream nothing can be answered from elsewhere: 420.
		for _, bad := range []struct {
			setter stun.Setter
			attr   stun.AttrType
		}{
			{natstun.ChangeRequest{ChangeIP: true}, stun.AttrChangeRequest},
			{natstun.ChangeRequest{ChangePort: true}, stun.AttrChangeRequest},
			{natstun.ResponsePort(4000), stun.AttrResponsePort},
		} {
			m := sc.roundTrip(bad.setter, stun.Fingerprint)
			if m.Type != stun.BindingError || errorCode(t, m) != stun.CodeUnknownAttribute {
				t.Fatalf("%v, %v: type %v", to, bad.setter, m.Type)
			}
			if got := unknownAttrs(t, m); !slices.Equal(got, stun.UnknownAttributes{bad.attr}) {
				t.Errorf("%v, %v: UNKNOWN-ATTRIBUTES %v", to, bad.setter, got)
			}
		}
	}
	// UDP still works on the same ports.
	c := listenClient(t, "127.0.0.1")
	checkChangeRequests(t, s, c, localAddr(t, c))

	// Counters move after the reply is written: wait for all of them.
	st := waitStats(s, func(st Stats) bool { return st.Responses == 8+16 && st.ErrorResponses == 12 })
	if st.Responses != 8+16 || st.ErrorResponses != 12 || st.StreamConns != 4 || st.Malformed != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestTCPPipelined(t *testing.T) {
	s := mustStart(t, Config{Primary: loopP, TCP: true})
	sc := dialTCP(t, "127.0.0.1", s.TCPAddrs()[0])
	// Several requests in one write, and one split across writes.
	var reqs []*stun.Message
	var all []byte
	for range 5 {
		m := stun.MustBuild(stun.BindingRequest, stun.TransactionID, stun.Fingerprint)
		reqs = append(reqs, m)
		all = append(all, m.Raw...)
	}
	sc.write(all[:7])
	time.Sleep(10 * time.Millisecond) // let the server see a partial header
	sc.write(all[7:])
	for i, req := range reqs {
		m, err := sc.read()
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		if m.TransactionID != req.TransactionID || m.Type != stun.BindingSuccess {
			t.Errorf("response %d: %v", i, m)
		}
	}
}

func TestTLS(t *testing.T) {
	cfg, roots := selfSigned(t)
	tlsAddrs := []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}
	if ln, err := net.Listen("tcp6", "[::1]:0"); err == nil {
		ln.Close()
		tlsAddrs = append(tlsAddrs, netip.MustParseAddrPort("[::1]:0"))
	}
	s := mustStart(t, Config{Primary: loopP, Alternate: loopA, TLSConfig: cfg, TLSAddrs: tlsAddrs})
	if s.TCPAddrs() != nil {
		t.Errorf("TCPAddrs %v without Config.TCP", s.TCPAddrs())
	}
	got := s.TLSAddrs()
	if len(got) != len(tlsAddrs) {
		t.Fatalf("TLSAddrs %v", got)
	}
	for i, to := range got {
		if to.Addr() != tlsAddrs[i].Addr() || to.Port() == 0 {
			t.Fatalf("TLSAddrs %v, asked for %v", got, tlsAddrs)
		}
		sc := dialTLS(t, to, roots)
		m := sc.roundTrip(stun.Fingerprint)
		if m.Type != stun.BindingSuccess {
			t.Fatalf("%v: type %v", to, m.Type)
		}
		if got := getAddr(t, m, stun.AttrXORMappedAddress); got != sc.local() {
			t.Errorf("%v: XOR-MAPPED-ADDRESS %v, want %v", to, got, sc.local())
		}
		if got := getAddr(t, m, stun.AttrResponseOrigin); got != to {
			t.Errorf("%v: RESPONSE-ORIGIN %v", to, got)
		}
		if m.Contains(stun.AttrOtherAddress) {
			t.Errorf("%v: OTHER-ADDRESS over TLS", to)
		}
		m = sc.roundTrip(natstun.ChangeRequest{ChangeIP: true, ChangePort: true})
		if m.Type != stun.BindingError || errorCode(t, m) != stun.CodeUnknownAttribute {
			t.Errorf("%v: change request: type %v", to, m.Type)
		}
	}

	// A client that does not speak TLS gets no STUN reply.
	sc := dialTCP(t, "127.0.0.1", got[0])
	sc.write(stun.MustBuild(stun.BindingRequest, stun.TransactionID).Raw)
	sc.expectClosed("plain STUN to the TLS port")
}

// TestTLSUnspecified serves TLS on 0.0.0.0 restricted to loopback by the
// client: RESPONSE-ORIGIN is the connection's concrete local address.
func TestTLSUnspecified(t *testing.T) {
	cfg, roots := selfSigned(t)
	s := mustStart(t, Config{Primary: loopP, TLSConfig: cfg, TLSAddrs: []netip.AddrPort{netip.MustParseAddrPort("0.0.0.0:0")}})
	to := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), s.TLSAddrs()[0].Port())
	m := dialTLS(t, to, roots).roundTrip()
	if got := getAddr(t, m, stun.AttrResponseOrigin); got != to {
		t.Errorf("RESPONSE-ORIGIN %v, want %v", got, to)
	}
}

func TestTCPMalformed(t *testing.T) {
	s := mustStart(t, Config{Primary: loopP, TCP: true, MaxMessageSize: 512})
	to := s.TCPAddrs()[0]
	cases := map[string][]byte{
		"http":      []byte("GET / HTTP/1.1\r\nHost: example\r\n\r\n"),
		"too long":  stun.MustBuild(stun.BindingRequest, stun.TransactionID, stun.NewSoftware(string(make([]byte, 600)))).Raw,
		"response":  stun.MustBuild(stun.BindingSuccess, stun.TransactionID).Raw,
		"short":     stun.MustBuild(stun.BindingRequest, stun.TransactionID).Raw[:15],
		"fingerpri": corruptFingerprint(t),
	}
	for name, pkt := range cases {
		sc := dialTCP(t, "127.0.0.1", to)
		// A valid request first: the connection works until the bad one.
		if m := sc.roundTrip(); m.Type != stun.BindingSuccess {
			t.Fatalf("%s: type %v", name, m.Type)
		}
		sc.write(pkt)
		if name == "short" {
			// A partial message is not malformed until the peer gives up.
			if err := sc.c.(*net.TCPConn).CloseWrite(); err != nil {
				t.Fatal(err)
			}
		}
		sc.expectClosed(name)
	}
	if st := waitStats(s, func(st Stats) bool { return st.Malformed == uint64(len(cases)) && st.Responses == uint64(len(cases)) }); st.Malformed != uint64(len(cases)) || st.Responses != uint64(len(cases)) {
		t.Errorf("stats %+v", st)
	}
}

func corruptFingerprint(tb testing.TB) []byte {
	tb.Helper()
	raw := slices.Clone(stun.MustBuild(stun.BindingRequest, stun.TransactionID, stun.Fingerprint).Raw)
	raw[len(raw)-1] ^= 0xFF
	return raw
}

func TestTCPLimits(t *testing.T) {
	s := mustStart(t, Config{Primary: loopP, TCP: true, MaxConns: 3, MaxConnsPerSource: 2})
	to := s.TCPAddrs()[0]
	a1, a2 := dialTCP(t, "127.0.0.1", to), dialTCP(t, "127.0.0.1", to)
	a1.roundTrip()
	a2.roundTrip()
	// A third connection from the same source is closed at once.
	dialTCP(t, "127.0.0.1", to).expectClosed("third connection from one source")
	// Another source is served...
	b1 := dialTCP(t, "127.0.0.3", to)
	b1.roundTrip()
	// ...until the server-wide limit.
	dialTCP(t, "127.0.0.4", to).expectClosed("connection over MaxConns")
	if st := s.Stats(); st.StreamConns != 3 || st.StreamRefused != 2 {
		t.Errorf("stats %+v", st)
	}
	// Closing a connection makes room again.
	a1.c.Close()
	for range 100 {
		sc := dialTCP(t, "127.0.0.1", to)
		req := stun.MustBuild(stun.BindingRequest, stun.TransactionID)
		sc.write(req.Raw)
		if m, err := sc.read(); err == nil && m.TransactionID == req.TransactionID {
			return
		}
		time.Sleep(10 * time.Millisecond) // the server has not seen the close yet
	}
	t.Error("no room after a connection closed")
}

func TestTCPIdleTimeout(t *testing.T) {
	s := mustStart(t, Config{Primary: loopP, TCP: true, IdleTimeout: 50 * time.Millisecond})
	to := s.TCPAddrs()[0]
	dialTCP(t, "127.0.0.1", to).expectClosed("silent client")
	// A client trickling a message is closed too: the deadline covers the
	// whole message, not each read.
	sc := dialTCP(t, "127.0.0.1", to)
	req := stun.MustBuild(stun.BindingRequest, stun.TransactionID).Raw
	for i := range len(req) - 1 {
		if _, err := sc.c.Write(req[i : i+1]); err != nil {
			break // closed already
		}
		time.Sleep(5 * time.Millisecond)
	}
	sc.expectClosed("trickling client")

	// A TLS client that never finishes the handshake is closed.
	cfg, _ := selfSigned(t)
	s2 := mustStart(t, Config{Primary: loopP, TLSConfig: cfg, TLSAddrs: []netip.AddrPort{loopP}, IdleTimeout: 50 * time.Millisecond})
	dialTCP(t, "127.0.0.1", s2.TLSAddrs()[0]).expectClosed("stalled TLS handshake")
}

func TestTCPIPv6(t *testing.T) {
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skip("no IPv6 loopback")
	}
	ln.Close()
	s := mustStart(t, Config{Primary: netip.MustParseAddrPort("[::1]:0"), TCP: true})
	sc := dialTCP(t, "::1", s.TCPAddrs()[0])
	m := sc.roundTrip()
	if got := getAddr(t, m, stun.AttrXORMappedAddress); got != sc.local() {
		t.Errorf("XOR-MAPPED-ADDRESS %v, want %v", got, sc.local())
	}
	if m.Contains(stun.AttrOtherAddress) {
		t.Error("OTHER-ADDRESS in single-address mode")
	}
}

func TestTCPClose(t *testing.T) {
	cfg, roots := selfSigned(t)
	s, err := Start(context.Background(), Config{Primary: loopP, Alternate: loopA, TCP: true, TLSConfig: cfg, TLSAddrs: []netip.AddrPort{loopP}})
	if err != nil {
		t.Fatal(err)
	}
	tcp := dialTCP(t, "127.0.0.1", s.TCPAddrs()[0])
	tcp.roundTrip()
	tl := dialTLS(t, s.TLSAddrs()[0], roots)
	tl.roundTrip()
	if err := s.Close(); err != nil { // waits for the connection goroutines
		t.Fatal(err)
	}
	tcp.expectClosed("TCP after Close")
	tl.expectClosed("TLS after Close")
	for _, ap := range append(s.TCPAddrs(), s.TLSAddrs()...) {
		ln, err := net.Listen("tcp4", ap.String())
		if err != nil {
			t.Errorf("%v still bound: %v", ap, err)
			continue
		}
		ln.Close()
	}
}

func TestStreamStartErrors(t *testing.T) {
	cfg, _ := selfSigned(t)
	for name, c := range map[string]Config{
		"tls addrs without config": {Primary: loopP, TLSAddrs: []netip.AddrPort{loopP}},
		"tls config without addrs": {Primary: loopP, TLSConfig: cfg},
		"tls config without cert":  {Primary: loopP, TLSConfig: &tls.Config{}, TLSAddrs: []netip.AddrPort{loopP}},
		"message size too small":   {Primary: loopP, TCP: true, MaxMessageSize: 10},
		"message size too large":   {Primary: loopP, TCP: true, MaxMessageSize: 70000},
		"negative idle timeout":    {Primary: loopP, TCP: true, IdleTimeout: -1},
		"negative max conns":       {Primary: loopP, TCP: true, MaxConns: -1},
		"tls not my address":       {Primary: loopP, TLSConfig: cfg, TLSAddrs: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:0")}},
	} {
		if s, err := Start(context.Background(), c); err == nil {
			_ = s.Close()
			t.Errorf("%s: no error", name)
		}
	}
	// A TCP port taken on a fixed primary port is an error.
	busy, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	if s, err := Start(context.Background(), Config{Primary: natstun.AddrPortOf(busy.Addr()), TCP: true}); err == nil {
		_ = s.Close()
		t.Error("busy TCP port: no error")
	}
}

func TestHandleStream(t *testing.T) {
	h := testHandler()
	origin := h.addrs[sockPA]
	pkt := mustBuild(t, stun.BindingRequest, stun.TransactionID, stun.Fingerprint)
	req, resp := new(stun.Message), new(stun.Message)
	if r := h.handleStream(pkt, testSource, sockPA, origin, req, resp); r.act != actSuccess {
		t.Fatalf("act %v", r.act)
	}
	m := new(stun.Message)
	if err := stun.Decode(resp.Raw, m); err != nil {
		t.Fatal(err)
	}
	if got := getAddr(t, m, stun.AttrOtherAddress); got != h.addrs[sockAP] {
		t.Errorf("OTHER-ADDRESS %v", got)
	}
	// Outside the four addresses (TLS): no OTHER-ADDRESS, any origin.
	tlsOrigin := netip.MustParseAddrPort("192.0.2.30:443")
	if r := h.handleStream(pkt, testSource, -1, tlsOrigin, req, resp); r.act != actSuccess {
		t.Fatalf("act %v", r.act)
	}
	m = new(stun.Message)
	if err := stun.Decode(resp.Raw, m); err != nil {
		t.Fatal(err)
	}
	if m.Contains(stun.AttrOtherAddress) || getAddr(t, m, stun.AttrResponseOrigin) != tlsOrigin {
		t.Errorf("TLS response %v", m)
	}
	// IgnoreChangeRequest answers as over UDP.
	h.ignoreChange = true
	pkt = mustBuild(t, stun.BindingRequest, stun.TransactionID, natstun.ChangeRequest{ChangeIP: true})
	if r := h.handleStream(pkt, testSource, -1, tlsOrigin, req, resp); r.act != actSuccess {
		t.Errorf("ignoring change request: act %v", r.act)
	}
	if r := h.handleStream(pkt, testSource, 4, tlsOrigin, req, resp); r.act != actDrop {
		t.Errorf("bad socket index: act %v", r.act)
	}
}
