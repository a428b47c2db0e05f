package turnserver

import (
	"net/netip"
	"testing"
)

// TestPeerPolicy table-tests the relay permission policy.
func TestPeerPolicy(t *testing.T) {
	allow := []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}
	deny := []netip.Prefix{netip.MustParsePrefix("203.0.113.7/32"), netip.MustParsePrefix("2001:db8::/32")}
	for ip, want := range map[string]bool{
		"198.51.100.1": true, "203.0.113.7": false, "203.0.113.8": true,
		"127.0.0.1": false, "10.0.0.1": false, "10.1.2.3": true, "192.168.1.1": false,
		"100.64.0.1": false, "169.254.1.1": false, "224.0.0.1": false, "0.0.0.0": false,
		"::1": false, "fe80::1": false, "fd00::1": false, "2001:db8::1": false, "2a00::1": true,
		"::ffff:127.0.0.1": false, "::ffff:10.1.0.1": true,
	} {
		if got := peerAllowed(allow, deny, netip.MustParseAddr(ip)); got != want {
			t.Errorf("%s: allowed %v, want %v", ip, got, want)
		}
	}
	if peerAllowed(nil, nil, netip.Addr{}) {
		t.Error("an invalid address allowed")
	}
}
