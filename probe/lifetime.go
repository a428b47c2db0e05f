package probe

// The binding-lifetime measurement (natcheck --lifetime): many tested
// sockets, each idle for its own time, in parallel; after its idle time a
// fresh helper socket asks the server, with RESPONSE-PORT (RFC 5780 section
// 7.5), to answer to the tested socket's public port from the endpoint the
// tested socket talked to. A tested socket never sends after its first
// request: an outbound packet would renew or recreate the mapping, and
// port preservation would hide a recreated one.

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"

	"github.com/natcheck/natcheck/natclass"
	natstun "github.com/natcheck/natcheck/stun"
)

// LifetimeConfig configures MeasureLifetime.
type LifetimeConfig struct {
	// Servers are tried in order; the first whose answers RESPONSE-PORT
	// brings to a tested socket is used.
	Servers []Target
	// Family is the address family; empty means IPv4.
	Family Family
	// Net is the network; nil means the host's real sockets.
	Net transport.Net
	// Resolver looks up server names; nil means net.DefaultResolver.
	Resolver Resolver
	// Max is the longest idle time tested; zero means DefaultLifetimeMax.
	// The whole measurement ends within Max plus LifetimeSlack.
	Max time.Duration
	// Precision is the width of the bracket aimed at; zero means
	// DefaultLifetimePrecision.
	Precision time.Duration
	// Trace, when set, receives one Event per packet; safe for concurrent use.
	Trace func(Event)
	// Progress, when set, is called with the result so far after each
	// tested socket's answer. It must not block for long.
	Progress func(natclass.Lifetime)
}

// Defaults and bounds of the lifetime measurement.
const (
	DefaultLifetimeMax       = 5 * time.Minute
	DefaultLifetimePrecision = time.Second
	// LifetimeSlack is the time the measurement may take beyond Max: the
	// first requests and the last answers' windows.
	LifetimeSlack = 5 * time.Second
	// MinLifetimeMax is the shortest Max that leaves a ladder to climb.
	MinLifetimeMax = 2 * time.Second

	lifetimeMinIdle  = time.Second // the ladder's first rung
	lifetimeLadder   = 16          // tested sockets of the first round
	lifetimeRefine   = 24          // at most this many in the refine round
	lifetimeTries    = 3           // least sends of one check: one lost answer is not an expiry
	lifetimeMaxTries = 8           // most sends of one check, however lossy the path
	lifetimeMinRetry = 50 * time.Millisecond
	lifetimeBindWait = 3 * time.Second // for a tested socket's first answer
)

// MeasureLifetime measures how long the NAT keeps an idle UDP mapping, in
// two rounds: a geometric ladder of idle times up to Max, all sockets in
// parallel, which ends at the first expiry once every shorter idle time is
// known; then a linear ladder between the last survivor and the first
// expiry, in parallel with two sockets that learn whether a packet inbound
// or outbound half-way through renews a mapping. When ctx ends, the bounds
// found so far are returned with Partial set.
//
// It assumes that a mapping expires by idle time alone (the shortest idle
// time that saw an expiry bounds the lifetime) and that not all of a
// check's sends or their answers are lost: a check sends at least
// lifetimeTries times, and more while the loss measured on the answered
// checks makes that much silence too likely by chance (natclass.Loss, as
// the diagnosis reads silence), up to lifetimeMaxTries.
func MeasureLifetime(ctx context.Context, cfg LifetimeConfig) natclass.Lifetime {
	if cfg.Max <= 0 {
		cfg.Max = DefaultLifetimeMax
	}
	if cfg.Precision <= 0 {
		cfg.Precision = DefaultLifetimePrecision
	}
	if cfg.Family == "" {
		cfg.Family = IPv4
	}
	lt := natclass.Lifetime{Max: cfg.Max, Precision: cfg.Precision}
	start := time.Now()
	res := resolveAll(ctx, Config{Servers: cfg.Servers, Resolver: cfg.Resolver}, []Family{cfg.Family})[cfg.Family]
	n := cfg.Net
	if n == nil {
		var err error
		if n, err = stdnet.NewNet(); err != nil {
			lt.Error = "cannot open the host's network: " + err.Error()
			return lt
		}
	}
	e := &engine{cfg: Config{Trace: cfg.Trace}, net: n, fam: cfg.Family}
	defer e.closeAll()
	var first netip.Addr
	var why []string
	for _, r := range res {
		switch {
		case !r.target.UDP():
		case r.err != "":
			why = append(why, fmt.Sprintf("%s: %s", r.target, r.err))
		case r.addr.IsValid() && !first.IsValid():
			first = r.addr
		}
	}
	if !first.IsValid() {
		lt.Error = fmt.Sprintf("no UDP STUN server with an %s address", cfg.Family)
		if len(why) > 0 {
			lt.Error += " (" + why[0] + ")"
		}
		return lt
	}
	local, err := e.sourceAddr(first, res)
	if err != nil {
		lt.Error = fmt.Sprintf("this host has no %s route (%v)", cfg.Family, err)
		return lt
	}
	e.localIP = local
	e.deadline = minTime(start.Add(cfg.Max+LifetimeSlack), budgetEnd(ctx))
	m := &lifer{e: e, cfg: cfg, lt: lt}
	// The control: a socket checked at once must hear the answer, or the
	// server does not honour RESPONSE-PORT (or this NAT gives the helper
	// another public IP) and silence would mean nothing.
	for _, r := range res {
		if !r.target.UDP() || !r.addr.IsValid() {
			continue
		}
		m.server = netip.AddrPortFrom(r.addr, r.target.Port)
		t, err := m.open(ctx, "lifetime-control")
		if err == nil {
			var alive bool
			if alive, _, _, err = m.check(ctx, t, "lifetime-control"); err == nil && !alive {
				err = errors.New("an answer sent with RESPONSE-PORT to a socket that had just sent never arrived: the server does not honour RESPONSE-PORT (RFC 5780), or this NAT gives another socket another public IP")
			}
		}
		if ctx.Err() != nil {
			m.lt.Partial = "interrupted"
			m.lt.Error = "interrupted before any server was found usable"
			return m.lt
		}
		if err == nil {
			m.lt.Server, m.lt.Address, m.rtt = r.target.String(), m.server, t.rtt
			break
		}
		why = append(why, fmt.Sprintf("%s: %v", r.target, err))
		m.server = netip.AddrPort{}
	}
	if !m.server.IsValid() {
		lt := m.result()
		lt.Error = "no server could be used: " + why[len(why)-1]
		return lt
	}
	if m.cfg.Progress != nil {
		// Between answers (minutes apart on the long rungs) the elapsed and
		// remaining time still move: a tick a second.
		done := make(chan struct{})
		defer close(done)
		go func() {
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for {
				select {
				case <-done:
					return
				case <-tick.C:
					m.cfg.Progress(m.result())
				}
			}
		}()
	}
	m.measure(ctx)
	return m.result()
}

// lifer is one lifetime measurement.
type lifer struct {
	e      *engine
	cfg    LifetimeConfig
	server netip.AddrPort
	rtt    time.Duration // the control's round trip

	mu     sync.Mutex // guards the rest
	lt     natclass.Lifetime
	obs    []lifeObs
	sent   int
	loss   natclass.Loss // of the answered checks
	capped bool          // a check needed more than lifetimeMaxTries
}

// tries is the number of sends after which a check's silence is read as an
// expired mapping: as many as the loss measured on the answered checks
// needs (natclass.Loss.SendsNeeded), from lifetimeTries to
// lifetimeMaxTries; the most before any check was answered. Only silent
// checks pay for them (an answer ends a check). The opens' retransmissions
// do not count: they go before a round trip is known.
func (m *lifer) tries() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.loss.SendsNeeded() // math.MaxInt before any check was answered

	if n > lifetimeMaxTries && m.loss.Lost > 0 && !m.capped {
		m.capped = true
		m.lt.Notes = append(m.lt.Notes, fmt.Sprintf("loss on the path (%s) makes silence after %d sends possible by chance: an expiry may be early", m.loss, lifetimeMaxTries))
	}
	return min(max(n, lifetimeTries), lifetimeMaxTries)
}

// addLoss counts a check answered after sends requests.
func (m *lifer) addLoss(sends int) {
	m.mu.Lock()
	m.loss.Add(sends, true)
	m.mu.Unlock()
}

// lifeObs is one tested socket's answer: alive at idle time first, or
// expired by idle time last.
type lifeObs struct {
	alive       bool
	first, last time.Duration
}

// tested is a tested socket: one request sent and answered, then silence.
type tested struct {
	s       *socket
	mapped  netip.AddrPort
	lastOut time.Time // its last outbound packet
	rtt     time.Duration
}

func (m *lifer) addSent(n int) {
	m.mu.Lock()
	m.sent += n
	m.mu.Unlock()
}

// open creates a tested socket: one Binding request, answered.
func (m *lifer) open(ctx context.Context, name string) (*tested, error) {
	s, err := m.e.newSocket(name)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	tx := m.e.transact(ctx, s, name, m.server, request{}, wait{
		deadline: minTime(start.Add(lifetimeBindWait), m.e.deadline), interval: firstInterval, minWait: lifetimeBindWait,
	})
	m.addSent(tx.Sent)
	// Sockets stay open until the measurement ends (closeAll): a later
	// socket given a closed one's port would inherit its conntrack entry,
	// which Linux may have moved to the longer "stream" timeout, and
	// survive idle times the NAT's fresh mappings do not.
	if tx.Status != natclass.StatusReply || !tx.Mapped.IsValid() {
		if tx.Error != "" {
			return nil, errors.New(tx.Error)
		}
		return nil, fmt.Errorf("no answer from %s in %v", m.server, lifetimeBindWait)
	}
	return &tested{s: s, mapped: tx.Mapped, lastOut: start.Add(tx.RTT - tx.LastRTT), rtt: tx.PathRTT()}, nil
}

// check asks the server, from a fresh helper socket, to answer to t's
// public port; it reports whether t heard it, and t's idle time at the
// first and at the last send. Up to m.tries() sends: silence after all
// of them is read as an expired mapping.
func (m *lifer) check(ctx context.Context, t *tested, test string) (alive bool, first, last time.Duration, err error) {
	h, err := m.e.newSocket("lifetime-helper") // closed at the end (see open)
	if err != nil {
		return false, 0, 0, err
	}
	msg, err := stun.Build(stun.TransactionID, stun.BindingRequest, natstun.ResponsePort(t.mapped.Port()), padding{}, stun.Fingerprint)
	if err != nil {
		return false, 0, 0, err
	}
	ch := t.s.register(msg.TransactionID, false)
	defer t.s.unregister(msg.TransactionID)
	id := hex.EncodeToString(msg.TransactionID[:])
	dst := net.UDPAddrFromAddrPort(m.server)
	every := max(retransmitEvery(t.rtt), lifetimeMinRetry)
	tries := m.tries()
	for i := range tries {
		now := time.Now()
		if i == 0 {
			first = now.Sub(t.lastOut)
		}
		last = now.Sub(t.lastOut)
		if _, err := h.conn.WriteTo(msg.Raw, dst); err != nil {
			return false, first, last, fmt.Errorf("send to %s: %v", m.server, unwrapOp(err))
		}
		m.addSent(1)
		h.emit(Event{Kind: EventSend, Test: test, Socket: h.local, Peer: m.server, ID: id, ResponsePort: t.mapped.Port(),
			Detail: fmt.Sprintf("RESPONSE-PORT %d, for %s idle %v", t.mapped.Port(), t.mapped, last.Round(time.Millisecond))})
		wait := every
		if i == tries-1 {
			wait = window(t.rtt)
		}
		timer := time.NewTimer(wait)
		select {
		case r := <-ch:
			timer.Stop()
			m.addLoss(i + 1)
			t.s.emit(Event{Kind: EventReply, Test: test, Socket: t.s.local, Peer: r.from, ID: id, Detail: "the mapping is alive"})
			return true, first, last, nil
		case <-ctx.Done():
			timer.Stop()
			return false, first, last, ctx.Err()
		case <-timer.C:
		}
	}
	t.s.emit(Event{Kind: EventTimeout, Test: test, Socket: t.s.local, Peer: m.server, ID: id,
		Detail: fmt.Sprintf("no answer after %d sends: the mapping expired", tries)})
	return false, first, last + t.rtt, nil
}

// record adds one answer and reports the result so far.
func (m *lifer) record(o lifeObs) {
	m.mu.Lock()
	m.obs = append(m.obs, o)
	m.mu.Unlock()
	if m.cfg.Progress != nil {
		m.cfg.Progress(m.result())
	}
}

// result computes the bounds from the answers so far: the shortest idle
// time after which a mapping had expired is the upper bound, the longest
// one shorter than it that a mapping survived the lower bound.
func (m *lifer) result() natclass.Lifetime {
	m.mu.Lock()
	defer m.mu.Unlock()
	lt := m.lt
	lt.Notes = append([]string(nil), m.lt.Notes...)
	lt.Sent = m.sent
	lt.Probes = len(m.obs)
	lt.Lower, lt.Upper = 0, 0
	for _, o := range m.obs {
		if !o.alive && (lt.Upper == 0 || o.last < lt.Upper) {
			lt.Upper = o.last
		}
	}
	var beyond time.Duration
	for _, o := range m.obs {
		if !o.alive {
			continue
		}
		if lt.Upper > 0 && o.first >= lt.Upper {
			beyond = max(beyond, o.first)
			continue
		}
		lt.Lower = max(lt.Lower, o.first)
	}
	if beyond > 0 {
		lt.Notes = append(lt.Notes, fmt.Sprintf("a mapping idle for %v survived although one had expired after %v: loss, or a NAT whose mappings do not expire by idle time alone",
			beyond.Round(100*time.Millisecond), lt.Upper.Round(100*time.Millisecond)))
	}
	return lt
}

// measure runs the two rounds.
func (m *lifer) measure(ctx context.Context) {
	ctx, cancel := context.WithDeadline(ctx, m.e.deadline)
	defer cancel()
	m.round(ctx, ladder(lifetimeMinIdle, m.cfg.Max, lifetimeLadder))
	if m.stopped(ctx) {
		return
	}
	lt := m.result()
	if lt.Upper == 0 {
		return // nothing expired within Max
	}
	var wg sync.WaitGroup
	if lt.Lower >= lifetimeMinIdle {
		total := lt.Upper * 11 / 10
		half := total - lt.Lower*4/5
		if time.Until(m.e.deadline) > total+m.checkTime() && half > 0 && half < lt.Lower {
			wg.Add(2)
			go func() { defer wg.Done(); m.refresh(ctx, true, half, total) }()
			go func() { defer wg.Done(); m.refresh(ctx, false, half, total) }()
		} else {
			m.note("whether traffic refreshes a mapping was not measured: not enough time left within --lifetime-max")
		}
	}
	if gap := lt.Upper - lt.Lower; gap > m.cfg.Precision {
		// An expiry's bound is its last send plus a round trip: the
		// rungs are closer than Precision by that spread.
		spread := time.Duration(m.tries()-1)*max(retransmitEvery(m.rtt), lifetimeMinRetry) + m.rtt
		step := max(m.cfg.Precision-spread, m.cfg.Precision/4)
		n := min(int(math.Ceil(float64(gap)/float64(step)))-1, lifetimeRefine)
		n = max(n, 1)
		room := time.Until(m.e.deadline) - m.checkTime()
		var idles []time.Duration
		for k := 1; k <= n; k++ {
			d := lt.Lower + gap*time.Duration(k)/time.Duration(n+1)
			if d <= room {
				idles = append(idles, d)
			}
		}
		if len(idles) < n {
			m.note(fmt.Sprintf("the refine round tested %d of %d idle times: the others would not end within --lifetime-max", len(idles), n))
		}
		m.round(ctx, idles)
	}
	wg.Wait()
	m.stopped(ctx)
}

// checkTime is how long a socket's open and check take besides its idle
// time, when its first request is answered at once: a window for the
// open, the check's sends and its last window.
func (m *lifer) checkTime() time.Duration {
	return window(m.rtt) + time.Duration(m.tries()-1)*max(retransmitEvery(m.rtt), lifetimeMinRetry) + window(m.rtt)
}

func (m *lifer) note(s string) {
	m.mu.Lock()
	m.lt.Notes = append(m.lt.Notes, s)
	m.mu.Unlock()
}

// stopped sets Partial when ctx ended and reports whether it did.
func (m *lifer) stopped(ctx context.Context) bool {
	if ctx.Err() == nil {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lt.Partial == "" {
		if errors.Is(context.Cause(ctx), context.DeadlineExceeded) && !time.Now().Before(m.e.deadline) {
			m.lt.Partial = "out of time"
		} else {
			m.lt.Partial = "interrupted"
		}
	}
	return true
}

// ladder returns n idle times from lo to hi in geometric progression.
func ladder(lo, hi time.Duration, n int) []time.Duration {
	if hi <= lo || n < 2 {
		return []time.Duration{hi}
	}
	r := math.Pow(float64(hi)/float64(lo), 1/float64(n-1))
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = time.Duration(float64(lo) * math.Pow(r, float64(i)))
	}
	out[n-1] = hi
	return out
}

// round tests one socket per idle time, all in parallel. It ends when all
// have answered, or at the first expiry once every shorter idle time has
// answered (longer ones would only expire too).
func (m *lifer) round(ctx context.Context, idles []time.Duration) {
	if len(idles) == 0 {
		return
	}
	sort.Slice(idles, func(i, j int) bool { return idles[i] < idles[j] })
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type answer struct {
		i     int
		alive bool
		ok    bool
	}
	answers := make(chan answer, len(idles))
	for i, idle := range idles {
		go func() {
			alive, ok := m.test(ctx, idle)
			answers <- answer{i, alive, ok}
		}()
	}
	done := make([]bool, len(idles))
	firstDeath := len(idles)
	for range idles {
		a := <-answers
		done[a.i] = true
		if a.ok && !a.alive {
			firstDeath = min(firstDeath, a.i)
		}
		all := true
		for i := 0; i < firstDeath; i++ {
			all = all && done[i]
		}
		if all && firstDeath < len(idles) {
			cancel()
		}
	}
}

// test opens a tested socket, leaves it idle for idle, checks it and
// records the answer. ok is false when there is no answer (cut short, or
// the socket got no first reply).
func (m *lifer) test(ctx context.Context, idle time.Duration) (alive, ok bool) {
	t, err := m.open(ctx, "lifetime")
	if err != nil {
		return false, false
	}
	if !sleepUntil(ctx, t.lastOut.Add(idle)) {
		return false, false
	}
	alive, first, last, err := m.check(ctx, t, fmt.Sprintf("lifetime-%v", idle.Round(time.Millisecond)))
	if err != nil {
		return false, false
	}
	m.record(lifeObs{alive: alive, first: first, last: last})
	return alive, true
}

// refresh learns whether a packet half-way renews a mapping: inbound (an
// answer sent to it with RESPONSE-PORT) or outbound (a Binding indication,
// which gets no answer, to the server). The socket is then checked after
// total, longer than the upper bound: alive means the packet renewed it.
func (m *lifer) refresh(ctx context.Context, inbound bool, half, total time.Duration) {
	name := "lifetime-outbound"
	if inbound {
		name = "lifetime-inbound"
	}
	t, err := m.open(ctx, name) // closed at the end (see open)
	if err != nil {
		return
	}
	if !sleepUntil(ctx, t.lastOut.Add(half)) {
		return
	}
	if inbound {
		alive, _, _, err := m.check(ctx, t, name)
		if err != nil {
			return
		}
		if !alive {
			m.note(fmt.Sprintf("the inbound refresh test's socket did not hear the server after %v idle: whether inbound traffic refreshes a mapping is unknown", half.Round(100*time.Millisecond)))
			return
		}
	} else {
		ind, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodBinding, stun.ClassIndication), padding{}, stun.Fingerprint)
		if err != nil {
			return
		}
		// As many copies as a check sends, so that loss before the NAT
		// cannot pass for a NAT that outbound traffic does not refresh.
		for i := range m.tries() {
			if i > 0 && !sleepUntil(ctx, time.Now().Add(lifetimeMinRetry)) {
				return
			}
			if _, err := t.s.conn.WriteTo(ind.Raw, net.UDPAddrFromAddrPort(m.server)); err != nil {
				return
			}
			m.addSent(1)
			t.s.emit(Event{Kind: EventSend, Test: name, Socket: t.s.local, Peer: m.server, Detail: "Binding indication: outbound only"})
		}
	}
	if !sleepUntil(ctx, t.lastOut.Add(total)) {
		return
	}
	alive, _, _, err := m.check(ctx, t, name)
	if err != nil {
		return
	}
	m.mu.Lock()
	if inbound {
		m.lt.RefreshedByInbound = &alive
	} else {
		m.lt.RefreshedByOutbound = &alive
	}
	m.mu.Unlock()
}

// sleepUntil waits until at or ctx ends; it reports whether at came.
func sleepUntil(ctx context.Context, at time.Time) bool {
	t := time.NewTimer(time.Until(at))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
