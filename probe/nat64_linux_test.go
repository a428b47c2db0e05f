//go:build linux

package probe

import (
	"context"
	"net/netip"
	"runtime"
	"slices"
	"syscall"
	"testing"

	"github.com/natcheck/natcheck/natclass"
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
