package exporter

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/pion/transport/v5"

	"github.com/natcheck/natcheck/internal/netspecial"
)

// isPublic reports whether a is an address on the public internet (see
// netspecial.Public); a zoned address is not.
func isPublic(a netip.Addr) bool {
	return a.Zone() == "" && netspecial.Public(a)
}

// errNotPublic is wrapped by the errors of a guarded network for a
// destination that is not public.
var errNotPublic = errors.New("not a public address (public_only)")

// publicPolicy decides what public_only lets through; tests replace it.
type publicPolicy func(netip.Addr) bool

// pinnedResolver answers for one host name with the addresses the
// exporter checked, so that the probe dials exactly those (a second
// lookup could answer differently: DNS rebinding); other names go to next.
type pinnedResolver struct {
	host  string
	addrs []netip.Addr
	err   error // the lookup's error, if it failed
	next  interface {
		LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
	}
}

func (r pinnedResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	if host != r.host {
		return r.next.LookupNetIP(ctx, network, host)
	}
	if r.err != nil {
		return nil, r.err
	}
	var out []netip.Addr
	for _, a := range r.addrs {
		a = a.Unmap()
		if network == "ip" || (network == "ip4") == a.Is4() {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return out, nil
}

// guardedNet is a transport.Net that sends only where allow lets it:
// every Dial and every datagram's destination is checked, which also
// covers the addresses a STUN server names in its answers (RFC 5780
// OTHER-ADDRESS, XOR-MAPPED-ADDRESS for hairpinning).
type guardedNet struct {
	transport.Net
	// allow returns nil for a destination the probe may send to, and
	// otherwise why not.
	allow func(netip.AddrPort) error
}

// errRestricted explains the refusal of a destination that is not an IP
// address and port, or of a socket the guard cannot watch.
const errRestricted = "the module restricts where it sends (allowed_targets or public_only)"

// allowPublic is the destination rule of public_only.
func allowPublic(public publicPolicy) func(netip.AddrPort) error {
	return func(ap netip.AddrPort) error {
		if !public(ap.Addr().Unmap()) {
			return errNotPublic
		}
		return nil
	}
}

// allowBoth lets through what every rule lets through.
func allowBoth(rules ...func(netip.AddrPort) error) func(netip.AddrPort) error {
	return func(ap netip.AddrPort) error {
		for _, r := range rules {
			if err := r(ap); err != nil {
				return err
			}
		}
		return nil
	}
}

func (g *guardedNet) check(network, address string) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		// The probe dials resolved addresses only; a name here would be
		// looked up behind the policy's back.
		return fmt.Errorf("dial %s %s: not an IP address and port (%s)", network, address, errRestricted)
	}
	if err := g.allow(ap); err != nil {
		return fmt.Errorf("dial %s %s: %w", network, ap, err)
	}
	return nil
}

func (g *guardedNet) Dial(network, address string) (net.Conn, error) {
	if err := g.check(network, address); err != nil {
		return nil, err
	}
	return g.Net.Dial(network, address)
}

func (g *guardedNet) DialUDP(network string, laddr, raddr *net.UDPAddr) (transport.UDPConn, error) {
	if raddr == nil {
		return nil, fmt.Errorf("dial %s: no address (%s)", network, errRestricted)
	}
	if err := g.check(network, raddr.AddrPort().String()); err != nil {
		return nil, err
	}
	return g.Net.DialUDP(network, laddr, raddr)
}

func (g *guardedNet) DialTCP(network string, laddr, raddr *net.TCPAddr) (transport.TCPConn, error) {
	if raddr == nil {
		return nil, fmt.Errorf("dial %s: no address (%s)", network, errRestricted)
	}
	if err := g.check(network, raddr.AddrPort().String()); err != nil {
		return nil, err
	}
	return g.Net.DialTCP(network, laddr, raddr)
}

// ListenUDP is refused: its transport.UDPConn could send anywhere. The
// probe listens with ListenPacket.
func (g *guardedNet) ListenUDP(network string, _ *net.UDPAddr) (transport.UDPConn, error) {
	return nil, fmt.Errorf("listen %s: not available: %s", network, errRestricted)
}

func (g *guardedNet) ListenPacket(network, address string) (net.PacketConn, error) {
	c, err := g.Net.ListenPacket(network, address)
	if err != nil {
		return nil, err
	}
	return &guardedPacketConn{PacketConn: c, allow: g.allow}, nil
}

func (g *guardedNet) CreateDialer(d *net.Dialer) transport.Dialer {
	return &guardedDialer{g: g, d: g.Net.CreateDialer(d)}
}

type guardedDialer struct {
	g *guardedNet
	d transport.Dialer
}

func (d *guardedDialer) Dial(network, address string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, address)
}

func (d *guardedDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	if err := d.g.check(network, address); err != nil {
		return nil, err
	}
	if cd, ok := d.d.(interface {
		DialContext(ctx context.Context, network, address string) (net.Conn, error)
	}); ok {
		return cd.DialContext(ctx, network, address)
	}
	return d.d.Dial(network, address)
}

// guardedPacketConn drops datagrams to destinations allow refuses, with an
// error.
type guardedPacketConn struct {
	net.PacketConn
	allow func(netip.AddrPort) error
}

func (c *guardedPacketConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	var ap netip.AddrPort
	switch a := addr.(type) {
	case *net.UDPAddr:
		ap = a.AddrPort()
	default:
		var err error
		if ap, err = netip.ParseAddrPort(addr.String()); err != nil {
			return 0, &net.OpError{Op: "write", Net: "udp", Addr: addr, Err: errors.New("not an IP address and port (" + errRestricted + ")")}
		}
	}
	if err := c.allow(ap); err != nil {
		return 0, &net.OpError{Op: "write", Net: "udp", Addr: addr, Err: err}
	}
	return c.PacketConn.WriteTo(b, addr)
}
