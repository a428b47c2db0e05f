package pair

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/natcheck/natcheck/rendezvous"
	"github.com/natcheck/natcheck/report"
	"github.com/natcheck/natcheck/turncheck"
	"github.com/natcheck/natcheck/turncheck/turntest"
)

// own6 returns an IPv6 address of this host that pion/ice offers as a
// host candidate: neither loopback (pion/ice v4.4.9 drops ::1 as an
// "IPv4-compatible" address) nor link-local. Traffic to it stays on this
// host. It skips the test, with one line, when there is none.
func own6(t *testing.T) netip.Addr {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err == nil {
		for _, a := range addrs {
			if pfx, err := netip.ParsePrefix(a.String()); err == nil {
				ip := pfx.Addr()
				if ip.Is6() && !ip.Is4In6() && !ip.IsLoopback() && !ip.IsLinkLocalUnicast() {
					return ip
				}
			}
		}
	}
	t.Skip("no global or unique-local IPv6 address on this host (pion/ice offers no ::1 candidate)")
	return netip.Addr{}
}

func own6Config(role string, ip netip.Addr) Config {
	c := loopbackConfig(role)
	c.IPFilter = func(x net.IP) bool { a, ok := netip.AddrFromSlice(x); return ok && a == ip }
	return c
}

// TestLoopbackDirectIPv6: two engines whose only host candidates are on
// an IPv6 address of this host connect directly over IPv6.
func TestLoopbackDirectIPv6(t *testing.T) {
	ip := own6(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pa, pb := newPipe()
	defer pa.Close()
	ra, rb := runPair(t, ctx, own6Config(rendezvous.RoleFirst, ip), own6Config(rendezvous.RoleSecond, ip), pa, pb)
	for _, r := range []runResult{ra, rb} {
		if r.err != nil {
			t.Fatalf("%s: %v", r.res.Role, r.err)
		}
		if r.res.Outcome != report.PairDirect {
			t.Fatalf("%s: outcome %q, want direct; phases %+v", r.res.Role, r.res.Outcome, r.res.Phases)
		}
		sel := r.res.Selected
		pfx := "[" + ip.String() + "]:"
		if !strings.HasPrefix(sel.Local.Address, pfx) || !strings.HasPrefix(sel.Remote.Address, pfx) {
			t.Errorf("%s: selected %+v, want both ends on %s", r.res.Role, sel, pfx)
		}
	}
}

// TestServePeerIPv6: the server peer listens on an IPv6 address of this
// host, and a client reaching it from there connects over UDP, and over ICE-TCP when only TCP
// is offered.
func TestServePeerIPv6(t *testing.T) {
	ip := own6(t)
	for _, c := range []struct {
		name      string
		cfg       PeerServerConfig
		wantProto string
	}{
		{"udp", PeerServerConfig{}, "udp"},
		{"tcp only", PeerServerConfig{NoUDP: true}, "tcp"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := c.cfg
			cfg.IncludeLoopback = true
			ps, err := ListenPeer(netip.AddrPortFrom(ip, 0), cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer ps.Close()
			pa, pb := newPipe()
			defer pa.Close()
			client := own6Config(rendezvous.RoleFirst, ip)
			client.ActiveTCP = true
			rc, rs := servePair(t, ps, client, ip, pa, pb)
			if rc.err != nil || rs.err != nil {
				t.Fatalf("client: %v; server: %v", rc.err, rs.err)
			}
			if rc.res.Outcome != report.PairDirect {
				t.Fatalf("outcome %q, want direct; phases %+v", rc.res.Outcome, rc.res.Phases)
			}
			want := ps.UDPAddr()
			if c.wantProto == "tcp" {
				want = ps.TCPAddr()
			}
			sel := rc.res.Selected
			if !want.Addr().Is6() || sel.Remote.Address != want.String() || sel.Remote.Protocol != c.wantProto {
				t.Errorf("selected %+v, want the server's %s over %s", sel, want, c.wantProto)
			}
		})
	}
}

// TestListenPeerAddresses: link-local and zoned addresses are refused
// with a reason; an IPv4-mapped address listens on its IPv4 address.
func TestListenPeerAddresses(t *testing.T) {
	for _, a := range []string{"[fe80::1]:0", "[fe80::1%lo]:0", "[::]:0", "[ff02::1]:0"} {
		ps, err := ListenPeer(netip.MustParseAddrPort(a), PeerServerConfig{})
		if err == nil {
			ps.Close()
			t.Errorf("%s: no error", a)
			continue
		}
		if !strings.Contains(err.Error(), "--pair-ice") || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error %q, want one line naming --pair-ice", a, err)
		}
	}
	ps, err := ListenPeer(netip.MustParseAddrPort("[::ffff:127.0.0.1]:0"), PeerServerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	if a := ps.UDPAddr().Addr(); a != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("IPv4-mapped ::ffff:127.0.0.1 listens on %v, want 127.0.0.1", a)
	}
}

// TestRelayIPv6: two engines whose only local address is an IPv6 address
// of this host, with an in-process TURN server on [::1] (relays on ::1),
// and a signalling that drops the direct phase's candidates, so the
// direct phase cannot connect: the relay phase reaches the server over
// IPv6 and connects relay to relay over IPv6.
func TestRelayIPv6(t *testing.T) {
	ip := own6(t)
	srv := turntest.NewServer(t, turntest.Options{IPv6: true})
	u, err := turncheck.ParseURL("turn:" + srv.UDP.String())
	if err != nil {
		t.Fatal(err)
	}
	cfg := func(role string) Config {
		c := own6Config(role, ip)
		c.TURN = []turncheck.Server{{URL: u, Credentials: turncheck.Credentials{User: turntest.User, Password: turncheck.NewSecret(turntest.Password)}}}
		c.Summary.HasTURN = true
		c.PhaseTimeout = 3 * time.Second
		return c
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pa, pb := newPipe()
	defer pa.Close()
	noDirect := func(m rendezvous.Message) []rendezvous.Message {
		if m.Type == rendezvous.TypeCandidate && m.Phase == report.PhaseDirect {
			return nil
		}
		return []rendezvous.Message{m}
	}
	pa.setFilter(noDirect)
	pb.setFilter(noDirect)
	ra, rb := runPair(t, ctx, cfg(rendezvous.RoleFirst), cfg(rendezvous.RoleSecond), pa, pb)
	for _, r := range []runResult{ra, rb} {
		if r.err != nil {
			t.Fatalf("%s: %v", r.res.Role, r.err)
		}
		if len(r.res.Phases) != 2 || r.res.Phases[0].Connected {
			t.Fatalf("%s: phases %+v, want a direct phase that did not connect and a relay phase", r.res.Role, r.res.Phases)
		}
		if r.res.Outcome != report.PairRelay || r.res.OutcomeFamily != "ipv6" {
			t.Fatalf("%s: outcome %q over %q, want relay over ipv6; phases %+v", r.res.Role, r.res.Outcome, r.res.OutcomeFamily, r.res.Phases)
		}
		sel := r.res.Selected
		for _, c := range []report.PairCandidate{sel.Local, sel.Remote} {
			ap, err := netip.ParseAddrPort(c.Address)
			if c.Type != "relay" || err != nil || ap.Addr() != netip.IPv6Loopback() {
				t.Errorf("%s: selected %+v, want relay candidates on the server's relays at ::1 both ends", r.res.Role, sel)
			}
		}
	}
	if ra.res.Selected.Local.Address != rb.res.Selected.Remote.Address {
		t.Errorf("first's local %s is not second's remote %s", ra.res.Selected.Local.Address, rb.res.Selected.Remote.Address)
	}
}
