package stun

import (
	"net"
	"net/netip"
)

// Transports STUN runs over (RFC 8489 section 6.2), by the names of the
// "transport" parameter of STUN and TURN URIs (RFC 7064, RFC 7065), which
// natcheck also uses in its reports and metrics. TLS runs over TCP.
const (
	TransportUDP = "udp"
	TransportTCP = "tcp"
	TransportTLS = "tls"
)

// AddrPortOf returns the IP address and port of a, a *net.UDPAddr or
// *net.TCPAddr (what sockets and pion's transport.Net return) or any
// net.Addr whose String is IP:port, with an IPv4-mapped IPv6 address
// unmapped. It returns the zero AddrPort for nil or an address that is not
// IP:port.
func AddrPortOf(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case nil:
	case *net.UDPAddr:
		ap = a.AddrPort()
	case *net.TCPAddr:
		ap = a.AddrPort()
	default:
		ap, _ = netip.ParseAddrPort(a.String())
	}
	return UnmapAddrPort(ap)
}

// AddrPortFromIP returns ip and port, as pion's address attributes hold
// them (XORMappedAddress, OtherAddress, ...), as a netip.AddrPort with an
// IPv4-mapped address unmapped, or the zero AddrPort if ip is not an IP
// address or port is out of range.
func AddrPortFromIP(ip net.IP, port int) netip.AddrPort {
	a, ok := netip.AddrFromSlice(ip)
	if !ok || port < 0 || port > 65535 {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(port))
}

// UnmapAddrPort returns ap with an IPv4-mapped IPv6 address (::ffff:a.b.c.d,
// as a dual-stack socket reports an IPv4 peer) unmapped to IPv4.
func UnmapAddrPort(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
