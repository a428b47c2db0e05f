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
	if l.Mode == OneToOne {
		// The router answers ARP for the client's public address.
		steps = append(steps, []string{l.Router, "addr", "add", OneToOneAddr.String() + "/32", "dev", routerWAN})
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
	l.logf("lab: %s: router mode %s, loss %d%%, namespaces %s/%s/%s", l.prefix, l.Mode, l.LossPercent, l.Client, l.Router, l.Internet)
	return nil
}

// Ruleset returns the router's nftables ruleset for the lab's mode.
func (l *Lab) Ruleset() string {
	return Ruleset(l.Mode, l.LossPercent)
}

// Ruleset returns the router's nftables ruleset for mode with loss percent
// of forwarded UDP dropped.
func Ruleset(mode Mode, loss int) string {
	var fwd, pre, post []string
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
	fmt.Fprintf(&b, "# natcheck lab router, mode %s, loss %d%%\n", mode, loss)
	b.WriteString("flush ruleset\n")
	b.WriteString("table inet lab {\n")
	b.WriteString("\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n")
	b.WriteString("\t\tiif \"lo\" accept\n")
	b.WriteString("\t\tct state established,related accept\n")
	b.WriteString("\t\t# Anything else addressed to the router itself is unsolicited: drop it,\n")
	b.WriteString("\t\t# so that masquerade never records an inbound probe as a connection\n")
	b.WriteString("\t\t# to the router (see shared/nat-testing.md).\n")
	b.WriteString("\t\tcounter drop comment \"unsolicited\"\n\t}\n")
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
// "unsolicited" (dropped packets addressed to the router itself), "loss"
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
