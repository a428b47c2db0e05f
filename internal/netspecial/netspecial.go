// Package netspecial knows which IP addresses are not on the public
// internet: every entry of the IANA IPv4 and IPv6 Special-Purpose Address
// Registries (RFC 6890 and its updates), whether marked globally reachable
// or not, multicast, and IPv6 outside 2000::/3. serve's TURN peer policy
// and the exporter's public_only both decide with it, so the two cannot
// drift apart.
package netspecial

import "net/netip"

// ranges are the special-purpose ranges. ::ffff:0:0/96 (IPv4-mapped,
// RFC 4291) and 64:ff9b::/96 (IPv4/IPv6 translation, RFC 6052) are judged
// by the IPv4 address they embed instead (see Special and EmbeddedIPv4).
var ranges = prefixes(
	// IPv4 Special-Purpose Address Registry.
	"0.0.0.0/8",          // "this network" (RFC 791 section 3.2, RFC 1122 section 3.2.1.3)
	"10.0.0.0/8",         // private (RFC 1918)
	"100.64.0.0/10",      // shared address space, carrier-grade NAT (RFC 6598)
	"127.0.0.0/8",        // loopback (RFC 1122 section 3.2.1.3)
	"169.254.0.0/16",     // link-local (RFC 3927)
	"172.16.0.0/12",      // private (RFC 1918)
	"192.0.0.0/24",       // IETF protocol assignments (RFC 6890 section 2.1): DS-Lite (RFC 7335), PCP and TURN anycast (RFC 7723, RFC 8155), NAT64 discovery (RFC 8880)
	"192.0.2.0/24",       // documentation, TEST-NET-1 (RFC 5737)
	"192.31.196.0/24",    // AS112-v4 (RFC 7535)
	"192.52.193.0/24",    // AMT (RFC 7450)
	"192.88.99.0/24",     // deprecated 6to4 relay anycast (RFC 7526)
	"192.168.0.0/16",     // private (RFC 1918)
	"192.175.48.0/24",    // direct delegation AS112 service (RFC 7534)
	"198.18.0.0/15",      // benchmarking (RFC 2544)
	"198.51.100.0/24",    // documentation, TEST-NET-2 (RFC 5737)
	"203.0.113.0/24",     // documentation, TEST-NET-3 (RFC 5737)
	"240.0.0.0/4",        // reserved (RFC 1112 section 4)
	"255.255.255.255/32", // limited broadcast (RFC 8190, RFC 919 section 7)
	"224.0.0.0/4",        // multicast (RFC 5771; IANA's multicast registry)

	// IPv6 Special-Purpose Address Registry.
	"::/128",            // unspecified (RFC 4291)
	"::1/128",           // loopback (RFC 4291)
	"64:ff9b:1::/48",    // local-use IPv4/IPv6 translation (RFC 8215), not globally reachable
	"100::/64",          // discard-only (RFC 6666)
	"100:0:0:1::/64",    // dummy IPv6 prefix (RFC 9780)
	"2001::/23",         // IETF protocol assignments (RFC 2928), denied whole: Teredo 2001::/32 (RFC 4380, embeds an IPv4 address), PCP and TURN anycast 2001:1::1-3, benchmarking 2001:2::/48 (RFC 5180), AMT 2001:3::/32 (RFC 7450), AS112-v6 2001:4:112::/48 (RFC 7535), ORCHID and ORCHIDv2 (RFC 4843, RFC 7343), DRIP (RFC 9374)
	"2001:db8::/32",     // documentation (RFC 3849)
	"2002::/16",         // 6to4 (RFC 3056): embeds an IPv4 address; denied whole
	"2620:4f:8000::/48", // direct delegation AS112 service (RFC 7534)
	"3fff::/20",         // documentation (RFC 9637)
	"5f00::/16",         // SRv6 SIDs (RFC 9602)
	"fc00::/7",          // unique local (RFC 4193, RFC 8190)
	"fe80::/10",         // link-local unicast (RFC 4291)
	"fec0::/10",         // deprecated site-local (RFC 3879)
	"ff00::/8",          // multicast (RFC 4291)
)

// globalUnicast is 2000::/3, the only IPv6 space IANA's IPv6 Address Space
// registry allocates for global unicast (RFC 4291 section 2.4); the rest is
// reserved by the IETF or special-purpose (IPv4-compatible ::/96 of RFC
// 4291 section 2.5.5.1 among it).
var globalUnicast = netip.MustParsePrefix("2000::/3")

// The NAT64 prefixes of RFC 6052 (the well-known /96) and RFC 8215 (the
// local-use /48), with the IPv4 address embedded as RFC 6052 section 2.2
// lays it out.
var (
	NAT64WellKnown = netip.MustParsePrefix("64:ff9b::/96")
	NAT64LocalUse  = netip.MustParsePrefix("64:ff9b:1::/48")
)

func prefixes(s ...string) []netip.Prefix {
	ps := make([]netip.Prefix, len(s))
	for i, p := range s {
		ps[i] = netip.MustParsePrefix(p)
	}
	return ps
}

// EmbeddedIPv4 returns the IPv4 address embedded in a NAT64 address of the
// well-known /96 (its last 32 bits) or of the local-use /48 (bits 48-63 and
// 72-87, around the u octet; RFC 6052 section 2.2).
func EmbeddedIPv4(ip netip.Addr) (netip.Addr, bool) {
	b := ip.As16()
	switch {
	case !ip.Is6():
		return netip.Addr{}, false
	case NAT64WellKnown.Contains(ip):
		return netip.AddrFrom4([4]byte(b[12:16])), true
	case NAT64LocalUse.Contains(ip):
		return netip.AddrFrom4([4]byte{b[6], b[7], b[9], b[10]}), true
	}
	return netip.Addr{}, false
}

// Special reports whether ip itself, without looking into an embedded
// IPv4 address, is in a special-purpose range or in IPv6 outside 2000::/3
// (the well-known NAT64 /96 excepted: it is judged by the IPv4 address it
// embeds). An IPv4-mapped address is judged as its IPv4 address; an
// invalid address is special. The zone is ignored.
func Special(ip netip.Addr) bool {
	if !ip.IsValid() {
		return true
	}
	ip = ip.Unmap().WithZone("")
	for _, p := range ranges {
		if p.Contains(ip) {
			return true
		}
	}
	return ip.Is6() && !globalUnicast.Contains(ip) && !NAT64WellKnown.Contains(ip)
}

// Public reports whether ip is an address on the public internet: not
// Special, and, for a NAT64 address, embedding a public IPv4 address.
func Public(ip netip.Addr) bool {
	if Special(ip) {
		return false
	}
	if v4, ok := EmbeddedIPv4(ip.Unmap()); ok {
		return Public(v4)
	}
	return true
}
