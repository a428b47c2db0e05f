package turnserver

import (
	"net/netip"
	"slices"

	"github.com/natcheck/natcheck/internal/netspecial"
)

// peerAllowed is the permission policy of Config.AllowPeers and
// Config.DenyPeers. own holds the server's own addresses (unmapped, no
// zone). An IPv4-mapped address is judged as its IPv4 address. A NAT64
// address is allowed only if the IPv4 address it embeds is, and then as
// an IPv6 address: a peer in allow is allowed; otherwise one in deny,
// the server's own addresses, the special-purpose ranges (netspecial)
// and IPv6 outside 2000::/3 (except the well-known NAT64 /96, judged by
// its IPv4 address alone) are denied.
func peerAllowed(allow, deny []netip.Prefix, own []netip.Addr, ip netip.Addr) bool {
	if !ip.IsValid() {
		return false
	}
	ip = ip.Unmap().WithZone("") // Prefix.Contains never matches a zoned address
	if v4, ok := netspecial.EmbeddedIPv4(ip); ok && !peerAllowed(allow, deny, own, v4) {
		return false
	}
	in := func(ps []netip.Prefix) bool {
		return slices.ContainsFunc(ps, func(p netip.Prefix) bool { return p.Contains(ip) })
	}
	switch {
	case in(allow):
		return true
	case in(deny), slices.Contains(own, ip):
		return false
	}
	return !netspecial.Special(ip)
}
