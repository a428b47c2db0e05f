package stunserver

import (
	"net/netip"
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func TestLimiterBucket(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	l := newLimiter(10, 5, 100, clock.now)
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")

	allowed := 0
	logs := 0
	for range 100 {
		ok, logNow, _ := l.allow(a)
		if ok {
			allowed++
		}
		if logNow {
			logs++
		}
	}
	if allowed != 5 {
		t.Errorf("burst: %d allowed, want 5", allowed)
	}
	if logs != 1 {
		t.Errorf("%d log lines in one instant, want 1", logs)
	}
	if ok, _, _ := l.allow(b); !ok {
		t.Error("another source is limited")
	}

	clock.t = clock.t.Add(300 * time.Millisecond) // 3 tokens
	allowed = 0
	for range 10 {
		if ok, _, _ := l.allow(a); ok {
			allowed++
		}
	}
	if allowed != 3 {
		t.Errorf("after 300 ms: %d allowed, want 3", allowed)
	}

	clock.t = clock.t.Add(2 * time.Second)
	ok, logNow, dropped := l.allow(a)
	if !ok {
		t.Error("not refilled after 2 s")
	}
	for range 10 {
		if _, logNow, dropped = l.allow(a); logNow {
			break
		}
	}
	// 95 refused at the start were logged as 1; 7 after 300 ms and the
	// ones now are summed in this line.
	if !logNow || dropped < 8 {
		t.Errorf("log line after a second: %v, %d dropped", logNow, dropped)
	}
}

func TestLimiterBounded(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	const maxSources = 50
	l := newLimiter(10, 2, maxSources, clock.now)
	ip := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}) }

	for i := range 1000 {
		l.allow(ip(i))
	}
	if n := l.tracked(); n != maxSources {
		t.Fatalf("%d sources tracked, want %d", n, maxSources)
	}
	// The table is full of busy sources: a new one is refused rather than
	// letting it evict a drained bucket.
	if ok, _, _ := l.allow(ip(5000)); ok {
		t.Error("new source allowed while the table is full of fresh entries")
	}
	// Once the old entries have refilled they are forgotten.
	clock.t = clock.t.Add(time.Second)
	if ok, _, _ := l.allow(ip(5000)); !ok {
		t.Error("new source refused after the table could be pruned")
	}
	if n := l.tracked(); n != 1 {
		t.Errorf("%d sources tracked after pruning, want 1", n)
	}
}

// TestLimiterGroupsIPv6By64: the addresses of one /64 share a bucket.
func TestLimiterGroupsIPv6By64(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	l := newLimiter(1, 1, 100, clock.now)
	if ok, _, _ := l.allow(netip.MustParseAddr("2001:db8:1:2::1")); !ok {
		t.Fatal("first response refused")
	}
	if ok, _, _ := l.allow(netip.MustParseAddr("2001:db8:1:2::2")); ok {
		t.Error("another address of the same /64 got a full bucket")
	}
	if ok, _, _ := l.allow(netip.MustParseAddr("2001:db8:1:3::1")); !ok {
		t.Error("another /64 refused")
	}
}
