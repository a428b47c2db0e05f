package stunserver

import (
	"net/netip"
	"sync"
	"time"

	"github.com/natcheck/natcheck/internal/connlimit"
)

// Defaults of the reflection limit (RFC 5780 section 9).
const (
	defaultReflectionRate    = 50
	defaultReflectionSources = 4096
	// pruneInterval is the least time between two scans of a full table.
	pruneInterval = 100 * time.Millisecond
	// logInterval is the least time between two log lines about
	// rate-limited sources.
	logInterval = time.Second
)

// limiter is a token bucket per source IP address. The table holds at most
// max sources: when it is full, sources whose bucket has refilled are
// forgotten, and until room is made a new source is refused, so an attacker
// with many addresses cannot reset the bucket of one it already drains.
type limiter struct {
	rate  float64 // tokens per second
	burst float64 // bucket size
	max   int     // most sources tracked
	now   func() time.Time

	mu        sync.Mutex
	buckets   map[netip.Addr]bucket
	lastPrune time.Time
	lastLog   time.Time
	dropped   uint64 // drops since the last log line
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(rate float64, burst, maxSources int, now func() time.Time) *limiter {
	if burst < 1 {
		burst = 1
	}
	return &limiter{
		rate:    rate,
		burst:   float64(burst),
		max:     maxSources,
		now:     now,
		buckets: make(map[netip.Addr]bucket),
	}
}

// allow takes a token from ip's bucket. When it refuses, logNow says that
// the caller should log the refusal, and dropped how many refusals that log
// line stands for; this keeps logging to about one line per logInterval.
func (l *limiter) allow(ip netip.Addr) (ok, logNow bool, dropped uint64) {
	ip = connlimit.SourceKey(ip)
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, found := l.buckets[ip]
	if !found {
		if len(l.buckets) >= l.max {
			l.prune(now)
		}
		if len(l.buckets) >= l.max {
			return l.refuse(now)
		}
		b = bucket{tokens: l.burst, last: now}
	}
	if elapsed := now.Sub(b.last).Seconds(); elapsed > 0 {
		b.tokens = min(l.burst, b.tokens+elapsed*l.rate)
	}
	b.last = now
	if b.tokens < 1 {
		l.buckets[ip] = b
		return l.refuse(now)
	}
	b.tokens--
	l.buckets[ip] = b
	return true, false, 0
}

// refuse counts a refusal; l.mu is held.
func (l *limiter) refuse(now time.Time) (ok, logNow bool, dropped uint64) {
	l.dropped++
	if now.Sub(l.lastLog) < logInterval {
		return false, false, 0
	}
	l.lastLog = now
	dropped = l.dropped
	l.dropped = 0
	return false, true, dropped
}

// prune forgets the sources whose bucket is full again, at most once per
// pruneInterval; l.mu is held. The scan is bounded by l.max entries.
func (l *limiter) prune(now time.Time) {
	if now.Sub(l.lastPrune) < pruneInterval {
		return
	}
	l.lastPrune = now
	refill := time.Duration(l.burst / l.rate * float64(time.Second))
	for ip, b := range l.buckets {
		if now.Sub(b.last) >= refill {
			delete(l.buckets, ip)
		}
	}
}

// tracked returns the number of sources in the table.
func (l *limiter) tracked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
