package natclass

import (
	"net/netip"
	"slices"
	"testing"
)

// rfc6052 are the examples of RFC 6052 section 2.4: 192.0.2.33 embedded in
// each prefix length.
var rfc6052 = []struct{ prefix, addr string }{
	{"2001:db8::/32", "2001:db8:c000:221::"},
	{"2001:db8:100::/40", "2001:db8:1c0:2:21::"},
	{"2001:db8:122::/48", "2001:db8:122:c000:2:2100::"},
	{"2001:db8:122:300::/56", "2001:db8:122:3c0:0:221::"},
	{"2001:db8:122:344::/64", "2001:db8:122:344:c0:2:2100:0"},
	{"2001:db8:122:344::/96", "2001:db8:122:344::c000:221"},
	{"64:ff9b::/96", "64:ff9b::c000:221"},
}

func TestSynthesizeNAT64(t *testing.T) {
	v4 := netip.MustParseAddr("192.0.2.33")
	for _, c := range rfc6052 {
		p := netip.MustParsePrefix(c.prefix)
		got, err := SynthesizeNAT64(p, v4)
		if err != nil || got != netip.MustParseAddr(c.addr) {
			t.Errorf("SynthesizeNAT64(%s, %s) = %s, %v; want %s", p, v4, got, err, c.addr)
		}
		back, ok := ExtractNAT64(p, netip.MustParseAddr(c.addr))
		if !ok || back != v4 {
			t.Errorf("ExtractNAT64(%s, %s) = %s, %v; want %s", p, c.addr, back, ok, v4)
		}
	}
	// An IPv4-mapped IPv4 address is its IPv4 address.
	if got, err := SynthesizeNAT64(NAT64WellKnownPrefix, netip.MustParseAddr("::ffff:192.0.2.33")); err != nil || got != netip.MustParseAddr("64:ff9b::c000:221") {
		t.Errorf("mapped: %s, %v", got, err)
	}
	for _, c := range []struct{ prefix, v4 string }{
		{"2001:db8::/33", "192.0.2.33"},  // not an RFC 6052 length
		{"2001:db8::/128", "192.0.2.33"}, // not an RFC 6052 length
		{"10.0.0.0/8", "192.0.2.33"},     // not IPv6
		{"64:ff9b::/96", "2001:db8::1"},  // not IPv4
	} {
		if a, err := SynthesizeNAT64(netip.MustParsePrefix(c.prefix), netip.MustParseAddr(c.v4)); err == nil {
			t.Errorf("SynthesizeNAT64(%s, %s) = %s; want an error", c.prefix, c.v4, a)
		}
	}
	if _, ok := ExtractNAT64(NAT64WellKnownPrefix, netip.MustParseAddr("2001:db8::c000:221")); ok {
		t.Error("ExtractNAT64 took an address outside the prefix")
	}
}

func TestNAT64Prefixes(t *testing.T) {
	for _, c := range []struct {
		name   string
		answer []string
		want   []string
	}{
		// Hand-made with RFC 6052's layout: 192.0.0.170 is c0.00.00.aa,
		// 192.0.0.171 c0.00.00.ab.
		{"well-known /96", []string{"64:ff9b::c000:aa", "64:ff9b::c000:ab"}, []string{"64:ff9b::/96"}},
		{"/32", []string{"2001:db8:c000:aa::"}, []string{"2001:db8::/32"}},
		{"/40", []string{"2001:db8:1c0:0:aa::"}, []string{"2001:db8:100::/40"}},
		{"/48", []string{"2001:db8:122:c000:0:aa00::"}, []string{"2001:db8:122::/48"}},
		{"/56", []string{"2001:db8:122:3c0:0:aa::"}, []string{"2001:db8:122:300::/56"}},
		{"/64", []string{"2001:db8:122:344:c0:0:aa00:0"}, []string{"2001:db8:122:344::/64"}},
		{"/96 of a network-specific prefix", []string{"2001:db8:122:344::c000:ab"}, []string{"2001:db8:122:344::/96"}},
		{"two prefixes, in answer order", []string{"2001:db8:122:344::c000:aa", "64:ff9b::c000:aa", "64:ff9b::c000:ab"}, []string{"2001:db8:122:344::/96", "64:ff9b::/96"}},
		{"IPv4 answers ignored", []string{"192.0.0.170", "::ffff:192.0.0.170"}, nil},
		{"not synthesized", []string{"2001:db8::1"}, nil},
		// c000:aa at the /32 position, but the u octet is not zero: not
		// an RFC 6052 address with that prefix.
		{"u octet set", []string{"2001:db8:c000:aa:ff00::"}, nil},
		{"empty", nil, nil},
	} {
		var in []netip.Addr
		for _, a := range c.answer {
			in = append(in, netip.MustParseAddr(a))
		}
		var got []string
		for _, p := range NAT64Prefixes(in) {
			got = append(got, p.String())
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: NAT64Prefixes(%v) = %v; want %v", c.name, c.answer, got, c.want)
		}
	}
}
