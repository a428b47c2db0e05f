package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Mode6 is the router's IPv6 behaviour, beside its IPv4 Mode. The zero
// value "" means no IPv6 at all: no IPv6 addresses or routes anywhere, and
// servers on IPv4 only.
//
// With a Mode6 the lab adds, beside the IPv4 topology:
//
//	client (2001:2:0:1::2 or fd00:0:0:1::2) --lan-- router (::1 | 2001:2:0:100::1) --wan-- internet (2001:2:0:100::2, ::3, ::4)
//
// All addresses lie in 2001:2::/48, the IPv6 benchmarking range of RFC
// 5180, except the ULA fd00:0:0:1::/64 inside the NPTv6 and NAT66
// routers. The internet namespace routes the client's global prefix
// 2001:2:0:1::/64 to the router. Duplicate address detection is off, so
// addresses are usable at once; routes are static (no router
// advertisements).
type Mode6 string

// IPv6 router behaviours.
const (
	// Routed6 forwards IPv6 without NAT or filtering; the client has a
	// global address.
	Routed6 Mode6 = "routed6"
	// Firewall6 forwards IPv6 without NAT; inbound packets pass only when
	// they belong to a connection the client started (conntrack):
	// address-and-port-dependent filtering, the common home CPE.
	Firewall6 Mode6 = "firewall6"
	// Firewall6EIF forwards IPv6 without NAT and lets inbound UDP reach a
	// client address and port that has sent anything out (from anywhere:
	// endpoint-independent filtering, RFC 6092 REC-8 style), recorded in an
	// nftables dynamic set; other inbound packets pass only on a
	// connection the client started.
	Firewall6EIF Mode6 = "firewall6eif"
	// NPTv6 translates the client's ULA prefix fd00:0:0:1::/64 to the
	// global prefix 2001:2:0:1::/64 and back (nftables snat/dnat ip6
	// prefix to), without filtering: endpoint-independent mapping with the
	// port kept, endpoint-independent filtering.
	NPTv6 Mode6 = "nptv6"
	// NAT66 masquerades the client's ULA address behind the router's WAN
	// address, with a stateful forward filter: like IPv4 Masquerade.
	NAT66 Mode6 = "nat66"
	// Blocked6 drops all forwarded IPv6 UDP; IPv6 TCP passes (stateful,
	// no NAT, the client has a global address).
	Blocked6 Mode6 = "blocked6"
)

// Modes6 returns every IPv6 router behaviour, in a stable order.
func Modes6() []Mode6 {
	return []Mode6{Routed6, Firewall6, Firewall6EIF, NPTv6, NAT66, Blocked6}
}

func validMode6(m Mode6) bool {
	if m == "" {
		return true
	}
	for _, x := range Modes6() {
		if m == x {
			return true
		}
	}
	return false
}

// usesULA reports whether the client has a ULA address behind a
// translating router.
func (m Mode6) usesULA() bool { return m == NPTv6 || m == NAT66 }

// IPv6 addresses of the topology. The client's global prefix, the WAN and
// the servers lie in 2001:2::/48 (RFC 5180); the ULA in fd00::/8.
var (
	ClientLAN6     = netip.MustParsePrefix("2001:2:0:1::/64") // the client's global prefix
	ClientAddr6    = netip.MustParseAddr("2001:2:0:1::2")     // the client's global address
	RouterLANAddr6 = netip.MustParseAddr("2001:2:0:1::1")     // the router on the global LAN
	ULALAN6        = netip.MustParsePrefix("fd00:0:0:1::/64") // the LAN behind nptv6 and nat66
	ClientULA6     = netip.MustParseAddr("fd00:0:0:1::2")     // the client's ULA address
	RouterULA6     = netip.MustParseAddr("fd00:0:0:1::1")     // the router on the ULA LAN
	WAN6           = netip.MustParsePrefix("2001:2:0:100::/64")
	RouterWANAddr6 = netip.MustParseAddr("2001:2:0:100::1") // the router on the WAN (nat66's public address)
	STUNAddr6      = netip.MustParseAddr("2001:2:0:100::2") // coturn, primary IPv6 address
	STUNAltAddr6   = netip.MustParseAddr("2001:2:0:100::3") // coturn, alternate IPv6 address
	PlainSTUNAddr6 = netip.MustParseAddr("2001:2:0:100::4") // the plain STUN server over IPv6
)

// Site6 is the IPv6 addressing of one site (see Site): what its router's
// IPv6 rules and routes name. The single-site Lab uses DefaultSite6; a
// PairLab's site B has SiteB6.
type Site6 struct {
	LAN       netip.Prefix // the client's global prefix (NPTv6's outside prefix)
	Client    netip.Addr   // the client's global address
	RouterLAN netip.Addr   // the router on the global LAN
	ULA       netip.Prefix // the LAN behind nptv6 and nat66
	ClientULA netip.Addr   // the client's ULA address
	RouterULA netip.Addr   // the router on the ULA LAN
	RouterWAN netip.Addr   // the router on the WAN (nat66's public address)
}

// DefaultSite6 is the single-site Lab's IPv6 addressing.
var DefaultSite6 = Site6{
	LAN: ClientLAN6, Client: ClientAddr6, RouterLAN: RouterLANAddr6,
	ULA: ULALAN6, ClientULA: ClientULA6, RouterULA: RouterULA6,
	RouterWAN: RouterWANAddr6,
}

// ClientAddr is the client's own IPv6 address behind a router in mode m.
func (s Site6) ClientAddr(m Mode6) netip.Addr {
	if m.usesULA() {
		return s.ClientULA
	}
	return s.Client
}

// PublicAddr is the client's IPv6 address as the internet sees it behind
// a router in mode m: its own global address without NAT, the translated
// global address behind NPTv6, the router's behind NAT66.
func (s Site6) PublicAddr(m Mode6) netip.Addr {
	if m == NAT66 {
		return s.RouterWAN
	}
	return s.Client
}

// ClientAddr6For is the client's own IPv6 address behind a router in mode m.
func ClientAddr6For(m Mode6) netip.Addr { return DefaultSite6.ClientAddr(m) }

// PublicAddr6For is the client's IPv6 address as the internet sees it
// behind a router in mode m: its own global address without NAT, the
// translated global address behind NPTv6, the router's behind NAT66.
func PublicAddr6For(m Mode6) netip.Addr { return DefaultSite6.PublicAddr(m) }

// eif6Timeout is how long the Firewall6EIF router keeps a client port open
// after the client last sent from it.
const eif6Timeout = "120s"

// ruleset6 returns the IPv6 parts of the ruleset of the router of site s
// for mode m: the rules of the forward6 chain (which ends in a counted
// drop), the sets, and the prerouting and postrouting rules of the ip6 nat
// table. loss6, if positive, is the percentage of forwarded IPv6 UDP the
// chain drops first (counted as "loss6"), in both directions.
func ruleset6(s Site6, m Mode6, loss6 int) (fwd, sets, pre, post []string) {
	lanToWan := fmt.Sprintf("iifname %q oifname %q", routerLAN, routerWAN)
	wanToLan := fmt.Sprintf("iifname %q oifname %q", routerWAN, routerLAN)
	stateful := []string{
		"ct state established,related accept",
		"ct state invalid drop",
		lanToWan + " accept",
	}
	if loss6 > 0 {
		fwd = append(fwd, fmt.Sprintf("meta l4proto udp numgen random mod 100 < %d counter drop comment \"loss6\"", loss6))
	}
	switch m {
	case Routed6:
		fwd = append(fwd, "accept")
	case Firewall6:
		fwd = append(fwd, stateful...)
	case Firewall6EIF:
		sets = append(sets, fmt.Sprintf("set eif6 {\n\t\ttype ipv6_addr . inet_service\n\t\tflags dynamic,timeout\n\t\ttimeout %s\n\t}", eif6Timeout))
		fwd = append(fwd, lanToWan+" meta l4proto udp update @eif6 { ip6 saddr . udp sport }")
		fwd = append(fwd, stateful...)
		fwd = append(fwd, wanToLan+" meta l4proto udp ip6 daddr . udp dport @eif6 accept")
	case NPTv6:
		fwd = append(fwd, "accept")
		pre = append(pre, fmt.Sprintf("iifname %q dnat ip6 prefix to ip6 daddr map { %s : %s }", routerWAN, s.LAN, s.ULA))
		post = append(post, fmt.Sprintf("oifname %q snat ip6 prefix to ip6 saddr map { %s : %s }", routerWAN, s.ULA, s.LAN))
	case NAT66:
		fwd = append(fwd, stateful...)
		post = append(post, fmt.Sprintf("oifname %q masquerade", routerWAN))
	case Blocked6:
		fwd = append(fwd, "meta l4proto udp counter drop comment \"udp6 blocked\"")
		fwd = append(fwd, stateful...)
	}
	fwd = append(fwd, "counter drop comment \"filtered6\"")
	return fwd, sets, pre, post
}

// buildIPv6 addresses and routes IPv6 for the lab's Mode6: client, router
// LAN and WAN (buildSite6), the servers' addresses in the internet
// namespace. DAD is off (nodad), so the addresses are usable at once.
func (l *Lab) buildIPv6(ctx context.Context) error {
	if err := buildSite6(ctx, l.Client, l.Router, DefaultSite6, l.Mode6, netip.Addr{}); err != nil {
		return err
	}
	steps := [][]string{
		{l.Internet, "-6", "addr", "add", STUNAddr6.String() + "/64", "dev", internetIf, "nodad"},
		{l.Internet, "-6", "addr", "add", STUNAltAddr6.String() + "/64", "dev", internetIf, "nodad"},
		{l.Internet, "-6", "addr", "add", PlainSTUNAddr6.String() + "/64", "dev", internetIf, "nodad"},
		// The client's global prefix (its own, or NPTv6's outside prefix)
		// lies behind the router.
		{l.Internet, "-6", "route", "add", ClientLAN6.String(), "via", RouterWANAddr6.String()},
	}
	for _, s := range steps {
		if err := ipns(ctx, s[0], s[1:]...); err != nil {
			return err
		}
	}
	return waitNoTentative(ctx, l.Client, l.Router, l.Internet)
}

// buildSite6 addresses and routes IPv6 in one site's client and router
// namespaces (whose veths buildRouter made) for mode m with addressing s,
// and turns on the router's IPv6 forwarding. defaultVia, if valid, is the
// router's IPv6 default route (an address in the internet namespace).
func buildSite6(ctx context.Context, clientNS, routerNS string, s Site6, m Mode6, defaultVia netip.Addr) error {
	client, routerLANAddr := s.Client, s.RouterLAN
	if m.usesULA() {
		client, routerLANAddr = s.ClientULA, s.RouterULA
	}
	steps := [][]string{
		{clientNS, "-6", "addr", "add", client.String() + "/64", "dev", clientIf, "nodad"},
		{clientNS, "-6", "route", "add", "default", "via", routerLANAddr.String()},
		{routerNS, "-6", "addr", "add", routerLANAddr.String() + "/64", "dev", routerLAN, "nodad"},
		{routerNS, "-6", "addr", "add", s.RouterWAN.String() + "/64", "dev", routerWAN, "nodad"},
	}
	if defaultVia.IsValid() {
		steps = append(steps, []string{routerNS, "-6", "route", "add", "default", "via", defaultVia.String()})
	}
	for _, st := range steps {
		if err := ipns(ctx, st[0], st[1:]...); err != nil {
			return err
		}
	}
	_, err := nsexec(ctx, routerNS, "sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/all/forwarding")
	return err
}

// noDAD turns duplicate address detection off in namespace ns for every
// interface created afterwards. Without it a link-local address stays
// tentative for a second or two after the link comes up, and a router
// whose link-local address is tentative cannot resolve neighbours for
// packets it forwards: the first IPv6 packets are lost.
func noDAD(ctx context.Context, ns string) error {
	_, err := nsexec(ctx, ns, "sh", "-c",
		"echo 0 > /proc/sys/net/ipv6/conf/all/accept_dad && echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad")
	return err
}

// waitNoTentative waits, at most 5 s, until no IPv6 address in the
// namespaces is tentative (still in duplicate address detection).
func waitNoTentative(ctx context.Context, namespaces ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for attempt := 0; attempt < 100; attempt++ {
		var tentative []string
		for _, ns := range namespaces {
			out, err := runOut(ctx, "ip", "-n", ns, "-6", "addr", "show", "tentative")
			if err != nil {
				return err
			}
			if strings.TrimSpace(out) != "" {
				tentative = append(tentative, ns+": "+strings.TrimSpace(out))
			}
		}
		if tentative == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("IPv6 addresses still tentative: %s", strings.Join(tentative, "; "))
		case <-time.After(50 * time.Millisecond):
		}
	}
	return errors.New("IPv6 addresses still tentative")
}

// natcheck serve's IPv6 addresses in the internet namespace (StartServe).
var (
	ServeAddr6    = netip.MustParseAddr("2001:2:0:100::5")
	ServeAltAddr6 = netip.MustParseAddr("2001:2:0:100::6")
)

// StartServe starts `natcheck serve` (binary) in the internet namespace as
// a second RFC 5780 server: --primary 198.19.0.5 --alternate 198.19.0.6
// (RendezvousAddr, RendezvousAltAddr), and with a Mode6 also --primary
// 2001:2:0:100::5 --alternate 2001:2:0:100::6, on ports 3478 and 3479. It
// waits, at most 15 s, until every primary answers a Binding request, and
// returns the primaries, IPv4 first. Close stops it.
func (l *Lab) StartServe(ctx context.Context, binary string) ([]netip.AddrPort, error) {
	pairs := [][2]netip.Addr{{RendezvousAddr, RendezvousAltAddr}}
	if l.Mode6 != "" {
		pairs = append(pairs, [2]netip.Addr{ServeAddr6, ServeAltAddr6})
	}
	var args []string
	var primaries []netip.AddrPort
	for _, p := range pairs {
		for _, a := range p {
			bits := 32
			if a.Is6() {
				bits = 128
			}
			cmd := []string{"addr", "add", fmt.Sprintf("%s/%d", a, bits), "dev", internetIf}
			if a.Is6() {
				cmd = append([]string{"-6"}, append(cmd, "nodad")...)
			}
			if err := ipns(ctx, l.Internet, cmd...); err != nil {
				return nil, err
			}
		}
		args = append(args, "--primary", netip.AddrPortFrom(p[0], STUNPort).String(), "--alternate", netip.AddrPortFrom(p[1], STUNAltPort).String())
		primaries = append(primaries, netip.AddrPortFrom(p[0], STUNPort))
	}
	if err := l.startProc("serve", l.Internet, nil, binary, append([]string{"serve"}, args...)...); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	start := time.Now()
	for attempt := 0; attempt < 150; attempt++ {
		var err error
		for _, p := range primaries {
			local := netip.AddrPortFrom(PlainSTUNAddr, 0)
			if p.Addr().Is6() {
				local = netip.AddrPortFrom(PlainSTUNAddr6, 0)
			}
			if _, err = l.Binding(l.Internet, local, p, 300*time.Millisecond); err != nil {
				break
			}
		}
		if err == nil {
			l.logf("lab: natcheck serve on %v answers after %v", primaries, time.Since(start).Round(time.Millisecond))
			return primaries, nil
		}
		if exited := l.exitedProc(); exited != "" {
			return nil, fmt.Errorf("%s exited: %v", exited, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("natcheck serve not ready after %v: %w", time.Since(start).Round(time.Millisecond), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil, errors.New("natcheck serve not ready")
}
