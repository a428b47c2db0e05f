package lab

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

// A CGNATLab is a Lab with a second NAT, a carrier-grade NAT, between the
// router and the internet: a double NAT.
//
//	client (198.18.1.2) --lan-- router (198.18.1.1 | 100.64.0.2) --cgn-- CGN (100.64.0.1 | 198.19.0.1) --wan-- internet (198.19.0.2, .3, .4)
//
// The router is a home router (masquerade with a stateful forward filter,
// accepting unsolicited input so that a port mapping daemon on it can
// talk to the LAN and learn its address with STUN), whose WAN address is
// in the CGN's inside network. The CGN masquerades its inside network to
// its own address 198.19.0.1, which is the client's public address; it
// lets in only what belongs to a connection from inside and drops every
// unsolicited packet addressed to itself, as carriers' NATs do. The
// internet namespace is a Lab's: coturn and the plain STUN server.
//
// With DMZ the CGN is rather an ISP modem with the router as its exposed
// host: it sends every unsolicited packet on to the router, and the
// router's own mappings work from the internet.
//
// The embedded Lab's Router is the home router (StartMiniupnpd runs there);
// PublicAddr is the CGN's address.
type CGNATLab struct {
	*Lab
	// CGN is the carrier NAT's namespace.
	CGN string
	// RouterWAN is the home router's WAN address; CGNInside the CGN's
	// address on that network (the router's default route).
	RouterWAN, CGNInside netip.Addr
	// DMZ: the outer NAT forwards every unsolicited packet to the router
	// (CGNATOptions.DMZ).
	DMZ    bool
	inside netip.Prefix
}

// CGNATOptions configures a CGNATLab.
type CGNATOptions struct {
	// Inside is the network between the router and the CGN, a /24: the
	// CGN takes its first address, the router its second. The zero value means
	// 100.64.0.0/24, in the shared address space of RFC 6598 that
	// carriers use for it.
	Inside netip.Prefix
	// DMZ makes the outer NAT forward every unsolicited UDP and TCP
	// packet arriving on its public address to the router's WAN address,
	// port for port, as an ISP modem's "exposed host" (DMZ) setting does:
	// a double NAT through which the router's own mappings do work.
	DMZ bool
	// Dir and Logf are as in Options.
	Dir  string
	Logf func(format string, args ...any)
}

// DefaultCGNATInside is the network between the router and the CGN.
var DefaultCGNATInside = netip.MustParsePrefix("100.64.0.0/24")

// Interface names of the CGN namespace.
const (
	cgnInsideIf = "inside0" // towards the home router
	cgnWANIf    = "wan0"    // towards the internet
)

// NewCGNAT starts a CGNATLab for a test, as New does a Lab.
func NewCGNAT(t testing.TB, opts CGNATOptions) *CGNATLab {
	t.Helper()
	return startForTest(t, &opts.Dir, &opts.Logf, func(ctx context.Context) (*CGNATLab, error) { return StartCGNAT(ctx, opts) })
}

// StartCGNAT builds a CGNATLab and starts the servers. The caller must
// Close it; on error StartCGNAT has already cleaned up.
func StartCGNAT(ctx context.Context, opts CGNATOptions) (c *CGNATLab, err error) {
	inside := opts.Inside
	if !inside.IsValid() {
		inside = DefaultCGNATInside
	}
	inside = inside.Masked()
	// buildRouter gives the router's WAN address a /24.
	if !inside.Addr().Is4() || inside.Bits() != 24 || inside.Contains(RouterLANAddr) || inside.Contains(RouterWANAddr) || inside.Contains(STUNAddr) {
		return nil, fmt.Errorf("CGN inside network %v: want an IPv4 /24 apart from the lab's other addresses", opts.Inside)
	}
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if err := RemoveStale(ctx, logf); err != nil {
		logf("lab: removing stale namespaces: %v", err)
	}
	prefix := fmt.Sprintf("%s%d-%s", nsPrefix, os.Getpid(), randomHex(3))
	l := &Lab{
		Mode:       Masquerade,
		Input:      InputAccept,
		Client:     prefix + "-client",
		Router:     prefix + "-router",
		Internet:   prefix + "-inet",
		PublicAddr: RouterWANAddr,
		STUN:       netip.AddrPortFrom(STUNAddr, STUNPort),
		STUNAlt:    netip.AddrPortFrom(STUNAltAddr, STUNAltPort),
		PlainSTUN:  netip.AddrPortFrom(PlainSTUNAddr, STUNPort),
		Dir:        opts.Dir,
		prefix:     prefix,
		logf:       logf,
	}
	if l.Dir == "" {
		d, err := os.MkdirTemp("", "natcheck-cgnat-")
		if err != nil {
			return nil, err
		}
		l.Dir, l.ownDir = d, true
	}
	c = &CGNATLab{Lab: l, CGN: prefix + "-cgn", DMZ: opts.DMZ, inside: inside}
	c.CGNInside = inside.Addr().Next()
	c.RouterWAN = c.CGNInside.Next()
	defer func() {
		if err != nil {
			c.DumpLogs(logf)
			c.Close()
			c = nil
		}
	}()
	if err := c.buildNetwork(ctx, inside); err != nil {
		return c, err
	}
	if err := l.startServers(ctx); err != nil {
		return c, err
	}
	return c, nil
}

func (c *CGNATLab) buildNetwork(ctx context.Context, inside netip.Prefix) error {
	l := c.Lab
	for _, ns := range []string{l.Client, l.Router, c.CGN, l.Internet} {
		if err := l.addNetns(ctx, ns); err != nil {
			return err
		}
	}
	site := DefaultSite
	site.RouterWAN = c.RouterWAN
	err := buildRouter(ctx, router{
		client: l.Client, router: l.Router, internet: c.CGN, inetIf: cgnInsideIf,
		site: site, mode: l.Mode, input: l.Input,
		defaultVia: c.CGNInside,
		rulesFile:  filepath.Join(l.Dir, "router.nft"),
	})
	if err != nil {
		return err
	}
	steps := [][]string{
		{c.CGN, "addr", "add", netip.PrefixFrom(c.CGNInside, inside.Bits()).String(), "dev", cgnInsideIf},
		{c.CGN, "link", "set", cgnInsideIf, "up"},
		{c.CGN, "link", "add", cgnWANIf, "type", "veth", "peer", "name", internetIf, "netns", l.Internet},
		{c.CGN, "addr", "add", RouterWANAddr.String() + "/24", "dev", cgnWANIf},
		{c.CGN, "link", "set", cgnWANIf, "up"},
		{l.Internet, "addr", "add", STUNAddr.String() + "/24", "dev", internetIf},
		{l.Internet, "addr", "add", STUNAltAddr.String() + "/24", "dev", internetIf},
		{l.Internet, "addr", "add", PlainSTUNAddr.String() + "/24", "dev", internetIf},
		{l.Internet, "link", "set", internetIf, "up"},
	}
	for _, s := range steps {
		if err := ipns(ctx, s[0], s[1:]...); err != nil {
			return err
		}
	}
	if _, err := nsexec(ctx, c.CGN, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"); err != nil {
		return err
	}
	rules := c.CGNRuleset()
	file := filepath.Join(l.Dir, "cgn.nft")
	if err := os.WriteFile(file, []byte(rules), 0o644); err != nil {
		return err
	}
	if _, err := nsexec(ctx, c.CGN, "nft", "-f", file); err != nil {
		return fmt.Errorf("loading %s: %w", file, err)
	}
	l.logf("lab: %s: double NAT: router masquerade/accept, WAN %v behind CGN %v (%v) masquerading to %v, DMZ %v; namespaces %s/%s/%s/%s",
		l.prefix, c.RouterWAN, c.CGNInside, inside, RouterWANAddr, c.DMZ, l.Client, l.Router, c.CGN, l.Internet)
	return nil
}

// CGNRuleset is the CGN's nftables ruleset: masquerade of the inside
// network to its WAN address, a stateful forward filter, and every
// unsolicited packet addressed to the CGN itself dropped (counted as
// "unsolicited"), as is every unsolicited packet from the internet it
// would forward ("inbound"). With DMZ, unsolicited UDP and TCP to its
// address go to the router's WAN address instead (counted as "dmz").
func (c *CGNATLab) CGNRuleset() string {
	var pre, fwd string
	if c.DMZ {
		pre = fmt.Sprintf(`	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		iifname %q meta l4proto { tcp, udp } counter dnat to %s comment "dmz"
	}
`, cgnWANIf, c.RouterWAN)
		fwd = "\t\tct status dnat accept\n"
	}
	return fmt.Sprintf(`# natcheck lab carrier-grade NAT
flush ruleset
table inet cgn {
	chain input {
		type filter hook input priority filter; policy drop;
		iif "lo" accept
		ct state established,related accept
		counter drop comment "unsolicited"
	}
	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		ct state invalid drop
%[4]s		iifname %[1]q oifname %[2]q ip saddr %[3]s accept
		counter drop comment "inbound"
	}
}
table ip cgnnat {
%[5]s	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname %[2]q ip saddr %[3]s masquerade
	}
}
`, cgnInsideIf, cgnWANIf, c.inside, fwd, pre)
}

// CGNCounters returns the packet counts of the CGN's commented rules:
// "unsolicited" (addressed to the CGN itself, belonging to no connection),
// "inbound" (to be forwarded inside without a connection) and, with DMZ,
// "dmz" (sent on to the router).
func (c *CGNATLab) CGNCounters(ctx context.Context) (map[string]int64, error) {
	return routerCounters(ctx, c.CGN)
}

// DumpLogs writes the server logs, the router's and the CGN's rulesets.
func (c *CGNATLab) DumpLogs(logf func(string, ...any)) {
	c.Lab.DumpLogs(logf)
	if c.CGN != "" {
		out, err := runOut(context.Background(), "ip", "netns", "exec", c.CGN, "nft", "list", "ruleset")
		if err == nil {
			logf("lab: ---- CGN ruleset ----\n%s", out)
		}
	}
}
