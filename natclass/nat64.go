package natclass

import (
	"fmt"
	"net/netip"
)

// NAT64 sources: how the NAT64 prefix was learnt.
const (
	// NAT64SourceDNS64 is RFC 7050: the resolver answered AAAA for
	// ipv4only.arpa, and the prefix is where 192.0.0.170 or 192.0.0.171
	// sits in the synthesized addresses.
	NAT64SourceDNS64 = "dns64"
	// NAT64SourceWellKnown: no DNS64 answer, but a STUN server given as
	// an IPv4 literal answered at its address in the well-known prefix
	// 64:ff9b::/96 (RFC 6052 section 2.1).
	NAT64SourceWellKnown = "well-known"
)

// NAT64WellKnownPrefix is the well-known NAT64 prefix of RFC 6052 section
// 2.1.
var NAT64WellKnownPrefix = netip.MustParsePrefix("64:ff9b::/96")

// NAT64 is what a run found out about NAT64 (RFC 6146) on an IPv6-only
// network: a network with no IPv4 route of its own, whose IPv4 servers are
// reached through a NAT64 prefix.
type NAT64 struct {
	// Detected is true when the host has no IPv4 route (or IPv4 was
	// skipped) and a NAT64 prefix was found.
	Detected bool `json:"detected"`
	// Prefix is the NAT64 prefix (Pref64::/n), the first one found.
	Prefix netip.Prefix `json:"prefix,omitzero"`
	// Source is how the prefix was found: "dns64", the AAAA records of
	// ipv4only.arpa (RFC 7050); or "well-known", no DNS64 but a STUN
	// server answered at its address in 64:ff9b::/96.
	Source string `json:"source,omitempty"`
	// Synthesized are the IPv6 addresses, made with the prefix (RFC 6052),
	// through which IPv4-only STUN servers given as IPv4 literals were
	// probed.
	Synthesized []netip.Addr `json:"synthesized,omitempty"`
}

// Summary is one sentence for a person; empty unless Detected.
func (n *NAT64) Summary() string {
	if n == nil || !n.Detected {
		return ""
	}
	return fmt.Sprintf("IPv6-only network with NAT64 (%s): IPv4 servers are reached through it", n.Prefix)
}

// nat64Lengths are the prefix lengths RFC 6052 section 2.2 allows, shortest
// first.
var nat64Lengths = []int{32, 40, 48, 56, 64, 96}

// v4Offsets returns the byte offsets of the four octets of the embedded
// IPv4 address in an RFC 6052 address with prefix length bits (one of
// nat64Lengths): bits 64 to 71 (octet 8, the "u" octet) are skipped.
func v4Offsets(bits int) [4]int {
	var o [4]int
	pos := bits / 8
	for i := range o {
		if pos == 8 {
			pos++ // the u octet
		}
		o[i] = pos
		pos++
	}
	return o
}

// SynthesizeNAT64 embeds the IPv4 address v4 in prefix as RFC 6052 section
// 2.2 lays it out (the u octet and the suffix zero). It fails when prefix
// is not an IPv6 prefix of length 32, 40, 48, 56, 64 or 96, or v4 is not
// an IPv4 address.
func SynthesizeNAT64(prefix netip.Prefix, v4 netip.Addr) (netip.Addr, error) {
	if err := checkNAT64Prefix(prefix); err != nil {
		return netip.Addr{}, err
	}
	v4 = v4.Unmap()
	if !v4.Is4() {
		return netip.Addr{}, fmt.Errorf("%s is not an IPv4 address", v4)
	}
	b := prefix.Masked().Addr().As16()
	// Everything after the prefix is zero (Masked), the u octet included.
	for i, off := range v4Offsets(prefix.Bits()) {
		b[off] = v4.As4()[i]
	}
	return netip.AddrFrom16(b), nil
}

// ExtractNAT64 returns the IPv4 address embedded in a, an address of the
// NAT64 prefix (RFC 6052 section 2.2), and whether a is in prefix at all.
func ExtractNAT64(prefix netip.Prefix, a netip.Addr) (netip.Addr, bool) {
	if checkNAT64Prefix(prefix) != nil || !a.Is6() || a.Is4In6() || !prefix.Contains(a.WithZone("")) {
		return netip.Addr{}, false
	}
	b := a.As16()
	var v4 [4]byte
	for i, off := range v4Offsets(prefix.Bits()) {
		v4[i] = b[off]
	}
	return netip.AddrFrom4(v4), true
}

func checkNAT64Prefix(p netip.Prefix) error {
	if !p.IsValid() || !p.Addr().Is6() || p.Addr().Is4In6() {
		return fmt.Errorf("NAT64 prefix %s is not an IPv6 prefix", p)
	}
	for _, n := range nat64Lengths {
		if p.Bits() == n {
			return nil
		}
	}
	return fmt.Errorf("NAT64 prefix %s: the length must be 32, 40, 48, 56, 64 or 96 (RFC 6052 section 2.2)", p)
}

// The well-known IPv4-only addresses of ipv4only.arpa (RFC 7050 section
// 2.2).
var (
	ipv4onlyA = netip.AddrFrom4([4]byte{192, 0, 0, 170})
	ipv4onlyB = netip.AddrFrom4([4]byte{192, 0, 0, 171})
)

// IPv4OnlyName is the name whose AAAA records reveal a DNS64 resolver's
// NAT64 prefix (RFC 7050 section 3).
const IPv4OnlyName = "ipv4only.arpa"

// NAT64Prefixes finds the NAT64 prefixes in the AAAA answer for
// ipv4only.arpa (RFC 7050 section 3): in each IPv6 address it looks for
// 192.0.0.170 or 192.0.0.171 at each position RFC 6052 allows, shortest
// prefix first, with the u octet (bits 64 to 71) zero for the prefixes it
// applies to; the prefix is the bits before it. It returns the distinct
// prefixes in the order of the answer; none when no address holds a
// well-known address (the resolver is not DNS64, or answered with
// something else). IPv4 and IPv4-mapped addresses in the answer are
// ignored.
func NAT64Prefixes(answer []netip.Addr) []netip.Prefix {
	var out []netip.Prefix
	for _, a := range answer {
		if !a.Is6() || a.Is4In6() {
			continue
		}
		a = a.WithZone("")
		b := a.As16()
		for _, n := range nat64Lengths {
			if n < 96 && b[8] != 0 {
				continue // the u octet must be zero (RFC 6052 section 2.2)
			}
			p, _ := a.Prefix(n)
			v4, _ := ExtractNAT64(p, a)
			if v4 != ipv4onlyA && v4 != ipv4onlyB {
				continue
			}
			found := false
			for _, q := range out {
				found = found || q == p
			}
			if !found {
				out = append(out, p)
			}
			break
		}
	}
	return out
}
