package stunserver

import (
	"net"
	"net/netip"
	"testing"

	"github.com/pion/stun/v4"
	"github.com/pion/transport/v5/vnet"

	"github.com/natcheck/natcheck/internal/vnettest"
	natstun "github.com/natcheck/natcheck/stun"
)

// vnetLab is a virtual Internet: a WAN router holding a server host with
// two static IPs, a client directly on the WAN and clients behind two NATs.
type vnetLab struct {
	server                *vnet.Net
	public, eif, apdf     *vnet.Net // clients
	eifExtIP, apdfExtIP   netip.Addr
	publicIP              netip.Addr
	serverIP, serverAltIP netip.Addr
}

func newVnetLab(t *testing.T) *vnetLab {
	t.Helper()
	l := &vnetLab{
		serverIP:    netip.MustParseAddr("1.2.3.4"),
		serverAltIP: netip.MustParseAddr("1.2.3.5"),
		publicIP:    netip.MustParseAddr("5.6.7.8"),
		eifExtIP:    netip.MustParseAddr("27.0.0.1"),
		apdfExtIP:   netip.MustParseAddr("28.0.0.1"),
	}
	wan := vnettest.NewWAN(t)
	l.server = wan.Host(l.serverIP.String(), l.serverAltIP.String())
	l.public = wan.Host(l.publicIP.String())
	eim := func(filtering vnet.EndpointDependencyType) *vnet.NATType {
		return &vnet.NATType{MappingBehavior: vnet.EndpointIndependent, FilteringBehavior: filtering}
	}
	l.eif = wan.NAT("10.0.0.0/24", l.eifExtIP.String(), eim(vnet.EndpointIndependent)).Host("10.0.0.2")
	l.apdf = wan.NAT("10.0.1.0/24", l.apdfExtIP.String(), eim(vnet.EndpointAddrPortDependent)).Host("10.0.1.2")
	wan.Start()
	return l
}

func vnetClient(t *testing.T, n *vnet.Net, ip string) packetConn {
	t.Helper()
	c, err := n.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestVnet(t *testing.T) {
	l := newVnetLab(t)
	s := mustStart(t, Config{
		Net:       l.server,
		Primary:   netip.AddrPortFrom(l.serverIP, 0),
		Alternate: netip.AddrPortFrom(l.serverAltIP, 0),
	})
	if s.Primary().Addr() != l.serverIP || s.Alternate().Addr() != l.serverAltIP {
		t.Fatalf("bound %v and %v", s.Primary(), s.Alternate())
	}

	t.Run("public client", func(t *testing.T) {
		c := vnetClient(t, l.public, l.publicIP.String())
		checkChangeRequests(t, s, c, localAddr(t, c))
	})

	t.Run("RESPONSE-PORT", func(t *testing.T) {
		c1 := vnetClient(t, l.public, l.publicIP.String())
		c2 := vnetClient(t, l.public, l.publicIP.String())
		req := send(t, c1, s.Primary(), natstun.ResponsePort(localAddr(t, c2).Port()), natstun.ChangeRequest{ChangePort: true})
		m, from := mustReceive(t, c2, req)
		if from != s.Addrs()[sockPA] {
			t.Errorf("reply from %v, want %v", from, s.Addrs()[sockPA])
		}
		if got := getAddr(t, m, stun.AttrXORMappedAddress); got != localAddr(t, c1) {
			t.Errorf("XOR-MAPPED-ADDRESS %v, want %v", got, localAddr(t, c1))
		}
	})

	t.Run("behind EIM-EIF NAT", func(t *testing.T) {
		c := vnetClient(t, l.eif, "10.0.0.2")
		// Learn the mapping first; EIM keeps it for every destination.
		m, _ := mustReceive(t, c, send(t, c, s.Primary()))
		mapped := getAddr(t, m, stun.AttrXORMappedAddress)
		if mapped.Addr() != l.eifExtIP {
			t.Fatalf("XOR-MAPPED-ADDRESS %v, want the NAT's address %v", mapped, l.eifExtIP)
		}
		checkChangeRequests(t, s, c, mapped)
	})

	t.Run("behind EIM-APDF NAT", func(t *testing.T) {
		// Only the reply from the socket the request went to passes an
		// address-and-port-dependent filter: proof that the other
		// replies really leave from other sockets.
		c := vnetClient(t, l.apdf, "10.0.1.2")
		for _, tc := range []struct {
			change natstun.ChangeRequest
			pass   bool
		}{
			{natstun.ChangeRequest{}, true},
			{natstun.ChangeRequest{ChangePort: true}, false},
			{natstun.ChangeRequest{ChangeIP: true}, false},
			{natstun.ChangeRequest{ChangeIP: true, ChangePort: true}, false},
		} {
			req := send(t, c, s.Primary(), tc.change)
			timeout := replyTimeout
			if !tc.pass {
				timeout = silenceTimeout
			}
			if _, _, ok := receive(t, c, req, timeout); ok != tc.pass {
				t.Errorf("%v: reply received %v, want %v", tc.change, ok, tc.pass)
			}
		}
	})
}

func TestVnetSingleAddress(t *testing.T) {
	l := newVnetLab(t)
	s := mustStart(t, Config{Net: l.server, Primary: netip.AddrPortFrom(l.serverAltIP, 3478)})
	if s.Primary() != netip.AddrPortFrom(l.serverAltIP, 3478) {
		t.Fatalf("bound %v", s.Primary())
	}
	c := vnetClient(t, l.public, l.publicIP.String())
	m, from := mustReceive(t, c, send(t, c, s.Primary()))
	if from != s.Primary() || m.Contains(stun.AttrOtherAddress) {
		t.Errorf("reply from %v, OTHER-ADDRESS present %v", from, m.Contains(stun.AttrOtherAddress))
	}
	m, _ = mustReceive(t, c, send(t, c, s.Primary(), natstun.ChangeRequest{ChangeIP: true}))
	if errorCode(t, m) != 420 {
		t.Errorf("change request: code %d, want 420", errorCode(t, m))
	}
}
