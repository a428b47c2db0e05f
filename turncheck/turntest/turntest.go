// Package turntest starts TURN servers on loopback for tests: an in-process pion/turn server over UDP, TCP and TLS, and a real coturn.
package turntest

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/logging"
	"github.com/pion/turn/v5"

	"github.com/natcheck/natcheck/internal/testcert"
)

// Credentials every test server accepts.
const (
	Realm    = "natcheck.test"
	User     = "natcheck"
	Password = "pw-Do-Not-Print-7f3c1a"
	Secret   = "secret-Do-Not-Print-9b2e4d"
)

// Options change how a pion server misbehaves.
type Options struct {
	// DropData makes relayed addresses swallow every packet: allocations
	// and permissions succeed, but no data passes.
	DropData bool
	// DenyPeers refuses every permission (403 Forbidden).
	DenyPeers bool
	// Quota refuses every allocation (486 Allocation Quota Reached).
	Quota bool
	// NoCapacity fails every relay allocation (508 Insufficient Capacity).
	NoCapacity bool
	// PeersCutOff puts relayed addresses on 127.0.0.2 and drops their
	// traffic with 127.0.0.1, where clients' peer sockets are: as if UDP
	// between here and the relay were blocked. Relayed addresses still
	// talk to each other.
	PeersCutOff bool
}

// Server is an in-process pion/turn server on 127.0.0.1 with a UDP, a TCP
// and a TLS listener. It accepts User/Password (long-term credentials) and
// REST credentials made from Secret.
type Server struct {
	UDP, TCP, TLS netip.AddrPort
	// CAFile holds the PEM certificate of the CA that signed the TLS
	// certificate (names "localhost" and 127.0.0.1); CAPool holds it too.
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

// NewServer starts a pion/turn server and stops it when the test ends.
func NewServer(tb testing.TB, o Options) *Server {
	tb.Helper()
	ca := NewCA(tb)
	udp, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tcp, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tlsL, err := tls.Listen("tcp4", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{ca.Cert}})
	if err != nil {
		tb.Fatal(err)
	}
	var gen turn.RelayAddressGenerator = &turn.RelayAddressGeneratorStatic{RelayAddress: net.IPv4(127, 0, 0, 1), Address: "127.0.0.1"}
	if o.DropData {
		gen = dropGenerator{gen}
	}
	if o.PeersCutOff {
		gen = cutOffGenerator{&turn.RelayAddressGeneratorStatic{RelayAddress: net.IPv4(127, 0, 0, 2), Address: "127.0.0.2"}}
	}
	if o.NoCapacity {
		gen = fullGenerator{gen}
	}
	var perm turn.PermissionHandler
	if o.DenyPeers {
		perm = func(net.Addr, net.IP) bool { return false }
	}
	cfg := turn.ServerConfig{
		Realm:         Realm,
		AuthHandler:   authHandler,
		LoggerFactory: quiet(),
		PacketConnConfigs: []turn.PacketConnConfig{
			{PacketConn: udp, RelayAddressGenerator: gen, PermissionHandler: perm},
		},
		ListenerConfigs: []turn.ListenerConfig{
			{Listener: tcp, RelayAddressGenerator: gen, PermissionHandler: perm},
			{Listener: tlsL, RelayAddressGenerator: gen, PermissionHandler: perm},
		},
	}
	if o.Quota {
		cfg.QuotaHandler = func(string, string, net.Addr) bool { return false }
	}
	srv, err := turn.NewServer(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { srv.Close() })
	return &Server{
		UDP:    udp.LocalAddr().(*net.UDPAddr).AddrPort(),
		TCP:    tcp.Addr().(*net.TCPAddr).AddrPort(),
		TLS:    tlsL.Addr().(*net.TCPAddr).AddrPort(),
		CAFile: ca.File,
		CAPool: ca.Pool,
	}
}

func quiet() logging.LoggerFactory {
	f := logging.NewDefaultLoggerFactory()
	f.Writer = discard{}
	f.DefaultLogLevel = logging.LogLevelDisabled
	return f
}

type discard struct{}

func (discard) Write(b []byte) (int, error) { return len(b), nil }

// authHandler accepts User with Password, and REST user names
// "<expiry>:<user>" with base64(HMAC-SHA1(Secret, name)) while unexpired.
func authHandler(ra *turn.RequestAttributes) (string, []byte, bool) {
	if ra.Username == User {
		return User, turn.GenerateAuthKey(User, ra.Realm, Password), true
	}
	exp, _, ok := strings.Cut(ra.Username, ":")
	if !ok {
		exp = ra.Username
	}
	t, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || time.Unix(t, 0).Before(time.Now()) {
		return "", nil, false
	}
	return ra.Username, turn.GenerateAuthKey(ra.Username, ra.Realm, RESTPassword(Secret, ra.Username)), true
}

// RESTPassword is base64(HMAC-SHA1(secret, user)).
func RESTPassword(secret, user string) string {
	m := hmac.New(sha1.New, []byte(secret))
	m.Write([]byte(user))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// dropGenerator hands out relayed sockets that pass no data.
type dropGenerator struct{ turn.RelayAddressGenerator }

func (g dropGenerator) AllocatePacketConn(c turn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	pc, addr, err := g.RelayAddressGenerator.AllocatePacketConn(c)
	if err != nil {
		return nil, nil, err
	}
	return dropConn{pc}, addr, nil
}

type dropConn struct{ net.PacketConn }

// cutOffGenerator hands out relayed sockets that pass no data to or from
// 127.0.0.1.
type cutOffGenerator struct{ turn.RelayAddressGenerator }

func (g cutOffGenerator) AllocatePacketConn(c turn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	pc, addr, err := g.RelayAddressGenerator.AllocatePacketConn(c)
	if err != nil {
		return nil, nil, err
	}
	return cutOffConn{pc}, addr, nil
}

var cutOff = net.IPv4(127, 0, 0, 1)

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

// fullGenerator has no relay ports left.
type fullGenerator struct{ turn.RelayAddressGenerator }

func (fullGenerator) AllocatePacketConn(turn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	return nil, nil, errors.New("no relay port left")
}

func (c dropConn) WriteTo(b []byte, _ net.Addr) (int, error) { return len(b), nil }

func (c dropConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		if _, _, err := c.PacketConn.ReadFrom(b); err != nil {
			return 0, nil, err
		}
	}
}

// CA is a test certificate authority and a server certificate it signed
// for "localhost" and 127.0.0.1.
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
	c, err := root.Issue("localhost", "localhost", "127.0.0.1")
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

// ClosedPort returns a 127.0.0.1 port where nothing listens (UDP and TCP),
// as far as one can tell.
func ClosedPort(tb testing.TB) netip.AddrPort {
	tb.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
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
