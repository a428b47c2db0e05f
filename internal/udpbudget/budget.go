// Package udpbudget bounds what a UDP server sends to each source and in
// all by what it receives, so that requests with a forged source cannot
// turn it into an amplifier (RFC 5780 section 9, RFC 8489 section 16.1.3).
// natcheck serve's STUN and TURN listeners share one Budget.
package udpbudget

import (
	"hash/maphash"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/natcheck/natcheck/internal/connlimit"
)

// Defaults of the response budgets.
const (
	DefaultSource = 4096       // bytes of burst per source
	DefaultGlobal = 256 * 1024 // bytes per second in all
)

const (
	// sourceRefill is how long an idle source's budget takes to refill:
	// its rate is SourceBudget per sourceRefill.
	sourceRefill = 8 * time.Second
	// knownFor is how long after a response paid from a pool a source
	// counts as known (it draws on the known pool).
	knownFor = 5 * time.Second
	// freshShare is the part of GlobalBudget given to sources that are
	// not known; the rest goes to known ones.
	freshShare = 0.25
	// budgetBuckets is the number of per-source buckets; sources are
	// hashed into them, so there is no table to fill.
	budgetBuckets = 1 << 16
	budgetLocks   = 256
	// epoch is added to the budget's clock so that a bucket never
	// touched (last == 0) is fully refilled and long unknown.
	epoch = int64(time.Hour)
	// logInterval is the least time between two log lines about
	// dropped responses.
	logInterval = time.Second
)

// Budget bounds the bytes the server sends to each source and in all, so
// that a request with a spoofed source cannot turn the server into an
// amplifier (RFC 5780 section 9, RFC 8489 section 16.1.3).
//
// A response no larger than its request costs nothing: it sends the
// source no more than the source sent. The deficit of a larger response
// (its size minus its request's) is paid from two budgets, both of which
// must hold it:
//
//   - the bucket of the source's key (connlimit.SourceKey: the IPv4
//     address or the IPv6 /64), which holds at most srcBurst bytes and
//     refills at srcRate bytes per second. Responses smaller than their
//     request credit it with the difference. So a source (or a spoofed
//     victim) gets at most what it sent plus srcBurst plus srcRate bytes
//     per second. The buckets are a fixed array indexed by a keyed hash
//     of the key: there is no table that a flood of new sources could
//     fill, and an attacker cannot aim at a client's bucket without the
//     random seed;
//   - a global pool, which bounds the sum of all deficits, so that
//     bursts of many spoofed sources cannot add up. It is split in two:
//     a source answered from a pool within knownFor draws on the known
//     pool, any other source on the fresh pool, whose charge is the
//     whole response, not the deficit. A flood of new spoofed sources
//     then drains only the fresh pool, and a client that already got an
//     answer goes on being answered from the known pool.
//
// Trusted prefixes skip all of this with one prefix test per prefix.
type Budget struct {
	trust    []netip.Prefix
	srcBurst float64 // bytes
	srcRate  float64 // bytes per nanosecond
	start    time.Time
	now      func() time.Time
	seed     maphash.Seed
	log      *slog.Logger

	locks   [budgetLocks]paddedMutex
	buckets []srcBucket // budgetBuckets long; bucket i is locked by locks[i%budgetLocks]

	gmu          sync.Mutex
	fresh, known pool

	dropsSource, dropsGlobal atomic.Uint64
	lastLog                  atomic.Int64 // clock of the last log line
	unlogged                 atomic.Uint64
}

type paddedMutex struct {
	sync.Mutex
	_ [56]byte
}

type srcBucket struct {
	tokens   float64 // bytes
	last     int64   // clock of the last refill
	answered int64   // clock of the last response paid from a pool
}

// pool is a token bucket of bytes; gmu guards it.
type pool struct {
	tokens, burst float64 // bytes
	rate          float64 // bytes per nanosecond
	last          int64
}

func (p *pool) take(now int64, n float64) bool {
	if d := now - p.last; d > 0 {
		p.tokens = min(p.burst, p.tokens+float64(d)*p.rate)
		p.last = now
	}
	if p.tokens < n {
		return false
	}
	p.tokens -= n
	return true
}

// New returns a budget with srcBurst bytes per source (refilled in
// sourceRefill) and global bytes per second in all (with a burst of one
// second of it). now is the clock; nil means time.Now.
func New(trust []netip.Prefix, srcBurst, global int, now func() time.Time, log *slog.Logger) *Budget {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &Budget{
		srcBurst: float64(srcBurst),
		srcRate:  float64(srcBurst) / float64(sourceRefill),
		start:    now(),
		now:      now,
		seed:     maphash.MakeSeed(),
		log:      log,
		buckets:  make([]srcBucket, budgetBuckets),
	}
	for _, p := range trust {
		b.trust = append(b.trust, p.Masked())
	}
	g := float64(global)
	b.fresh = pool{burst: freshShare * g, rate: freshShare * g / float64(time.Second)}
	b.known = pool{burst: (1 - freshShare) * g, rate: (1 - freshShare) * g / float64(time.Second)}
	b.fresh.tokens, b.known.tokens = b.fresh.burst, b.known.burst
	b.fresh.last, b.known.last = epoch, epoch
	return b
}

// trusted reports whether ip is in a trusted prefix.
func (b *Budget) trusted(ip netip.Addr) bool {
	for _, p := range b.trust {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func (b *Budget) clock() int64 { return int64(b.now().Sub(b.start)) + epoch }

// index returns the bucket of ip's SourceKey.
func (b *Budget) index(ip netip.Addr) uint64 {
	key := connlimit.SourceKey(ip).As16()
	return maphash.Bytes(b.seed, key[:]) % budgetBuckets
}

// Charge decides whether a response of respLen bytes to ip may be sent for
// a request of reqLen bytes from ip, and charges it if so. It does not
// allocate.
func (b *Budget) Charge(ip netip.Addr, reqLen, respLen int) Verdict {
	ip = ip.Unmap().WithZone("") // a zoned address is in no prefix
	if b.trusted(ip) {
		return Send
	}
	deficit := float64(respLen - reqLen)
	i := b.index(ip)
	mu := &b.locks[i%budgetLocks]
	mu.Lock()
	bk := &b.buckets[i]
	now := b.clock()
	if d := now - bk.last; d > 0 {
		bk.tokens = min(b.srcBurst, bk.tokens+float64(d)*b.srcRate)
		bk.last = now
	}
	if deficit <= 0 {
		// Not an amplification: the source gets no more than it sent.
		bk.tokens = min(b.srcBurst, bk.tokens-deficit)
		mu.Unlock()
		return Send
	}
	if bk.tokens < deficit {
		mu.Unlock()
		b.dropped(&b.dropsSource, ip, now)
		return SourceDrop
	}
	known := bk.answered != 0 && now-bk.answered <= int64(knownFor)
	b.gmu.Lock()
	var ok bool
	if known {
		ok = b.known.take(now, deficit)
	} else {
		ok = b.fresh.take(now, float64(respLen))
	}
	b.gmu.Unlock()
	if !ok {
		mu.Unlock()
		b.dropped(&b.dropsGlobal, ip, now)
		return GlobalDrop
	}
	bk.tokens -= deficit
	bk.answered = now
	mu.Unlock()
	return Send
}

// Allow is Charge(ip, reqLen, respLen) == Send.
func (b *Budget) Allow(ip netip.Addr, reqLen, respLen int) bool {
	return b.Charge(ip, reqLen, respLen) == Send
}

// Verdict is what Charge decided.
type Verdict uint8

const (
	Send       Verdict = iota // paid for (or free): send the response
	SourceDrop                // the source's budget cannot pay: drop it
	GlobalDrop                // the global budget cannot pay: drop it
)

// Drops returns the responses dropped so far because the source's budget,
// or the global one, could not pay them.
func (b *Budget) Drops() (source, global uint64) {
	return b.dropsSource.Load(), b.dropsGlobal.Load()
}

// dropped counts a drop in c and logs at most one line per logInterval,
// with the number of drops it stands for.
func (b *Budget) dropped(c *atomic.Uint64, ip netip.Addr, now int64) {
	c.Add(1)
	n := b.unlogged.Add(1)
	last := b.lastLog.Load()
	if now-last < int64(logInterval) || !b.lastLog.CompareAndSwap(last, now) {
		return
	}
	b.unlogged.Add(-n)
	b.log.Warn("responses dropped by the byte budget (anti-amplification)", "source", ip,
		"dropped", n, "source_budget_drops", b.dropsSource.Load(), "global_budget_drops", b.dropsGlobal.Load())
}
