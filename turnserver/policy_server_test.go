package turnserver_test

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/turn/v5"

	"github.com/natcheck/natcheck/internal/vnettest"
	"github.com/natcheck/natcheck/turnserver"
)

// turnClient allocates over UDP conn on server as alice and returns the
// client and its relayed connection.
func turnClient(t *testing.T, conn net.PacketConn, server string) (*turn.Client, net.PacketConn) {
	t.Helper()
	cfg := &turn.ClientConfig{
		STUNServerAddr: server, TURNServerAddr: server, Conn: conn,
		Username: "alice", Password: password, RTO: 200 * time.Millisecond,
	}
	c, err := turn.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	relay, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { relay.Close() })
	return c, relay
}

func udpAddr(s string) *net.UDPAddr { return net.UDPAddrFromAddrPort(netip.MustParseAddrPort(s)) }

// TestPeerPolicyAllocation: through real allocations, CreatePermission and
// Send to NAT64 forms of loopback and private addresses and to the
// server's own (relay) addresses are refused, while ordinary public peers
// are allowed (no packet is sent to them: a permission alone sends
// nothing). pion/turn refuses a peer of the other family than the relay
// (443) before the policy, so IPv6 peers are tried on an IPv6 allocation.
func TestPeerPolicyAllocation(t *testing.T) {
	loopback6 := netip.MustParseAddrPort("[::1]:0")
	s := start(t, turnserver.Config{
		UDP: []netip.AddrPort{loopback, loopback6},
		// Public relay addresses, as behind a 1:1 NAT: the server's own.
		Relays: []turnserver.Relay{
			{Public: netip.MustParseAddr("1.2.3.4"), Local: loopback.Addr()},
			{Public: netip.MustParseAddr("2606:4700::5"), Local: loopback6.Addr()},
		},
	})
	clients := map[bool]*turn.Client{}
	relays := map[bool]net.PacketConn{}
	for i, local := range []string{"127.0.0.1:0", "[::1]:0"} {
		conn, err := net.ListenPacket("udp", local)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		clients[i == 0], relays[i == 0] = turnClient(t, conn, s.UDPAddrs()[i].String())
	}
	for _, tc := range []struct {
		peer    string
		allowed bool
	}{
		{"1.2.3.4:9", false},          // the server's relay address
		{"[::ffff:1.2.3.4]:9", false}, // the same, mapped
		{"127.0.0.1:9", false},        // loopback, the listener's address
		{"10.0.0.1:9", false},         // private
		{"1.2.3.5:9", true},           // a public peer

		{"[64:ff9b::7f00:1]:9", false},  // 127.0.0.1 through NAT64
		{"[64:ff9b::a00:1]:9", false},   // 10.0.0.1 through NAT64
		{"[64:ff9b::102:304]:9", false}, // the relay address 1.2.3.4 through NAT64
		{"[2606:4700::5]:9", false},     // the server's IPv6 relay address
		{"[::1]:9", false},              // loopback
		{"[2001:db8::1]:9", false},      // documentation
		{"[fec0::1]:9", false},          // site-local
		{"[64:ff9b::102:305]:9", true},  // a public peer through NAT64
		{"[2606:4700::1111]:9", true},   // a public IPv6 peer
	} {
		peer := udpAddr(tc.peer)
		v4 := peer.AddrPort().Addr().Unmap().Is4()
		before := s.Stats().PeersDenied
		err := clients[v4].CreatePermission(peer)
		if got := err == nil; got != tc.allowed {
			t.Errorf("CreatePermission %s: %v, want allowed %v", tc.peer, err, tc.allowed)
		}
		if denied := s.Stats().PeersDenied - before; (denied == 0) != tc.allowed {
			t.Errorf("CreatePermission %s: %d peers denied", tc.peer, denied)
		}
	}
	// Send creates the permission first, and fails with it.
	for _, peer := range []string{"[64:ff9b::7f00:1]:9", "[2606:4700::5]:9", "1.2.3.4:9"} {
		p := udpAddr(peer)
		if _, err := relays[p.AddrPort().Addr().Unmap().Is4()].WriteTo([]byte("x"), p); err == nil {
			t.Errorf("Send to %s: no error", peer)
		}
	}
}

// TestPeerPolicyInterfaces: the addresses of the host's interfaces are the
// server's own, also those no listener or relay is on. It runs in a pion
// vnet, whose server host has a second address.
func TestPeerPolicyInterfaces(t *testing.T) {
	wan := vnettest.NewWAN(t)
	serverNet := wan.Host("5.5.5.5", "5.5.5.6")
	clientNet := wan.Host("6.6.6.6")
	wan.Start()
	s := start(t, turnserver.Config{Net: serverNet, UDP: []netip.AddrPort{netip.MustParseAddrPort("5.5.5.5:3478")}})
	conn, err := clientNet.ListenPacket("udp4", "6.6.6.6:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c, _ := turnClient(t, conn, s.UDPAddrs()[0].String())
	for peer, allowed := range map[string]bool{
		"5.5.5.6:9": false, "5.5.5.5:9": false, "[64:ff9b::505:506]:9": false,
		"6.6.6.6:9": true, "5.5.5.7:9": true,
	} {
		err := c.CreatePermission(udpAddr(peer))
		if got := err == nil; got != allowed {
			t.Errorf("CreatePermission %s: %v, want allowed %v", peer, err, allowed)
		}
	}
}
