package turncheck

import (
	"context"
	"net"
	"net/netip"
	"testing"

	"github.com/pion/turn/v5"
)

// hostsResolver answers from a table, and IP literals as themselves.
type hostsResolver map[string][]netip.Addr

func (r hostsResolver) LookupNetIP(_ context.Context, network, host string) ([]netip.Addr, error) {
	addrs := r[host]
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	}
	var out []netip.Addr
	for _, a := range addrs {
		if network == "ip" || (network == "ip4") == a.Is4() {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return out, nil
}

// TestResolveServerNAT64: with a NAT64 prefix (no IPv4 route), an IPv4
// server is reached at its address in the prefix (RFC 6052 section 2.2,
// worked out by hand), a name's IPv6 address comes first, and such a
// server's allocation asks for an IPv4 relayed address (no
// REQUESTED-ADDRESS-FAMILY) whatever RelayFamily says; without a prefix
// nothing changes.
func TestResolveServerNAT64(t *testing.T) {
	r := hostsResolver{
		"turn4.example":  {netip.MustParseAddr("198.19.0.2")},
		"turn46.example": {netip.MustParseAddr("198.19.0.2"), netip.MustParseAddr("2001:db8::2")},
	}
	wk := netip.MustParsePrefix("64:ff9b::/96")
	nsp := netip.MustParsePrefix("2001:db8:64::/64") // RFC 6052 2.2: v4 in bits 72..103, u octet 64..71
	cases := []struct {
		host   string
		prefix netip.Prefix
		relay  int // Options.RelayFamily
		want   string
		family int // the relayed family asked for
	}{
		{"198.19.0.2", wk, 0, "[64:ff9b::c613:2]:3478", 4},
		{"198.19.0.2", wk, 6, "[64:ff9b::c613:2]:3478", 4},
		{"turn4.example", wk, 0, "[64:ff9b::c613:2]:3478", 4},
		{"turn4.example", nsp, 0, "[2001:db8:64:0:c6:1300:200:0]:3478", 4},
		{"turn46.example", wk, 0, "[2001:db8::2]:3478", 0},
		{"64:ff9b::c613:2", wk, 0, "[64:ff9b::c613:2]:3478", 4}, // DNS64 gave it
		{"turn46.example", netip.Prefix{}, 0, "198.19.0.2:3478", 0},
		{"198.19.0.2", netip.Prefix{}, 6, "198.19.0.2:3478", 6},
	}
	for _, c := range cases {
		u, err := ParseURL("turn:" + bracket(c.host) + ":3478")
		if err != nil {
			t.Fatal(err)
		}
		o := Options{Resolver: r, NAT64: c.prefix, RelayFamily: c.relay}
		got, err := resolveServer(context.Background(), u, o)
		if err != nil || got.String() != c.want {
			t.Errorf("%s with NAT64 %v: %v, %v; want %s", c.host, c.prefix, got, err, c.want)
			continue
		}
		if f := o.relayFamily(got); f != c.family {
			t.Errorf("%s with NAT64 %v: relayed family %d asked, want %d", c.host, c.prefix, f, c.family)
		}
	}
	if requestedFamily(4) != turn.RequestedAddressFamilyIPv4 {
		t.Errorf("requestedFamily(4) = %v", requestedFamily(4))
	}
}

func bracket(h string) string {
	if a, err := netip.ParseAddr(h); err == nil && a.Is6() {
		return "[" + h + "]"
	}
	return h
}
