package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// NAT64 in the lab (Options.NAT64): the client is IPv6-only (its IPv4
// address and route are removed), the router runs tayga, a userspace
// stateless NAT64, on the network-specific prefix 2001:2:0:6464::/96 with a
// dynamic IPv4 pool that the IPv4 Mode then masquerades like any LAN
// address (stateless NAT64 + NAT44 = stateful NAT64), and dnsmasq on the
// router's LAN address answers the AAAA query for ipv4only.arpa with that
// prefix (the DNS64 answer RFC 7050 looks for). Not the well-known prefix
// 64:ff9b::/96: RFC 6052 section 3.1 forbids it for non-global IPv4
// addresses, and tayga refuses to translate the lab's 198.18.0.0/15 (RFC
// 2544) with it. The client's
// /etc/resolv.conf (bind-mounted by `ip netns exec` from
// /etc/netns/<client>/resolv.conf) names that resolver.
var (
	NAT64Prefix   = netip.MustParsePrefix("2001:2:0:6464::/96")
	NAT64Pool     = netip.MustParsePrefix("198.18.200.0/24")      // tayga's dynamic pool
	NAT64TaygaV4  = netip.MustParseAddr("198.18.200.1")           // tayga's own IPv4 address
	NAT64TaygaV6  = netip.MustParseAddr("2001:2:0:200::1")        // tayga's own IPv6 address
	IPv4OnlyAddr6 = netip.MustParseAddr("2001:2:0:6464::c000:aa") // ipv4only.arpa's AAAA: 192.0.0.170 in the prefix
)

const nat64If = "nat64"

// NAT64Available reports what this machine lacks for Options.NAT64
// (tayga, dnsmasq), or nil.
func NAT64Available() error {
	var missing []string
	for _, bin := range []string{"tayga", "dnsmasq"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, bin+" not found")
		}
	}
	if missing != nil {
		return errors.New(strings.Join(missing, ", "))
	}
	return nil
}

// nat64Rules returns the router's extra forward rules for NAT64: IPv4
// that tayga emits may leave by the WAN; IPv6 between the LAN and tayga
// passes (forward6); and the input rules that let the client's DNS
// queries reach dnsmasq.
func nat64Rules() (fwd, fwd6, input []string) {
	fwd = []string{fmt.Sprintf("iifname %q oifname %q accept", nat64If, routerWAN)}
	fwd6 = []string{
		fmt.Sprintf("iifname %q oifname %q accept", routerLAN, nat64If),
		fmt.Sprintf("iifname %q oifname %q accept", nat64If, routerLAN),
	}
	input = []string{
		fmt.Sprintf("iifname %q udp dport 53 accept", routerLAN),
		fmt.Sprintf("iifname %q tcp dport 53 accept", routerLAN),
	}
	return fwd, fwd6, input
}

// startNAT64 makes the client IPv6-only and starts tayga and dnsmasq in
// the router.
func (l *Lab) startNAT64(ctx context.Context) error {
	if err := ipns(ctx, l.Client, "-4", "addr", "flush", "dev", clientIf); err != nil {
		return err
	}
	data := l.path("tayga")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return err
	}
	conf := strings.Join([]string{
		"tun-device " + nat64If,
		"ipv4-addr " + NAT64TaygaV4.String(),
		// tayga's own IPv6 address, outside the prefix.
		"ipv6-addr " + NAT64TaygaV6.String(),
		"prefix " + NAT64Prefix.String(),
		"dynamic-pool " + NAT64Pool.String(),
		"data-dir " + data,
	}, "\n") + "\n"
	confFile := l.path("tayga.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o644); err != nil {
		return err
	}
	if _, err := nsexec(ctx, l.Router, "tayga", "-c", confFile, "--mktun"); err != nil {
		return err
	}
	for _, s := range [][]string{
		{"link", "set", nat64If, "up"},
		{"-4", "route", "add", NAT64Pool.String(), "dev", nat64If},
		{"-6", "route", "add", NAT64Prefix.String(), "dev", nat64If},
	} {
		if err := ipns(ctx, l.Router, s...); err != nil {
			return err
		}
	}
	if err := l.startProc("tayga", l.Router, nil, "tayga", "-c", confFile, "--nodetach"); err != nil {
		return err
	}
	resolver := RouterLANAddr6
	if l.Mode6.usesULA() {
		resolver = RouterULA6
	}
	if err := l.startProc("dnsmasq", l.Router, nil, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
		"--no-resolv", "--no-hosts", "--user=root", "--bind-interfaces", "--listen-address="+resolver.String(),
		"--pid-file="+l.path("dnsmasq.pid"), "--log-queries", "--log-facility=-",
		"--host-record=ipv4only.arpa,"+IPv4OnlyAddr6.String()); err != nil {
		return err
	}
	dir := filepath.Join("/etc/netns", l.Client)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	l.mu.Lock()
	l.etcNetns = append(l.etcNetns, dir)
	l.mu.Unlock()
	if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte("nameserver "+resolver.String()+"\n"), 0o644); err != nil {
		return err
	}
	// Wait, at most 10 s, until the resolver answers and a packet gets
	// through NAT64 to coturn.
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	synth := netip.AddrPortFrom(synthesize64(STUNAddr), STUNPort)
	var err error
	for attempt := 0; attempt < 100; attempt++ {
		var addrs []netip.Addr
		addrs, err = queryAAAA(l.Client, netip.AddrPortFrom(resolver, 53), "ipv4only.arpa", 300*time.Millisecond)
		if err == nil && (len(addrs) != 1 || addrs[0] != IPv4OnlyAddr6) {
			err = fmt.Errorf("ipv4only.arpa AAAA %v, want %v", addrs, IPv4OnlyAddr6)
		}
		if err == nil {
			_, err = l.Binding(l.Client, netip.AddrPortFrom(l.ClientAddr6, 0), synth, 300*time.Millisecond)
		}
		if err == nil {
			return nil
		}
		if exited := l.exitedProc(); exited != "" {
			return fmt.Errorf("%s exited: %v", exited, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("NAT64 not ready: %w", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("NAT64 not ready: %w", err)
}

// synthesize64 embeds a in NAT64Prefix (RFC 6052, /96).
func synthesize64(a netip.Addr) netip.Addr {
	b := NAT64Prefix.Addr().As16()
	v4 := a.As4()
	copy(b[12:], v4[:])
	return netip.AddrFrom16(b)
}

// queryAAAA sends one DNS query for the AAAA records of name from a UDP
// socket in namespace ns to server, and returns the addresses answered.
// (Go's resolver runs its queries on other goroutines, which would leave
// the namespace.)
func queryAAAA(ns string, server netip.AddrPort, name string, timeout time.Duration) ([]netip.Addr, error) {
	var c *net.UDPConn
	if err := InNetns(ns, func() error {
		var err error
		c, err = net.DialUDP("udp6", nil, net.UDPAddrFromAddrPort(server))
		return err
	}); err != nil {
		return nil, err
	}
	defer c.Close()
	// Header: id 0x6464, RD, one question.
	q := []byte{0x64, 0x64, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0}
	for _, label := range strings.Split(name, ".") {
		q = append(q, byte(len(label)))
		q = append(q, label...)
	}
	q = append(q, 0, 0, 28, 0, 1) // root, type AAAA, class IN
	if _, err := c.Write(q); err != nil {
		return nil, err
	}
	c.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil {
		return nil, err
	}
	b := buf[:n]
	if n < len(q) || b[0] != 0x64 || b[1] != 0x64 || b[3]&0x0f != 0 {
		return nil, fmt.Errorf("bad DNS response % x", b)
	}
	count := int(b[6])<<8 | int(b[7])
	var addrs []netip.Addr
	off := len(q) // the question is echoed
	for i := 0; i < count && off < n; i++ {
		// Name: a compression pointer (2 bytes) or labels.
		for off < n {
			if b[off]&0xc0 == 0xc0 {
				off += 2
				break
			}
			if b[off] == 0 {
				off++
				break
			}
			off += int(b[off]) + 1
		}
		if off+10 > n {
			break
		}
		typ, rdlen := int(b[off])<<8|int(b[off+1]), int(b[off+8])<<8|int(b[off+9])
		off += 10
		if off+rdlen > n {
			break
		}
		if a, ok := netip.AddrFromSlice(b[off : off+rdlen]); ok && typ == 28 {
			addrs = append(addrs, a)
		}
		off += rdlen
	}
	return addrs, nil
}
