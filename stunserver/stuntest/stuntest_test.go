package stuntest

import (
	"crypto/tls"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	natstun "github.com/natcheck/natcheck/stun"
	"github.com/natcheck/natcheck/stunserver"
)

// exchange sends a Binding request with setters from a fresh loopback
// socket to to and returns the reply and where it came from.
func exchange(t *testing.T, to netip.AddrPort, setters ...stun.Setter) (*stun.Message, netip.AddrPort) {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := stun.MustBuild(append([]stun.Setter{stun.BindingRequest, stun.TransactionID}, setters...)...)
	if _, err := c.WriteToUDPAddrPort(req.Raw, to); err != nil {
		t.Fatal(err)
	}
	if err := c.SetReadDeadline(time.Now().Add(2 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err)
	}
	m := new(stun.Message)
	if err := stun.Decode(buf[:n], m); err != nil {
		t.Fatal(err)
	}
	if m.TransactionID != req.TransactionID {
		t.Fatal("wrong transaction ID")
	}
	return m, from
}

func TestStart(t *testing.T) {
	s := Start(t, stunserver.Config{})
	if s.Primary().Addr() != DefaultPrimary.Addr() || s.Alternate().Addr() != DefaultAlternate.Addr() {
		t.Fatalf("bound %v and %v", s.Primary(), s.Alternate())
	}
	m, from := exchange(t, s.Primary(), natstun.ChangeRequest{ChangeIP: true, ChangePort: true})
	if from != s.Alternate() {
		t.Errorf("reply from %v, want %v", from, s.Alternate())
	}
	var other stun.OtherAddress
	if err := other.GetFrom(m); err != nil || other.Port != int(s.Alternate().Port()) {
		t.Errorf("OTHER-ADDRESS %v, %v", other, err)
	}
}

func TestStartSingle(t *testing.T) {
	s := StartSingle(t, stunserver.Config{})
	if s.Alternate().IsValid() {
		t.Fatalf("alternate %v in single-address mode", s.Alternate())
	}
	m, _ := exchange(t, s.Primary(), natstun.ChangeRequest{ChangePort: true})
	var ec stun.ErrorCodeAttribute
	if err := ec.GetFrom(m); err != nil || ec.Code != stun.CodeUnknownAttribute {
		t.Errorf("ERROR-CODE %v, %v; want 420", ec, err)
	}
}

func TestTLSAndTCP(t *testing.T) {
	cfg, roots := TLSConfig(t)
	s := Start(t, stunserver.Config{TCP: true, TLSConfig: cfg, TLSAddrs: []netip.AddrPort{DefaultPrimary}})
	if len(s.TCPAddrs()) != 4 || len(s.TLSAddrs()) != 1 {
		t.Fatalf("TCPAddrs %v, TLSAddrs %v", s.TCPAddrs(), s.TLSAddrs())
	}
	for _, dial := range []func() (net.Conn, error){
		func() (net.Conn, error) { return net.DialTimeout("tcp", s.TCPAddrs()[0].String(), 2*time.Second) },
		func() (net.Conn, error) {
			return tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", s.TLSAddrs()[0].String(), &tls.Config{RootCAs: roots})
		},
	} {
		c, err := dial()
		if err != nil {
			t.Fatal(err)
		}
		req := stun.MustBuild(stun.BindingRequest, stun.TransactionID)
		if err := c.SetDeadline(time.Now().Add(2 * time.Second)); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(req.Raw); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1500)
		n, err := c.Read(buf)
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		m := new(stun.Message)
		if err := stun.Decode(buf[:n], m); err != nil || m.TransactionID != req.TransactionID || m.Type != stun.BindingSuccess {
			t.Fatalf("reply %v (%v)", m, err)
		}
	}
}
