package turnserver

import (
	"net/netip"
	"testing"
)

// TestPeerPolicyDefaults tries an address in each special-purpose range of
// the IANA IPv4 and IPv6 registries, the addresses just outside where the
// edge means something, and the IPv4-mapped and NAT64 forms, with no
// allow or deny list and no own addresses.
func TestPeerPolicyDefaults(t *testing.T) {
	for _, tc := range []struct {
		ip      string
		allowed bool
	}{
		// 0.0.0.0/8
		{"0.0.0.0", false}, {"0.255.255.255", false}, {"1.0.0.0", true},
		// 10.0.0.0/8
		{"9.255.255.255", true}, {"10.0.0.1", false}, {"10.255.255.255", false}, {"11.0.0.0", true},
		// 100.64.0.0/10
		{"100.63.255.255", true}, {"100.64.0.0", false}, {"100.127.255.255", false}, {"100.128.0.0", true},
		// 127.0.0.0/8
		{"126.255.255.255", true}, {"127.0.0.1", false}, {"127.255.255.254", false}, {"128.0.0.0", true},
		// 169.254.0.0/16
		{"169.253.255.255", true}, {"169.254.169.254", false}, {"169.255.0.0", true},
		// 172.16.0.0/12
		{"172.15.255.255", true}, {"172.16.0.1", false}, {"172.31.255.255", false}, {"172.32.0.0", true},
		// 192.0.0.0/24 (192.0.0.9 and .10, PCP and TURN anycast, too)
		{"191.255.255.255", true}, {"192.0.0.1", false}, {"192.0.0.10", false}, {"192.0.0.170", false}, {"192.0.1.0", true},
		// 192.0.2.0/24
		{"192.0.2.1", false}, {"192.0.3.0", true},
		// 192.31.196.0/24
		{"192.31.195.255", true}, {"192.31.196.1", false}, {"192.31.197.0", true},
		// 192.52.193.0/24
		{"192.52.192.255", true}, {"192.52.193.1", false}, {"192.52.194.0", true},
		// 192.88.99.0/24
		{"192.88.98.255", true}, {"192.88.99.1", false}, {"192.88.100.0", true},
		// 192.168.0.0/16
		{"192.167.255.255", true}, {"192.168.1.1", false}, {"192.169.0.0", true},
		// 192.175.48.0/24
		{"192.175.47.255", true}, {"192.175.48.1", false}, {"192.175.49.0", true},
		// 198.18.0.0/15
		{"198.17.255.255", true}, {"198.18.0.1", false}, {"198.19.255.255", false}, {"198.20.0.0", true},
		// 198.51.100.0/24
		{"198.51.99.255", true}, {"198.51.100.1", false}, {"198.51.101.0", true},
		// 203.0.113.0/24
		{"203.0.112.255", true}, {"203.0.113.1", false}, {"203.0.114.0", true},
		// 224.0.0.0/4 multicast, 240.0.0.0/4 reserved, broadcast
		{"223.255.255.255", true}, {"224.0.0.1", false}, {"239.255.255.255", false},
		{"240.0.0.1", false}, {"255.255.255.254", false}, {"255.255.255.255", false},
		// Ordinary public IPv4.
		{"8.8.8.8", true}, {"93.184.216.34", true},

		// IPv4-mapped: judged by the IPv4 address.
		{"::ffff:127.0.0.1", false}, {"::ffff:10.0.0.1", false}, {"::ffff:240.0.0.1", false},
		{"::ffff:0.0.0.0", false}, {"::ffff:8.8.8.8", true},
		// IPv4-compatible (deprecated, ::/96): outside 2000::/3.
		{"::8.8.8.8", false}, {"::127.0.0.1", false},
		// NAT64 well-known /96: by the embedded IPv4 address.
		{"64:ff9b::7f00:1", false}, {"64:ff9b::a00:1", false}, {"64:ff9b::c0a8:101", false},
		{"64:ff9b::a9fe:a9fe", false}, {"64:ff9b::f000:1", false}, {"64:ff9b::ffff:ffff", false},
		{"64:ff9b::", false}, {"64:ff9b::808:808", true}, {"64:ff9b::5db8:d822", true},
		{"64:ff9a:ffff:ffff:ffff:ffff:ffff:ffff", false}, {"64:ff9b:0:0:0:1::", false},
		// NAT64 local-use /48 (RFC 8215): denied whole.
		{"64:ff9b:1:808:8:800::", false}, {"64:ff9b:1:7f00:0:100::", false}, {"64:ff9b:1:ffff:ffff:ffff:ffff:ffff", false},
		// ::/128, ::1/128
		{"::", false}, {"::1", false}, {"::2", false},
		// 100::/64 and 100:0:0:1::/64
		{"100::1", false}, {"100:0:0:1::1", false}, {"100:0:0:2::1", false},
		// 2001::/23 (Teredo 2001::/32, TURN anycast 2001:1::2, ORCHIDv2...)
		{"1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false}, {"2000::1", true},
		{"2001::1", false}, {"2001:0:4136:e378:8000:63bf:3fff:fdd2", false}, {"2001:1::2", false},
		{"2001:2::1", false}, {"2001:20::1", false}, {"2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff", false},
		{"2001:200::1", true},
		// 2001:db8::/32
		{"2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", true}, {"2001:db8::1", false}, {"2001:db9::", true},
		// 2002::/16 6to4, whatever it embeds
		{"2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true}, {"2002:808:808::1", false}, {"2002:7f00:1::1", false}, {"2003::1", true},
		// 2620:4f:8000::/48
		{"2620:4f:7fff:ffff:ffff:ffff:ffff:ffff", true}, {"2620:4f:8000::1", false}, {"2620:4f:8001::", true},
		// 3fff::/20
		{"3ffe:ffff::1", true}, {"3fff::1", false}, {"3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff", false}, {"3fff:1000::", true},
		// Outside 2000::/3: 4000::/3 and up, 5f00::/16 among them.
		{"4000::1", false}, {"5f00::1", false}, {"a000::1", false},
		// fc00::/7, fe80::/10, fec0::/10, ff00::/8
		{"fc00::1", false}, {"fd00::1", false}, {"fe80::1", false}, {"fe80::1%eth0", false},
		{"febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false}, {"fec0::1", false}, {"ff02::1", false}, {"ff0e::1", false},
		// Ordinary public IPv6.
		{"2a00:1450:4001:81b::200e", true}, {"2606:4700::1111", true},
	} {
		if got := peerAllowed(nil, nil, nil, netip.MustParseAddr(tc.ip)); got != tc.allowed {
			t.Errorf("%s: allowed %v, want %v", tc.ip, got, tc.allowed)
		}
	}
	if peerAllowed(nil, nil, nil, netip.Addr{}) {
		t.Error("an invalid address allowed")
	}
}

// TestPeerPolicyLists: allow wins over deny, the own addresses and the
// default denials; a NAT64 address needs its embedded IPv4 address allowed.
func TestPeerPolicyLists(t *testing.T) {
	allow := []netip.Prefix{
		netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("93.184.216.35/32"),
		netip.MustParsePrefix("64:ff9b:1::/48"),
	}
	deny := []netip.Prefix{netip.MustParsePrefix("93.184.216.0/24"), netip.MustParsePrefix("2a00::/16")}
	own := []netip.Addr{
		netip.MustParseAddr("93.184.216.35"), netip.MustParseAddr("8.8.4.4"),
		netip.MustParseAddr("2606:4700::5"),
	}
	for _, tc := range []struct {
		ip      string
		allowed bool
	}{
		{"10.1.2.3", true}, {"::ffff:10.1.0.1", true}, {"10.2.0.1", false},
		{"93.184.216.34", false}, {"93.184.216.35", true}, // denied, and allowed by name though own
		{"2a00::1", false}, {"2a01::1", true},
		// Own addresses, in every form.
		{"8.8.4.4", false}, {"::ffff:8.8.4.4", false}, {"64:ff9b::808:404", false},
		{"2606:4700::5", false}, {"2606:4700::6", true}, {"8.8.8.8", true},
		// NAT64: the embedded address's allowance carries over; the
		// local-use /48 allowed by name still needs it.
		{"64:ff9b::a01:203", true}, {"64:ff9b::a02:1", false}, {"64:ff9b::5db8:d822", false},
		{"64:ff9b:1:a01:2:300::", true}, {"64:ff9b:1:808:8:800::", true},
		{"64:ff9b:1:7f00:0:100::", false}, {"64:ff9b:1:808:4:400::", false},
	} {
		if got := peerAllowed(allow, deny, own, netip.MustParseAddr(tc.ip)); got != tc.allowed {
			t.Errorf("%s: allowed %v, want %v", tc.ip, got, tc.allowed)
		}
	}
}
