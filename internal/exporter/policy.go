package exporter

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
)

// fqdnResolver looks names of two or more labels up as fully qualified:
// with a trailing dot, so that the host's search domains (resolv.conf
// search, Kubernetes ndots:5) never turn an allowed example.com into
// example.com.NS.svc.cluster.local. A single label (localhost, a Compose
// service name) is looked up as given: only /etc/hosts or a search domain
// can resolve it, and Go's resolver finds no /etc/hosts entry for
// "localhost.". Reports and labels keep the name as given; only the
// lookup changes.
type fqdnResolver struct {
	next interface {
		LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
	}
}

func (r fqdnResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	return r.next.LookupNetIP(ctx, network, fqdn(host))
}

// fqdn returns host with a trailing dot, unless it has one, is a single
// label or is an IP address.
func fqdn(host string) string {
	if !strings.Contains(host, ".") || strings.HasSuffix(host, ".") {
		return host
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return host
	}
	return host + "."
}

// destination is an address the probe may send to, on a range of ports.
type destination struct {
	addr   netip.Addr
	lo, hi uint16
}

// allowlist is where a module with allowed_targets may send while it
// probes one target: the addresses the target (and the module's own
// servers) resolved to, on the ports the check contacts there or that an
// allowed_targets entry naming the host admits; and whatever an IP, CIDR
// or * entry admits. Anything else a server names (OTHER-ADDRESS, the
// XOR-MAPPED-ADDRESS a hairpin test sends to) is refused. A turn module's
// target addresses are admitted on every port: a TURN server's relayed
// addresses are its own.
type allowlist struct {
	patterns []targetPattern
	kind     string
	// hosts are the names the check looks up, lower-case without a
	// trailing dot, with the ports it contacts at each.
	hosts map[string][]uint16

	mu    sync.Mutex
	dests []destination
}

// newAllowlist returns the allowlist of check c of a module with
// allowed_targets.
func newAllowlist(m *Module, c check) *allowlist {
	a := &allowlist{patterns: m.patterns, kind: m.Kind, hosts: map[string][]uint16{}}
	for host, ports := range c.contacts {
		if ip, err := netip.ParseAddr(host); err == nil {
			// Not looked up: the address is the host.
			a.add(host, []netip.Addr{ip}, ports)
			continue
		}
		a.hosts[host] = ports
	}
	return a
}

// schemeFits reports whether pattern p can speak for a destination of
// this module's kind: the scheme of a send is not known at the socket.
func (a *allowlist) schemeFits(p targetPattern) bool {
	switch p.scheme {
	case "":
		return true
	case schemeSTUN, schemeSTUNS:
		return a.kind == KindSTUN
	}
	return a.kind == KindTURN
}

// add records what host resolved to: its addresses on the ports the check
// contacts there, and on the ports of every name entry matching host.
func (a *allowlist) add(host string, addrs []netip.Addr, ports []uint16) {
	var ranges [][2]uint16
	for _, p := range ports {
		ranges = append(ranges, [2]uint16{p, p})
	}
	if a.kind == KindTURN {
		// The server's own address, any port: its relayed addresses are
		// there, and the peer socket sends its first packet to one.
		ranges = [][2]uint16{{1, 65535}}
	}
	if name, err := normaliseName(host); err == nil {
		for _, p := range a.patterns {
			if !a.schemeFits(p) || (p.name == "" && p.suffix == "") {
				continue
			}
			if (p.name != "" && name == p.name) || (p.suffix != "" && len(name) > len(p.suffix) && strings.HasSuffix(name, p.suffix)) {
				ranges = append(ranges, [2]uint16{p.lo, p.hi})
			}
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, ip := range addrs {
		for _, r := range ranges {
			a.dests = append(a.dests, destination{addr: ip.Unmap(), lo: r[0], hi: r[1]})
		}
	}
}

// recorder returns a resolver that passes lookups to next and remembers
// the answers for the check's hosts.
func (a *allowlist) recorder(next interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}) recordingResolver {
	return recordingResolver{a: a, next: next}
}

// allow returns nil when the probe may send to ap, and otherwise why not.
func (a *allowlist) allow(ap netip.AddrPort) error {
	ip, port := ap.Addr().Unmap(), ap.Port()
	for _, p := range a.patterns {
		if !a.schemeFits(p) || port < p.lo || port > p.hi {
			continue
		}
		if p.anyHost || (p.prefix.IsValid() && p.prefix.Contains(ip)) {
			return nil
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, d := range a.dests {
		if d.addr == ip && port >= d.lo && port <= d.hi {
			return nil
		}
	}
	return notAllowedError{ap}
}

// notAllowedError refuses a destination a server named that the module's
// allowed_targets do not list.
type notAllowedError struct{ dest netip.AddrPort }

func (e notAllowedError) Error() string {
	return fmt.Sprintf("%s is not in allowed_targets (an address the server named, such as its OTHER-ADDRESS; list it to allow it)", e.dest)
}

// recordingResolver looks names up through next and records, for the
// hosts of its allowlist, the addresses found.
type recordingResolver struct {
	a    *allowlist
	next interface {
		LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
	}
}

func (r recordingResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	addrs, err := r.next.LookupNetIP(ctx, network, host)
	if err != nil {
		return addrs, err
	}
	name := strings.TrimSuffix(strings.ToLower(host), ".")
	if ports, ok := r.a.hosts[name]; ok {
		r.a.add(name, addrs, ports)
	}
	return addrs, nil
}
