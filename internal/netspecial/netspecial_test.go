package netspecial

import (
	"net/netip"
	"testing"
)

// TestPublic: a few addresses of each kind, expected values by hand.
// turnserver's policy test tries every range with its edges.
func TestPublic(t *testing.T) {
	for addr, want := range map[string]bool{
		"8.8.8.8":                true,
		"1.1.1.1":                true,
		"2606:4700::1111":        true,
		"64:ff9b::808:808":       true,  // NAT64 of 8.8.8.8
		"::ffff:8.8.8.8":         true,  // mapped 8.8.8.8
		"198.17.255.255":         true,  // just below 198.18.0.0/15
		"198.20.0.0":             true,  // just above it
		"0.1.2.3":                false, // 0.0.0.0/8
		"127.0.0.1":              false,
		"10.1.2.3":               false,
		"100.64.0.1":             false,
		"198.18.0.1":             false,
		"240.0.0.1":              false,
		"255.255.255.255":        false,
		"224.0.0.1":              false,
		"::ffff:127.0.0.1":       false,
		"64:ff9b::7f00:1":        false, // NAT64 of 127.0.0.1
		"64:ff9b::a00:1":         false, // NAT64 of 10.0.0.1
		"64:ff9b:1:7f00:0:100::": false, // local-use NAT64
		"::1":                    false,
		"::":                     false,
		"fe80::1":                false,
		"fec0::1":                false,
		"fd00::1":                false,
		"2001:db8::1":            false,
		"2002:808:808::1":        false, // 6to4
		"2001:0:4136:e378::1":    false, // Teredo
		"ff02::1":                false,
		"4000::1":                false, // outside 2000::/3
	} {
		if got := Public(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Public(%s) = %v, want %v", addr, got, want)
		}
	}
	if Public(netip.Addr{}) {
		t.Error("the zero Addr is public")
	}
}

func TestEmbeddedIPv4(t *testing.T) {
	for addr, want := range map[string]string{
		"64:ff9b::c000:201":      "192.0.2.1",
		"64:ff9b:1:c000:2:100::": "192.0.2.1", // bits 48-63 and 72-87
		"2001:db8::1":            "",
		"192.0.2.1":              "",
	} {
		got, ok := EmbeddedIPv4(netip.MustParseAddr(addr))
		if (want == "") == ok || (ok && got.String() != want) {
			t.Errorf("EmbeddedIPv4(%s) = %v, %v; want %q", addr, got, ok, want)
		}
	}
}
