package turnserver

import "net/netip"

// sharedAddressSpace is 100.64.0.0/10 (RFC 6598, carrier-grade NAT).
var sharedAddressSpace = netip.MustParsePrefix("100.64.0.0/10")

// peerAllowed is the permission policy of Config.AllowPeers and
// Config.DenyPeers: allow wins, then deny and the default denials.
func peerAllowed(allow, deny []netip.Prefix, ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range allow {
		if p.Contains(ip) {
			return true
		}
	}
	for _, p := range deny {
		if p.Contains(ip) {
			return false
		}
	}
	return !(ip.IsLoopback() || ip.IsPrivate() || ip.IsUnspecified() || ip.IsMulticast() ||
		ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() ||
		sharedAddressSpace.Contains(ip) || !ip.IsValid())
}
