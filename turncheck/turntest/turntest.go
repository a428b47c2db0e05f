// Package turntest starts TURN servers on loopback for tests: natcheck's
// own turnserver, in process, over UDP, TCP and TLS, and a real coturn.
package turntest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"
	"github.com/pion/turn/v5"

	"github.com/natcheck/natcheck/internal/testcert"
	"github.com/natcheck/natcheck/turnserver"
)

// Credentials every test server accepts.
const (
	Realm    = "natcheck.test"
	User     = "natcheck"
	Password = "pw-Do-Not-Print-7f3c1a"
	Secret   = "secret-Do-Not-Print-9b2e4d"
)

// Options change how a server misbehaves.
type Options struct {
	// DropData makes relayed addresses swallow every packet: allocations
	// and permissions succeed, but no data passes.
	DropData bool
	// DenyPeers refuses every permission (403 Forbidden).
	DenyPeers bool
	// Quota refuses every allocation (486 Allocation Quota Reached): the
	// server allows one at a time, and NewServer holds it.
	Quota bool
	// NoCapacity fails every relay allocation (508 Insufficient Capacity).
	NoCapacity bool
	// PeersCutOff puts relayed addresses on 127.0.0.2 and drops their
	// traffic with 127.0.0.1, where clients' peer sockets are: as if UDP
	// between here and the relay were blocked. Relayed addresses still
	// talk to each other.
	PeersCutOff bool
	// IPv6 puts the listeners on [::1]: allocations over IPv6, with
	// relays on ::1 (and peers on ::1 allowed). The test is skipped when
	// this host has no ::1.
	IPv6 bool
	// BothFamilies gives the listeners relays of both families, 127.0.0.1
	// and ::1, so that a client can ask for the other family than its
	// transport's (RFC 6156 REQUESTED-ADDRESS-FAMILY).
	BothFamilies bool
}

// SkipWithoutIPv6 skips the test, with one line, when this host cannot
// bind ::1.
func SkipWithoutIPv6(tb testing.TB) {
	tb.Helper()
	pc, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		tb.Skipf("no IPv6 loopback (::1) on this host: %v", err)
	}
	pc.Close()
}

// Server is a turnserver.Server on 127.0.0.1 (or [::1]) with a UDP, a TCP
// and a TLS listener. It accepts User/Password (long-term credentials) and
// REST credentials made from Secret, and relays to peers on 127.0.0.0/8
// and ::1.
type Server struct {
	UDP, TCP, TLS netip.AddrPort
	// CAFile holds the PEM certificate of the CA that signed the TLS
	// certificate (names "localhost", 127.0.0.1 and ::1); CAPool holds it too.
	CAFile string
	CAPool *x509.CertPool
}

// URLs returns turn: URLs for UDP, TCP and TLS, in that order.
func (s *Server) URLs() []string {
	return []string{
		"turn:" + s.UDP.String(),
		"turn:" + s.TCP.String() + "?transport=tcp",
		"turns:" + s.TLS.String(),
	}
}

// NewServer starts a turnserver.Server and stops it when the test ends.
func NewServer(tb testing.TB, o Options) *Server {
	tb.Helper()
	ca := NewCA(tb)
	std, err := stdnet.NewNet()
	if err != nil {
		tb.Fatal(err)
	}
	loopback := netip.MustParseAddrPort("127.0.0.1:0")
	if o.IPv6 || o.BothFamilies {
		SkipWithoutIPv6(tb)
	}
	if o.IPv6 {
		loopback = netip.MustParseAddrPort("[::1]:0")
	}
	cfg := turnserver.Config{
		Net: relayNet{std, o},
		UDP: []netip.AddrPort{loopback}, TCP: []netip.AddrPort{loopback}, TLS: []netip.AddrPort{loopback},
		TLSConfig:      &tls.Config{Certificates: []tls.Certificate{ca.Cert}},
		Realm:          Realm,
		Users:          map[string][]byte{User: turn.GenerateAuthKey(User, Realm, Password)},
		Secret:         Secret,
		AllowPeers:     []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")},
		MaxAllocations: 10000,
		UserQuota:      10000,
	}
	if o.DenyPeers {
		cfg.AllowPeers = nil
		cfg.DenyPeers = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}
	}
	if o.PeersCutOff {
		cfg.Relays = []turnserver.Relay{{Public: cutOff2, Local: cutOff2}}
	}
	if o.BothFamilies {
		cfg.Relays = append(cfg.Relays, turnserver.Relay{Public: netip.MustParseAddr("::1")})
		if !o.PeersCutOff {
			cfg.Relays = append(cfg.Relays, turnserver.Relay{Public: netip.MustParseAddr("127.0.0.1")})
		}
	}
	if o.Quota {
		cfg.MaxAllocations = 1
	}
	srv, err := turnserver.Start(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { srv.Close() })
	s := &Server{
		UDP:    srv.UDPAddrs()[0],
		TCP:    srv.TCPAddrs()[0],
		TLS:    srv.TLSAddrs()[0],
		CAFile: ca.File,
		CAPool: ca.Pool,
	}
	if o.Quota {
		if _, err := Allocate(tb, s.UDP, User, Password); err != nil {
			tb.Fatalf("allocation to fill the quota: %v", err)
		}
	}
	return s
}

// Allocate allocates a relayed address on the TURN server at server over
// UDP from 127.0.0.1, as AllocateOn does.
func Allocate(tb testing.TB, server netip.AddrPort, user, password string) (net.PacketConn, error) {
	tb.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return AllocateOn(tb, conn, server.String(), user, password)
}

// AllocateOn allocates a relayed address on the TURN server at server
// (IP:PORT) over conn (a UDP socket, or a TCP or TLS connection wrapped in
// turn.NewSTUNConn) with long-term credentials, and holds it until the test
// ends. It returns the relayed connection, or the server's refusal.
func AllocateOn(tb testing.TB, conn net.PacketConn, server, user, password string) (net.PacketConn, error) {
	tb.Helper()
	c, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: server, TURNServerAddr: server, Conn: conn,
		Username: user, Password: password, RTO: 200 * time.Millisecond,
	})
	if err != nil {
		tb.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Close)
	relay, err := c.Allocate()
	if err != nil {
		return nil, err
	}
	tb.Cleanup(func() { relay.Close() })
	return relay, nil
}

// relayNet is the host's network, except that the relay sockets it opens
// misbehave as its Options say. Relay sockets are told apart by their
// port: the server's own listeners ask for port 0, relays for one of the
// relay port range.
type relayNet struct {
	transport.Net
	o Options
}

func (n relayNet) ListenPacket(network, address string) (net.PacketConn, error) {
	if _, port, _ := net.SplitHostPort(address); port == "0" {
		return n.Net.ListenPacket(network, address)
	}
	if n.o.NoCapacity {
		return nil, errors.New("no relay port left")
	}
	pc, err := n.Net.ListenPacket(network, address)
	switch {
	case err != nil:
		return nil, err
	case n.o.DropData:
		return dropConn{pc}, nil
	case n.o.PeersCutOff:
		return cutOffConn{pc}, nil
	}
	return pc, nil
}

// dropConn is a relayed socket that passes no data.
type dropConn struct{ net.PacketConn }

func (c dropConn) WriteTo(b []byte, _ net.Addr) (int, error) { return len(b), nil }

func (c dropConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		if _, _, err := c.PacketConn.ReadFrom(b); err != nil {
			return 0, nil, err
		}
	}
}

// Addresses of PeersCutOff: relays live on cutOff2 and pass nothing to or
// from cutOff.
var (
	cutOff  = net.IPv4(127, 0, 0, 1)
	cutOff2 = netip.MustParseAddr("127.0.0.2")
)

// cutOffConn is a relayed socket that passes no data to or from
// 127.0.0.1.
type cutOffConn struct{ net.PacketConn }

func (c cutOffConn) WriteTo(b []byte, to net.Addr) (int, error) {
	if ua, ok := to.(*net.UDPAddr); ok && ua.IP.Equal(cutOff) {
		return len(b), nil
	}
	return c.PacketConn.WriteTo(b, to)
}

func (c cutOffConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, from, err := c.PacketConn.ReadFrom(b)
		if err != nil {
			return n, from, err
		}
		if ua, ok := from.(*net.UDPAddr); !ok || !ua.IP.Equal(cutOff) {
			return n, from, nil
		}
	}
}

// CA is a test certificate authority and a server certificate it signed
// for "localhost", 127.0.0.1 and ::1.
type CA struct {
	File     string // CA certificate, PEM
	Pool     *x509.CertPool
	Cert     tls.Certificate
	CertFile string // server certificate, PEM
	KeyFile  string // server key, PEM
}

// NewCA makes a CA and a server certificate in a temporary directory.
func NewCA(tb testing.TB) *CA {
	tb.Helper()
	dir := tb.TempDir()
	must := func(err error) {
		if err != nil {
			tb.Fatal(err)
		}
	}
	root, err := testcert.NewCA("natcheck test CA")
	must(err)
	c, err := root.Issue("localhost", "localhost", "127.0.0.1", "::1")
	must(err)
	keyPEM, err := c.KeyPEM()
	must(err)
	ca := &CA{File: filepath.Join(dir, "ca.pem"), CertFile: filepath.Join(dir, "cert.pem"), KeyFile: filepath.Join(dir, "key.pem"), Pool: root.Pool(), Cert: c.TLS()}
	must(os.WriteFile(ca.File, root.CertPEM(), 0o600))
	must(os.WriteFile(ca.CertFile, c.CertPEM(), 0o600))
	must(os.WriteFile(ca.KeyFile, keyPEM, 0o600))
	return ca
}

// Blackhole is a UDP socket on 127.0.0.1 that reads and never answers, and
// a TCP listener that accepts and never answers.
func Blackhole(tb testing.TB) (udp, tcp netip.AddrPort) {
	tb.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		buf := make([]byte, 1500)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			select {
			case <-done:
				c.Close()
			default:
				conns = append(conns, c)
			}
		}
	}()
	tb.Cleanup(func() {
		close(done)
		pc.Close()
		l.Close()
	})
	return pc.LocalAddr().(*net.UDPAddr).AddrPort(), l.Addr().(*net.TCPAddr).AddrPort()
}

// closedAddr is a loopback address no server of the tests listens on: a
// port closed there stays closed while parallel tests (and coturn) take
// ports on 127.0.0.1, as one closed on 127.0.0.1 did not.
const closedAddr = "127.0.13.37"

// ClosedPort returns a port on a loopback address of its own where nothing
// listens (UDP and TCP), as far as one can tell: only a socket bound to
// the wildcard address on the same port could answer there.
func ClosedPort(tb testing.TB) netip.AddrPort {
	tb.Helper()
	l, err := net.Listen("tcp4", closedAddr+":0")
	if err != nil {
		tb.Fatal(err)
	}
	a := l.Addr().(*net.TCPAddr).AddrPort()
	l.Close()
	return a
}

// FreePort returns a port free for both UDP and TCP on 127.0.0.1, with its
// neighbour port+1 free too (coturn opens the alternate port beside it).
func FreePort(tb testing.TB) int {
	tb.Helper()
	for range 50 {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if p >= 65000 {
			continue
		}
		ok := true
		for _, q := range []int{p, p + 1} {
			u, err := net.ListenPacket("udp4", fmt.Sprintf("127.0.0.1:%d", q))
			if err != nil {
				ok = false
				break
			}
			u.Close()
			if q != p {
				t, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", q))
				if err != nil {
					ok = false
					break
				}
				t.Close()
			}
		}
		if ok {
			return p
		}
	}
	tb.Fatal("no free port pair on 127.0.0.1")
	return 0
}
