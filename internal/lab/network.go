package lab

import (
	"context"
	"encoding/json"
	"fmt"
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

func (l *Lab) buildNetwork(ctx context.Context) error {
	for _, ns := range []string{l.Client, l.Router, l.Internet} {
		if err := l.addNetns(ctx, ns); err != nil {
			return err
		}
	}
	steps := [][]string{
		{l.Router, "link", "add", routerLAN, "type", "veth", "peer", "name", clientIf, "netns", l.Client},
		{l.Router, "link", "add", routerWAN, "type", "veth", "peer", "name", internetIf, "netns", l.Internet},

		{l.Client, "addr", "add", ClientAddr.String() + "/24", "dev", clientIf},
		{l.Client, "link", "set", clientIf, "up"},
		{l.Client, "route", "add", "default", "via", RouterLANAddr.String()},

		{l.Router, "addr", "add", RouterLANAddr.String() + "/24", "dev", routerLAN},
		{l.Router, "addr", "add", RouterWANAddr.String() + "/24", "dev", routerWAN},
		{l.Router, "link", "set", routerLAN, "up"},
		{l.Router, "link", "set", routerWAN, "up"},

		{l.Internet, "addr", "add", STUNAddr.String() + "/24", "dev", internetIf},
		{l.Internet, "addr", "add", STUNAltAddr.String() + "/24", "dev", internetIf},
		{l.Internet, "addr", "add", PlainSTUNAddr.String() + "/24", "dev", internetIf},
		{l.Internet, "link", "set", internetIf, "up"},
	}
	if l.Mode == OneToOne || l.Mode == Restricted {
		// The router answers ARP for the client's own public address.
		steps = append(steps, []string{l.Router, "addr", "add", l.PublicAddr.String() + "/32", "dev", routerWAN})
	}
	if l.PublicAddr == ClientAddr {
		// Without NAT the internet must route the client's LAN back.
		steps = append(steps, []string{l.Internet, "route", "add", "198.18.1.0/24", "via", RouterWANAddr.String()})
	}
	for _, s := range steps {
		if err := ipns(ctx, s[0], s[1:]...); err != nil {
			return err
		}
	}
	// Addresses must be usable at once (no duplicate address detection on
	// IPv4, but be explicit about forwarding).
	if _, err := nsexec(ctx, l.Router, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"); err != nil {
		return err
	}
	rules := l.Ruleset()
	file := filepath.Join(l.Dir, "router.nft")
	if err := os.WriteFile(file, []byte(rules), 0o644); err != nil {
		return err
	}
	if _, err := nsexec(ctx, l.Router, "nft", "-f", file); err != nil {
		return fmt.Errorf("loading %s: %w", file, err)
	}
	l.logf("lab: %s: router mode %s, input %s, loss %d%%, namespaces %s/%s/%s", l.prefix, l.Mode, l.Input, l.LossPercent, l.Client, l.Router, l.Internet)
	return nil
}

// Ruleset returns the router's nftables ruleset for the lab's mode, input
// policy and loss.
func (l *Lab) Ruleset() string {
	return Ruleset(l.Mode, l.Input, l.LossPercent)
}

// restrictedTimeout is how long the Restricted router remembers an address
// the client sent to (refreshed by every packet the client sends there).
const restrictedTimeout = "120s"

// Ruleset returns the router's nftables ruleset for mode, with input the
// policy for unsolicited packets addressed to the router itself ("" means
// InputDrop) and loss percent of forwarded UDP dropped.
func Ruleset(mode Mode, input InputPolicy, loss int) string {
	if input == "" {
		input = InputDrop
	}
	var fwd, pre, post, sets []string
	if loss > 0 {
		fwd = append(fwd, fmt.Sprintf("meta l4proto udp numgen random mod 100 < %d counter drop comment \"loss\"", loss))
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
		pre = append(pre, fmt.Sprintf("iifname %q ip daddr %s dnat to %s", routerWAN, OneToOneAddr, ClientAddr))
		post = append(post, fmt.Sprintf("%s ip saddr %s snat to %s", wan, ClientAddr, OneToOneAddr))
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
		pre = append(pre, fmt.Sprintf("iifname %q ip daddr %s dnat to %s", routerWAN, RestrictedAddr, ClientAddr))
		post = append(post, fmt.Sprintf("%s ip saddr %s snat to %s", wan, ClientAddr, RestrictedAddr))
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
	b.WriteString("flush ruleset\n")
	b.WriteString("table inet lab {\n")
	for _, s := range sets {
		b.WriteString("\t" + s + "\n")
	}
	fmt.Fprintf(&b, "\tchain input {\n\t\ttype filter hook input priority filter; policy %s;\n", input)
	b.WriteString("\t\tiif \"lo\" accept\n")
	b.WriteString("\t\tct state established,related accept\n")
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
	return b.String()
}

// Counters returns the packet counts of the router's commented rules:
// "unsolicited" (packets addressed to the router itself that belong to no
// connection: dropped, or accepted with InputAccept), "filtered" (inbound
// packets the Restricted router's address-dependent filter dropped), "loss"
// (UDP dropped by the loss variant), "udp blocked" and "tcp blocked" (TCP
// dropped by tls443only: SYNs to ports other than 443).
func (l *Lab) Counters(ctx context.Context) (map[string]int64, error) {
	out, err := nsexec(ctx, l.Router, "nft", "-j", "list", "ruleset")
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
