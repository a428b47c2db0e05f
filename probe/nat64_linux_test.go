//go:build linux

package probe

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"runtime"
	"slices"
	"syscall"
	"testing"

	"github.com/natcheck/natcheck/natclass"
	"github.com/natcheck/natcheck/stunserver"
)

// TestLookForNAT64NoIPv4Route runs in a network namespace of its own with
// no interface up, so the host has no IPv4 route: the DNS64 answer for
// ipv4only.arpa gives the prefix, and the IPv4 literal is probed through
// it.
func TestLookForNAT64NoIPv4Route(t *testing.T) {
	type out struct {
		n     *natclass.NAT64
		asked []string
		res   map[Family][]resolved
		err   error
	}
	done := make(chan out, 1)
	go func() {
		// The thread enters a new network namespace and is never unlocked:
		// it ends with the goroutine instead of going back to the pool.
		runtime.LockOSThread()
		if err := syscall.Unshare(syscall.CLONE_NEWNET); err != nil {
			done <- out{err: err}
			return
		}
		d := &dns64{}
		res := resolvedFor(Target{Host: "192.0.2.33", Port: 3478})
		res[IPv4] = []resolved{{target: Target{Host: "192.0.2.33", Port: 3478}, addr: netip.MustParseAddr("192.0.2.33")}}
		n := lookForNAT64(context.Background(), Config{Resolver: d}, res)
		done <- out{n: n, asked: d.asked, res: res}
	}()
	o := <-done
	if o.err != nil {
		t.Skipf("cannot make a network namespace (needs root): %v", o.err)
	}
	want := netip.MustParseAddr("64:ff9b::c000:221") // RFC 6052 section 2.4
	if o.n == nil || !o.n.Detected || o.n.Prefix != netip.MustParsePrefix("64:ff9b::/96") || !slices.Equal(o.n.Synthesized, []netip.Addr{want}) {
		t.Fatalf("nat64 %+v", o.n)
	}
	if !slices.Equal(o.asked, []string{"ip6 ipv4only.arpa"}) {
		t.Errorf("asked %q", o.asked)
	}
	if o.res[IPv6][0].addr != want {
		t.Errorf("IPv6 resolution %+v", o.res[IPv6][0])
	}
}

// TestLookForNAT64WellKnown: with no IPv4 route and no DNS64 answer, the
// well-known prefix counts only when a server answers through it. A STUN
// server on the synthesized address 64:ff9b::c000:221 (of 192.0.2.33,
// RFC 6052 section 2.4) stands for the NAT64 in a network namespace of
// the test's own; without it, nothing is detected and the IPv6 run keeps
// no server it cannot reach.
func TestLookForNAT64WellKnown(t *testing.T) {
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs the ip command (iproute2)")
	}
	type out struct {
		with, without *natclass.NAT64
		res           map[Family][]resolved
		err           error
	}
	done := make(chan out, 1)
	go func() {
		// The thread enters a new network namespace and is never unlocked.
		runtime.LockOSThread()
		if err := syscall.Unshare(syscall.CLONE_NEWNET); err != nil {
			done <- out{err: err}
			return
		}
		var o out
		ctx := context.Background()
		target := Target{Host: "192.0.2.33", Port: 3478}
		fresh := func() map[Family][]resolved {
			res := resolvedFor(target)
			res[IPv4] = []resolved{{target: target, addr: netip.MustParseAddr("192.0.2.33")}}
			return res
		}
		// No server yet, and no route anywhere: not detected.
		o.without = lookForNAT64(ctx, Config{Resolver: &dns64{none: true}}, fresh())
		// The child inherits this thread's namespace.
		for _, args := range [][]string{{"link", "set", "lo", "up"}, {"addr", "add", "64:ff9b::c000:221/128", "dev", "lo", "nodad"}} {
			if b, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
				done <- out{err: fmt.Errorf("ip %v: %v: %s", args, err, b)}
				return
			}
		}
		s, err := stunserver.Start(ctx, stunserver.Config{Primary: netip.MustParseAddrPort("[64:ff9b::c000:221]:3478")})
		if err != nil {
			done <- out{err: err}
			return
		}
		defer s.Close()
		o.res = fresh()
		o.with = lookForNAT64(ctx, Config{Resolver: &dns64{none: true}}, o.res)
		done <- o
	}()
	o := <-done
	if o.err != nil {
		t.Skipf("cannot set up the network namespace (needs root): %v", o.err)
	}
	if o.without == nil || o.without.Detected {
		t.Errorf("no server answering through the well-known prefix: nat64 %+v, want not detected", o.without)
	}
	want := netip.MustParseAddr("64:ff9b::c000:221")
	if o.with == nil || !o.with.Detected || o.with.Prefix != natclass.NAT64WellKnownPrefix || o.with.Source != natclass.NAT64SourceWellKnown ||
		!slices.Equal(o.with.Synthesized, []netip.Addr{want}) {
		t.Fatalf("a server answering through the well-known prefix: nat64 %+v", o.with)
	}
	if o.res[IPv6][0].addr != want {
		t.Errorf("IPv6 resolution %+v, want %v", o.res[IPv6][0], want)
	}
}

// names64 is dns64 with A and AAAA records for a few names.
type names64 struct {
	dns64
	names map[string][]netip.Addr
}

func (d *names64) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	if a, ok := d.names[host]; ok {
		d.asked = append(d.asked, network+" "+host)
		return a, nil
	}
	return d.dns64.LookupNetIP(ctx, network, host)
}

// TestFindNAT64 (natcheck turn's servers): in a network namespace with no
// IPv4 route, a name with IPv4 addresses only, or an IPv4 literal, gets
// the DNS64 prefix; a name with an AAAA record, or IPv6 literals only,
// need no NAT64 and nothing is asked about ipv4only.arpa. With an IPv4
// route (loopback, outside the namespace) nothing is looked up.
func TestFindNAT64(t *testing.T) {
	names := map[string][]netip.Addr{
		"turn4.example":  {netip.MustParseAddr("192.0.2.40")},
		"turn46.example": {netip.MustParseAddr("192.0.2.41"), netip.MustParseAddr("2001:db8::41")},
	}
	wk := netip.MustParsePrefix("64:ff9b::/96")
	cases := []struct {
		name    string
		servers []Target
		found   bool // a Detected NAT64 with the well-known prefix
		asked   []string
	}{
		{"ipv4-only name", []Target{{Host: "turn4.example", Port: 3478}}, true, []string{"ip turn4.example", "ip6 ipv4only.arpa"}},
		{"ipv4 literal", []Target{{Host: "2001:db8::9", Port: 3478}, {Host: "192.0.2.33", Port: 3478, Transport: TransportTCP}}, true, []string{"ip6 ipv4only.arpa"}},
		{"dual-stack name", []Target{{Host: "turn46.example", Port: 3478}}, false, []string{"ip turn46.example"}},
		{"ipv6 literal", []Target{{Host: "2001:db8::9", Port: 3478}}, false, nil},
	}
	type out struct {
		n     *natclass.NAT64
		asked []string
	}
	outs := make(chan []out, 1)
	errs := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if err := syscall.Unshare(syscall.CLONE_NEWNET); err != nil {
			errs <- err
			return
		}
		var o []out
		for _, c := range cases {
			d := &names64{names: names}
			n := FindNAT64(context.Background(), Config{Servers: c.servers, Resolver: d})
			o = append(o, out{n, d.asked})
		}
		outs <- o
	}()
	var got []out
	select {
	case err := <-errs:
		t.Skipf("cannot make a network namespace (needs root): %v", err)
	case got = <-outs:
	}
	for i, c := range cases {
		n := got[i].n
		ok := n != nil && n.Detected && n.Prefix == wk
		if ok != c.found || (!c.found && n != nil) || !slices.Equal(got[i].asked, c.asked) {
			t.Errorf("%s: nat64 %+v, asked %q; want found %v, asked %q", c.name, n, got[i].asked, c.found, c.asked)
		}
	}
	d := &names64{names: names}
	if n := FindNAT64(context.Background(), Config{Servers: []Target{{Host: "127.0.0.1", Port: 3478}, {Host: "turn4.example", Port: 3478}}, Resolver: d}); n != nil || d.asked != nil {
		t.Errorf("with an IPv4 route: nat64 %+v, asked %q; want nothing", n, d.asked)
	}
}
