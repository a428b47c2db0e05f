package probe

import (
	"context"
	"net/netip"
	"slices"
	"testing"

	"github.com/natcheck/natcheck/natclass"
)

// resolvedFor makes the IPv6 resolution of targets as resolveAll leaves it
// for IPv4 literals (no address, an error) and IPv6 ones.
func resolvedFor(targets ...Target) map[Family][]resolved {
	res := map[Family][]resolved{}
	for _, t := range targets {
		r := resolved{target: t}
		if a := netip.MustParseAddr(t.Host); a.Is6() {
			r.addr = a
		} else {
			r.err = t.Host + " is not an ipv6 address"
		}
		res[IPv6] = append(res[IPv6], r)
	}
	return res
}

func TestSynthesizeTargets(t *testing.T) {
	v4 := Target{Host: "192.0.2.33", Port: 3478}
	v6 := Target{Host: "2001:db8::7", Port: 3479}
	res := resolvedFor(v4, v6)
	n := synthesize([]netip.Prefix{netip.MustParsePrefix("2001:db8:122:344::/64"), natclass.NAT64WellKnownPrefix}, natclass.NAT64SourceDNS64, res)
	// RFC 6052 section 2.4: 192.0.2.33 under 2001:db8:122:344::/64.
	want := netip.MustParseAddr("2001:db8:122:344:c0:2:2100:0")
	if !n.Detected || n.Prefix != netip.MustParsePrefix("2001:db8:122:344::/64") || n.Source != "dns64" || !slices.Equal(n.Synthesized, []netip.Addr{want}) {
		t.Errorf("nat64 %+v", n)
	}
	if got := res[IPv6][0]; got.addr != want || got.err != "" || got.target != v4 {
		t.Errorf("the IPv4 literal resolves to %+v; want %s", got, want)
	}
	if got := res[IPv6][1]; got.addr != netip.MustParseAddr("2001:db8::7") {
		t.Errorf("the IPv6 literal changed: %+v", got)
	}

	// No prefix: not detected, nothing changed.
	res = resolvedFor(v4)
	if n := synthesize(nil, natclass.NAT64SourceDNS64, res); n == nil || n.Detected || res[IPv6][0].addr.IsValid() {
		t.Errorf("without a prefix: nat64 %+v, resolution %+v", n, res[IPv6][0])
	}
}

// dns64 answers ipv4only.arpa as a DNS64 resolver with the well-known
// prefix does, and nothing else.
// dns64 is a DNS64 resolver for tests; with none set, a resolver that
// knows no ipv4only.arpa (no DNS64).
type dns64 struct {
	asked []string
	none  bool
}

func (d *dns64) LookupNetIP(_ context.Context, network, host string) ([]netip.Addr, error) {
	d.asked = append(d.asked, network+" "+host)
	if host != "ipv4only.arpa" || d.none {
		return nil, &netErr{}
	}
	return []netip.Addr{netip.MustParseAddr("64:ff9b::c000:aa"), netip.MustParseAddr("64:ff9b::c000:ab")}, nil
}

type netErr struct{}

func (*netErr) Error() string { return "no such host" }

// TestLookForNAT64WithIPv4Route: on a host with an IPv4 route (loopback
// here), nothing is looked up and nothing changes.
func TestLookForNAT64WithIPv4Route(t *testing.T) {
	d := &dns64{}
	res := resolvedFor(Target{Host: "192.0.2.33", Port: 3478})
	res[IPv4] = []resolved{{target: Target{Host: "127.0.0.1", Port: 3478}, addr: netip.MustParseAddr("127.0.0.1")}}
	if n := lookForNAT64(context.Background(), Config{Resolver: d}, res); n != nil || len(d.asked) != 0 {
		t.Errorf("nat64 %+v, asked %q; want nothing", n, d.asked)
	}
}
