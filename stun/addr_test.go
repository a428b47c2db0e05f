package stun

import (
	"net"
	"net/netip"
	"testing"
)

// otherAddr is a net.Addr that is neither UDP nor TCP.
type otherAddr string

func (otherAddr) Network() string  { return "other" }
func (a otherAddr) String() string { return string(a) }

func TestAddrPortOf(t *testing.T) {
	v4 := netip.MustParseAddrPort("192.0.2.1:3478")
	v6 := netip.MustParseAddrPort("[2001:db8::1]:443")
	var nilUDP *net.UDPAddr
	for _, c := range []struct {
		name string
		a    net.Addr
		want netip.AddrPort
	}{
		{"udp4", net.UDPAddrFromAddrPort(v4), v4},
		{"udp4 in 16 bytes", &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 3478}, v4},
		{"udp mapped", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("[::ffff:192.0.2.1]:3478")), v4},
		{"tcp6", net.TCPAddrFromAddrPort(v6), v6},
		{"tcp mapped", net.TCPAddrFromAddrPort(netip.MustParseAddrPort("[::ffff:192.0.2.1]:3478")), v4},
		{"udp with zone", &net.UDPAddr{IP: net.ParseIP("fe80::1"), Port: 1, Zone: "eth0"}, netip.MustParseAddrPort("[fe80::1%eth0]:1")},
		{"other type", otherAddr("[::ffff:192.0.2.1]:3478"), v4},
		{"other type, not IP:port", otherAddr("pipe"), netip.AddrPort{}},
		{"nil", nil, netip.AddrPort{}},
		{"nil *UDPAddr", nilUDP, netip.AddrPort{}},
	} {
		if got := AddrPortOf(c.a); got != c.want {
			t.Errorf("%s: AddrPortOf = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestAddrPortFromIP(t *testing.T) {
	for _, c := range []struct {
		ip   net.IP
		port int
		want netip.AddrPort
	}{
		{net.IPv4(198, 51, 100, 1), 4000, netip.MustParseAddrPort("198.51.100.1:4000")},
		{net.IP{198, 51, 100, 1}, 0, netip.MustParseAddrPort("198.51.100.1:0")},
		{net.ParseIP("2001:db8::2"), 65535, netip.MustParseAddrPort("[2001:db8::2]:65535")},
		{nil, 4000, netip.AddrPort{}},
		{net.IP{1, 2, 3}, 4000, netip.AddrPort{}},
		{net.IPv4(198, 51, 100, 1), 65536, netip.AddrPort{}},
		{net.IPv4(198, 51, 100, 1), -1, netip.AddrPort{}},
	} {
		if got := AddrPortFromIP(c.ip, c.port); got != c.want {
			t.Errorf("AddrPortFromIP(%v, %d) = %v, want %v", c.ip, c.port, got, c.want)
		}
	}
}

func TestUnmapAddrPort(t *testing.T) {
	for in, want := range map[string]string{
		"[::ffff:192.0.2.1]:5": "192.0.2.1:5",
		"192.0.2.1:5":          "192.0.2.1:5",
		"[2001:db8::1]:5":      "[2001:db8::1]:5",
	} {
		if got := UnmapAddrPort(netip.MustParseAddrPort(in)); got != netip.MustParseAddrPort(want) {
			t.Errorf("UnmapAddrPort(%s) = %v", in, got)
		}
	}
	if got := UnmapAddrPort(netip.AddrPort{}); got != (netip.AddrPort{}) {
		t.Errorf("zero: %v", got)
	}
}
