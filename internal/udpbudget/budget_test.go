package udpbudget

import (
	"net/netip"
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }

// count returns how many of n responses of respLen bytes to requests of
// reqLen bytes from ip the budget allows.
func count(b *Budget, ip netip.Addr, n, reqLen, respLen int) int {
	ok := 0
	for range n {
		if b.Allow(ip, reqLen, respLen) {
			ok++
		}
	}
	return ok
}

// TestBudgetSource works through a source's budget by hand: 1000 bytes of
// burst, refilled at 1000/8 = 125 bytes a second; a 20-byte request with
// a 76-byte response costs 56.
func TestBudgetSource(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	b := New(nil, 1000, 1<<30, clock.now, nil)
	a := netip.MustParseAddr("192.0.2.1")

	// 17 x 56 = 952 <= 1000 < 18 x 56: 48 bytes left.
	if n := count(b, a, 100, 20, 76); n != 17 {
		t.Fatalf("burst: %d responses, want 17", n)
	}
	if got := b.dropsSource.Load(); got != 83 {
		t.Errorf("%d source drops, want 83", got)
	}
	// Another source has its own budget.
	if n := count(b, netip.MustParseAddr("192.0.2.2"), 1, 20, 76); n != 1 {
		t.Error("another source was refused")
	}
	// A response no larger than its request is always sent, and a larger
	// request credits the difference: 48 + (200-76) = 172, 3 x 56 = 168.
	if n := count(b, a, 1, 200, 76); n != 1 {
		t.Fatal("a response smaller than its request was refused")
	}
	if n := count(b, a, 10, 20, 76); n != 3 {
		t.Errorf("after a 200-byte request: %d responses, want 3", n)
	}
	// 1 s refills 125 bytes: 4 + 125 = 129, 2 x 56 = 112.
	clock.add(time.Second)
	if n := count(b, a, 10, 20, 76); n != 2 {
		t.Errorf("after 1 s: %d responses, want 2", n)
	}
	// The bucket never holds more than its burst: after a minute, 17.
	clock.add(time.Minute)
	if n := count(b, a, 100, 20, 76); n != 17 {
		t.Errorf("after a minute: %d responses, want 17", n)
	}
	// Reflected responses are charged to the source like any other: the
	// budget sees only sizes. The IPv4-mapped form is the same source.
	if b.Allow(netip.MustParseAddr("::ffff:192.0.2.1"), 20, 76) {
		t.Error("the IPv4-mapped form of a drained source was answered")
	}
}

// TestBudgetGroupsIPv6By64: the addresses of one /64 share a budget.
func TestBudgetGroupsIPv6By64(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	b := New(nil, 100, 1<<30, clock.now, nil)
	// A 124-byte IPv6 response to a 28-byte request costs 96 of 100.
	if !b.Allow(netip.MustParseAddr("2001:db8:1:2::1"), 28, 124) {
		t.Fatal("first response refused")
	}
	if b.Allow(netip.MustParseAddr("2001:db8:1:2::2"), 28, 124) {
		t.Error("another address of the same /64 got a full budget")
	}
	if !b.Allow(netip.MustParseAddr("2001:db8:1:3::1"), 28, 124) {
		t.Error("another /64 refused")
	}
}

// TestBudgetGlobal works through the global pools by hand: 400 bytes a
// second is 100 for fresh sources (charged the whole response) and 300 for
// known ones (charged the deficit), each with one second of burst.
func TestBudgetGlobal(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	b := New(nil, 1<<20, 400, clock.now, nil)
	a, c := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.2")

	// A is fresh: 76 of the fresh pool's 100, 24 left.
	if !b.Allow(a, 20, 76) {
		t.Fatal("first response refused")
	}
	// C is fresh too, and 24 < 76.
	if b.Allow(c, 20, 76) {
		t.Error("fresh pool overdrawn")
	}
	// A is known now: 56 each from 300, 5 x 56 = 280.
	if n := count(b, a, 10, 20, 76); n != 5 {
		t.Errorf("known source: %d responses, want 5", n)
	}
	if got := b.dropsGlobal.Load(); got != 6 {
		t.Errorf("%d global drops, want 6", got)
	}
	// A response no larger than its request needs no pool.
	if !b.Allow(c, 80, 76) {
		t.Error("a response smaller than its request was refused")
	}
	// After 1 s: the fresh pool is full again (100) and so is the known
	// pool (300, not 20+300).
	clock.add(time.Second)
	if !b.Allow(c, 20, 76) {
		t.Error("fresh pool not refilled")
	}
	if n := count(b, a, 10, 20, 76); n != 5 {
		t.Errorf("after 1 s: %d responses, want 5", n)
	}
	// 5 s after its last answer A is no longer known: it needs the fresh
	// pool again, which holds 24 + 5 s x 100, capped at 100.
	clock.add(5*time.Second + time.Millisecond)
	if !b.Allow(a, 20, 76) || !b.Allow(a, 20, 76) {
		t.Error("a source idle for 5 s refused")
	}
	// Its first response came from the fresh pool: 100 - 76 = 24 < 76.
	if b.Allow(netip.MustParseAddr("198.51.100.3"), 20, 76) {
		t.Error("an idle source did not draw on the fresh pool")
	}
}

// TestBudgetFloodOfNewSources: 10,000 spoofed sources, one request each
// 100 µs apart for a second, cannot stop a client that was answered before
// the flood; the flood gets only the fresh pool. GlobalBudget 4000 is a
// fresh pool of 1000 bytes (+1000/s) and a known pool of 3000 (+3000/s).
func TestBudgetFloodOfNewSources(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	b := New(nil, 4096, 4000, clock.now, nil)
	client := netip.MustParseAddr("203.0.113.7")
	if !b.Allow(client, 28, 76) {
		t.Fatal("client refused before the flood")
	}
	clock.add(time.Second) // the fresh pool is full again: 1000

	// Sources in buckets of their own: one that shares a bucket with an
	// answered source is that source for the budget (the docs say so).
	used := map[uint64]bool{b.index(client): true}
	next := 0
	flooded, answered := 0, 0
	for i := range 10000 {
		var spoofed netip.Addr
		for {
			next++
			spoofed = netip.AddrFrom4([4]byte{10, byte(next >> 16), byte(next >> 8), byte(next)})
			if !used[b.index(spoofed)] {
				used[b.index(spoofed)] = true
				break
			}
		}
		if b.Allow(spoofed, 20, 76) {
			flooded++
		}
		if i%1000 == 500 && b.Allow(client, 28, 76) {
			answered++
		}
		clock.add(100 * time.Microsecond)
	}
	if answered != 10 {
		t.Errorf("client got %d of 10 responses during the flood", answered)
	}
	// The fresh pool: 1000 at the start, 13 x 76 = 988; then 12 + 999.9
	// bytes of refill in the flood's second, 13 more.
	if flooded != 26 {
		t.Errorf("flood got %d responses, want 26", flooded)
	}
	// A new client right after the flood is answered from the refill.
	clock.add(100 * time.Millisecond)
	if !b.Allow(netip.MustParseAddr("203.0.113.8"), 28, 76) {
		t.Error("a new client is refused after the flood (fail closed)")
	}
}

func TestBudgetTrust(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	b := New([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("fe80::/10")}, 100, 1<<20, clock.now, nil)
	for _, ip := range []string{"127.0.0.1", "127.1.2.3", "::ffff:127.0.0.1", "2001:db8:ff::1", "fe80::1%eth0"} {
		if n := count(b, netip.MustParseAddr(ip), 1000, 20, 76); n != 1000 {
			t.Errorf("trusted %s: %d of 1000 answered", ip, n)
		}
	}
	// Loopback outside the trusted prefix is limited like any source:
	// 100 bytes of burst, 1 x 56.
	if n := count(b, netip.MustParseAddr("::1"), 10, 20, 76); n != 1 {
		t.Errorf("untrusted ::1: %d answered, want 1", n)
	}
}

func BenchmarkBudget(b *testing.B) {
	for _, bc := range []struct {
		name  string
		trust []netip.Prefix
		ip    netip.Addr
	}{
		{"trusted", []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, netip.MustParseAddr("127.0.0.1")},
		{"ipv4", nil, netip.MustParseAddr("192.0.2.1")},
		{"ipv6", nil, netip.MustParseAddr("2001:db8::1")},
	} {
		b.Run(bc.name, func(b *testing.B) {
			bg := New(bc.trust, 1<<30, 1<<30, nil, nil)
			b.ReportAllocs()
			for b.Loop() {
				bg.Allow(bc.ip, 28, 76)
			}
		})
	}
}
