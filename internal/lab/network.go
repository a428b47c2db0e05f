package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
)

// Interface names. veth pairs are created inside the namespaces, so the
// names never meet in the host's namespace.
const (
	clientIf   = "eth0" // client side of the LAN
	routerLAN  = "lan0" // router side of the LAN
	routerWAN  = "wan0" // router side of the WAN
	internetIf = "eth0" // internet side of the WAN
)

// Site is the addressing of one client and its router: what the router's
// rules and routes name. The single-site Lab uses DefaultSite; a PairLab
// has two sites.
type Site struct {
	LAN        netip.Prefix // the client's LAN
	Client     netip.Addr   // the client on the LAN
	RouterLAN  netip.Addr   // the router on the LAN (the client's default route)
	RouterWAN  netip.Addr   // the router on the WAN (the public address masquerade uses)
	OneToOne   netip.Addr   // the client's public address in OneToOne mode
	Restricted netip.Addr   // the client's public address in Restricted mode
	V6         Site6        // the site's IPv6 addressing, for a Mode6
}

// DefaultSite is the single-site Lab's addressing.
var DefaultSite = Site{
	LAN:        netip.MustParsePrefix("198.18.1.0/24"),
	Client:     ClientAddr,
	RouterLAN:  RouterLANAddr,
	RouterWAN:  RouterWANAddr,
	OneToOne:   OneToOneAddr,
	Restricted: RestrictedAddr,
	V6:         DefaultSite6,
}

// PublicAddr is the client's address as the internet sees it behind a
// router in mode: the client's own address when the router does no NAT.
func (s Site) PublicAddr(mode Mode) netip.Addr {
	switch mode {
	case Routed, Firewall:
		return s.Client
	case OneToOne:
		return s.OneToOne
	case Restricted:
		return s.Restricted
	}
	return s.RouterWAN
}

// router is what buildRouter needs to wire one site: the client and router
// namespaces, the internet namespace and the name the WAN veth's far end
// gets there, and the router's behaviour.
type router struct {
	client, router, internet string
	inetIf                   string // the WAN veth's end in the internet namespace
	site                     Site
	mode                     Mode
	mode6                    Mode6 // "": no IPv6 rules
	nat64                    bool  // the rules tayga and dnsmasq need
	input                    InputPolicy
	loss                     int
	loss6                    int // IPv6 UDP only, in forward6
	// defaultVia, if valid, is the router's default route (an address in
	// the internet namespace), for a WAN where other sites' LANs lie
	// behind the internet namespace.
	defaultVia netip.Addr
	rulesFile  string
}

// buildRouter creates the LAN and WAN veth pairs of one site, addresses
// and routes them, and loads the router's ruleset. The internet end of the
// WAN veth (r.inetIf) is created but left down and without address: the
// caller addresses it or puts it in a bridge.
func buildRouter(ctx context.Context, r router) error {
	public := r.site.PublicAddr(r.mode)
	steps := [][]string{
		{r.router, "link", "add", routerLAN, "type", "veth", "peer", "name", clientIf, "netns", r.client},
		{r.router, "link", "add", routerWAN, "type", "veth", "peer", "name", r.inetIf, "netns", r.internet},

		{r.client, "addr", "add", r.site.Client.String() + "/" + fmt.Sprint(r.site.LAN.Bits()), "dev", clientIf},
		{r.client, "link", "set", clientIf, "up"},
		{r.client, "route", "add", "default", "via", r.site.RouterLAN.String()},

		{r.router, "addr", "add", r.site.RouterLAN.String() + "/" + fmt.Sprint(r.site.LAN.Bits()), "dev", routerLAN},
		{r.router, "addr", "add", r.site.RouterWAN.String() + "/24", "dev", routerWAN},
		{r.router, "link", "set", routerLAN, "up"},
		{r.router, "link", "set", routerWAN, "up"},
	}
	if r.mode == OneToOne || r.mode == Restricted {
		// The router answers ARP for the client's own public address.
		steps = append(steps, []string{r.router, "addr", "add", public.String() + "/32", "dev", routerWAN})
	}
	if r.defaultVia.IsValid() {
		steps = append(steps, []string{r.router, "route", "add", "default", "via", r.defaultVia.String()})
	}
	for _, s := range steps {
		if err := ipns(ctx, s[0], s[1:]...); err != nil {
			return err
		}
	}
	// Addresses must be usable at once (no duplicate address detection on
	// IPv4, but be explicit about forwarding).
	if _, err := nsexec(ctx, r.router, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"); err != nil {
		return err
	}
	rules := r.site.ruleset(r.mode, r.mode6, r.nat64, r.input, r.loss, r.loss6)
	if err := os.WriteFile(r.rulesFile, []byte(rules), 0o644); err != nil {
		return err
	}
	if _, err := nsexec(ctx, r.router, "nft", "-f", r.rulesFile); err != nil {
		return fmt.Errorf("loading %s: %w", r.rulesFile, err)
	}
	return nil
}

func (l *Lab) buildNetwork(ctx context.Context) error {
	for _, ns := range []string{l.Client, l.Router, l.Internet} {
		if err := l.addNetns(ctx, ns); err != nil {
			return err
		}
		if l.Mode6 != "" {
			// Before any interface exists: no DAD on link-local addresses
			// either (see noDAD).
			if err := noDAD(ctx, ns); err != nil {
				return err
			}
		}
	}
	err := buildRouter(ctx, router{
		client: l.Client, router: l.Router, internet: l.Internet, inetIf: internetIf,
		site: DefaultSite, mode: l.Mode, mode6: l.Mode6, nat64: l.NAT64, input: l.Input, loss: l.LossPercent, loss6: l.Loss6Percent,
		rulesFile: filepath.Join(l.Dir, "router.nft"),
	})
	if err != nil {
		return err
	}
	steps := [][]string{
		{l.Internet, "addr", "add", STUNAddr.String() + "/24", "dev", internetIf},
		{l.Internet, "addr", "add", STUNAltAddr.String() + "/24", "dev", internetIf},
		{l.Internet, "addr", "add", PlainSTUNAddr.String() + "/24", "dev", internetIf},
		{l.Internet, "link", "set", internetIf, "up"},
	}
	if l.PublicAddr == ClientAddr {
		// Without NAT the internet must route the client's LAN back.
		steps = append(steps, []string{l.Internet, "route", "add", DefaultSite.LAN.String(), "via", RouterWANAddr.String()})
	}
	for _, s := range steps {
		if err := ipns(ctx, s[0], s[1:]...); err != nil {
			return err
		}
	}
	if l.Mode6 != "" {
		if err := l.buildIPv6(ctx); err != nil {
			return err
		}
		l.logf("lab: %s: IPv6 mode %s", l.prefix, l.Mode6)
	}
	l.logf("lab: %s: router mode %s, input %s, loss %d%% (IPv6 only: %d%%), namespaces %s/%s/%s", l.prefix, l.Mode, l.Input, l.LossPercent, l.Loss6Percent, l.Client, l.Router, l.Internet)
	return nil
}

// Ruleset returns the router's nftables ruleset for the lab's mode, input
// policy and loss.
func (l *Lab) Ruleset() string {
	return DefaultSite.ruleset(l.Mode, l.Mode6, l.NAT64, l.Input, l.LossPercent, l.Loss6Percent)
}

// restrictedTimeout is how long the Restricted router remembers an address
// the client sent to (refreshed by every packet the client sends there).
const restrictedTimeout = "120s"

// Ruleset returns the router's nftables ruleset for mode, with input the
// policy for unsolicited packets addressed to the router itself ("" means
// InputDrop) and loss percent of forwarded UDP dropped, for the single-site
// Lab's addresses (DefaultSite).
func Ruleset(mode Mode, input InputPolicy, loss int) string {
	return DefaultSite.Ruleset(mode, input, loss)
}

// Ruleset returns the nftables ruleset of the site's router for mode,
// input policy and loss (see the function Ruleset).
func (s Site) Ruleset(mode Mode, input InputPolicy, loss int) string {
	return s.ruleset(mode, "", false, input, loss, 0)
}

// ruleset is Ruleset with the IPv6 behaviour mode6 beside: "" gives the
// IPv4-only ruleset, unchanged; otherwise the forward chain sends IPv6 to
// its own chain forward6 (after the loss rule, which applies to both
// families), the input chain accepts ICMPv6 (neighbour discovery), and
// NPTv6 and NAT66 get an ip6 nat table; nat64 adds the rules of
// nat64Rules; loss6 is the percentage of IPv6 UDP forward6 drops (see
// ruleset6).
func (s Site) ruleset(mode Mode, mode6 Mode6, nat64 bool, input InputPolicy, loss, loss6 int) string {
	if input == "" {
		input = InputDrop
	}
	var fwd, pre, post, sets []string
	if loss > 0 {
		fwd = append(fwd, fmt.Sprintf("meta l4proto udp numgen random mod 100 < %d counter drop comment \"loss\"", loss))
	}
	var fwd6, sets6, pre6, post6 []string
	if mode6 != "" {
		fwd6, sets6, pre6, post6 = ruleset6(s.V6, mode6, loss6)
		fwd = append(fwd, "meta nfproto ipv6 jump forward6")
	}
	var input64 []string
	if nat64 {
		f, f6, in := nat64Rules()
		fwd = append(fwd, f...)
		fwd6 = append(f6, fwd6...)
		input64 = in
	}
	stateful := []string{
		"ct state established,related accept",
		"ct state invalid drop",
		fmt.Sprintf("iifname %q oifname %q accept", routerLAN, routerWAN),
	}
	wan := fmt.Sprintf("oifname %q", routerWAN)
	switch mode {
	case Routed:
		fwd = append(fwd, "accept")
	case Firewall:
		fwd = append(fwd, stateful...)
	case OneToOne:
		fwd = append(fwd, "accept")
		pre = append(pre, fmt.Sprintf("iifname %q ip daddr %s dnat to %s", routerWAN, s.OneToOne, s.Client))
		post = append(post, fmt.Sprintf("%s ip saddr %s snat to %s", wan, s.Client, s.OneToOne))
	case Restricted:
		// 1:1 NAT as OneToOne (ports kept: endpoint-independent mapping),
		// and address-dependent filtering: the client's UDP packets record
		// (destination address, client port) in a set; an inbound packet
		// passes if it belongs to a connection or comes from a recorded
		// address to that port, from any of its ports. The forward chain
		// sees inbound packets after dnat and outbound ones before snat,
		// so both sides of the key use the client's own port.
		sets = append(sets, fmt.Sprintf("set restricted {\n\t\ttype ipv4_addr . inet_service\n\t\tflags dynamic,timeout\n\t\ttimeout %s\n\t}", restrictedTimeout))
		// Every outbound packet refreshes its element, also on an
		// established connection.
		fwd = append(fwd, fmt.Sprintf("iifname %q oifname %q meta l4proto udp update @restricted { ip daddr . udp sport }", routerLAN, routerWAN))
		fwd = append(fwd, stateful...)
		fwd = append(fwd,
			fmt.Sprintf("iifname %q oifname %q meta l4proto udp ip saddr . udp dport @restricted accept", routerWAN, routerLAN),
			fmt.Sprintf("iifname %q counter drop comment \"filtered\"", routerWAN))
		pre = append(pre, fmt.Sprintf("iifname %q ip daddr %s dnat to %s", routerWAN, s.Restricted, s.Client))
		post = append(post, fmt.Sprintf("%s ip saddr %s snat to %s", wan, s.Client, s.Restricted))
	case Masquerade:
		fwd = append(fwd, stateful...)
		post = append(post, wan+" masquerade")
	case Symmetric:
		fwd = append(fwd, stateful...)
		post = append(post, wan+" masquerade fully-random")
	case UDPBlocked:
		fwd = append(fwd, "meta l4proto udp counter drop comment \"udp blocked\"")
		fwd = append(fwd, stateful...)
		post = append(post, wan+" masquerade")
	case TLS443Only:
		fwd = append(fwd, "meta l4proto udp counter drop comment \"udp blocked\"")
		fwd = append(fwd, stateful[:2]...)
		fwd = append(fwd,
			fmt.Sprintf("iifname %q oifname %q tcp dport 443 accept", routerLAN, routerWAN),
			// Dropped, not rejected: the client's SYN goes unanswered.
			"meta l4proto tcp counter drop comment \"tcp blocked\"")
		post = append(post, wan+" masquerade")
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# natcheck lab router, mode %s, input %s, loss %d%%\n", mode, input, loss)
	if loss6 > 0 {
		fmt.Fprintf(&b, "# IPv6 UDP loss %d%%\n", loss6)
	}
	b.WriteString("flush ruleset\n")
	b.WriteString("table inet lab {\n")
	for _, set := range append(sets, sets6...) {
		b.WriteString("\t" + set + "\n")
	}
	fmt.Fprintf(&b, "\tchain input {\n\t\ttype filter hook input priority filter; policy %s;\n", input)
	b.WriteString("\t\tiif \"lo\" accept\n")
	b.WriteString("\t\tct state established,related accept\n")
	if mode6 != "" {
		b.WriteString("\t\t# IPv6 neighbour discovery with the router.\n")
		b.WriteString("\t\tmeta l4proto ipv6-icmp accept\n")
	}
	for _, r := range input64 {
		b.WriteString("\t\t" + r + "\n")
	}
	if input == InputAccept {
		b.WriteString("\t\t# Anything else addressed to the router itself is unsolicited: accepted,\n")
		b.WriteString("\t\t# as on a bare Linux box or a Docker host. conntrack then records an\n")
		b.WriteString("\t\t# inbound probe as a connection to the router, and masquerade must pick\n")
		b.WriteString("\t\t# another port when the client later sends to that endpoint (issue 10,\n")
		b.WriteString("\t\t# shared/nat-testing.md).\n")
		b.WriteString("\t\tcounter accept comment \"unsolicited\"\n\t}\n")
	} else {
		b.WriteString("\t\t# Anything else addressed to the router itself is unsolicited: drop it,\n")
		b.WriteString("\t\t# so that masquerade never records an inbound probe as a connection\n")
		b.WriteString("\t\t# to the router (see shared/nat-testing.md).\n")
		b.WriteString("\t\tcounter drop comment \"unsolicited\"\n\t}\n")
	}
	b.WriteString("\tchain forward {\n\t\ttype filter hook forward priority filter; policy drop;\n")
	for _, r := range fwd {
		b.WriteString("\t\t" + r + "\n")
	}
	b.WriteString("\t\tcounter drop\n\t}\n")
	if mode6 != "" {
		fmt.Fprintf(&b, "\t# IPv6, mode %s.\n", mode6)
		b.WriteString("\tchain forward6 {\n")
		for _, r := range fwd6 {
			b.WriteString("\t\t" + r + "\n")
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	if len(pre)+len(post) > 0 {
		b.WriteString("table ip labnat {\n")
		b.WriteString("\tchain prerouting {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n")
		for _, r := range pre {
			b.WriteString("\t\t" + r + "\n")
		}
		b.WriteString("\t}\n")
		b.WriteString("\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n")
		for _, r := range post {
			b.WriteString("\t\t" + r + "\n")
		}
		b.WriteString("\t}\n")
		b.WriteString("}\n")
	}
	if len(pre6)+len(post6) > 0 {
		b.WriteString("table ip6 labnat6 {\n")
		b.WriteString("\tchain prerouting {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n")
		for _, r := range pre6 {
			b.WriteString("\t\t" + r + "\n")
		}
		b.WriteString("\t}\n")
		b.WriteString("\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n")
		for _, r := range post6 {
			b.WriteString("\t\t" + r + "\n")
		}
		b.WriteString("\t}\n")
		b.WriteString("}\n")
	}
	return b.String()
}

// Counters returns the packet counts of the router's commented rules:
// "unsolicited" (packets addressed to the router itself that belong to no
// connection: dropped, or accepted with InputAccept), "filtered" (inbound
// packets the Restricted router's address-dependent filter dropped), "loss"
// (UDP dropped by the loss variant), "loss6" (IPv6 UDP dropped by
// Loss6Percent), "udp blocked" and "tcp blocked" (TCP
// dropped by tls443only: SYNs to ports other than 443).
func (l *Lab) Counters(ctx context.Context) (map[string]int64, error) {
	return routerCounters(ctx, l.Router)
}

// routerCounters reads the commented rules' packet counters in the router
// namespace ns (see Lab.Counters).
func routerCounters(ctx context.Context, ns string) (map[string]int64, error) {
	out, err := nsexec(ctx, ns, "nft", "-j", "list", "ruleset")
	if err != nil {
		return nil, err
	}
	var doc struct {
		Nftables []struct {
			Rule *struct {
				Comment string            `json:"comment"`
				Expr    []json.RawMessage `json:"expr"`
			} `json:"rule"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		return nil, fmt.Errorf("nft -j: %w", err)
	}
	counts := make(map[string]int64)
	for _, item := range doc.Nftables {
		if item.Rule == nil || item.Rule.Comment == "" {
			continue
		}
		for _, e := range item.Rule.Expr {
			var c struct {
				Counter *struct {
					Packets int64 `json:"packets"`
				} `json:"counter"`
			}
			if json.Unmarshal(e, &c) == nil && c.Counter != nil {
				counts[item.Rule.Comment] += c.Counter.Packets
			}
		}
	}
	return counts, nil
}
