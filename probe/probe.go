// Package probe is natcheck's measurement engine: it owns local UDP sockets,
// sends STUN Binding requests (RFC 8489) and the behaviour-discovery tests of
// RFC 5780 section 4, and records what came back, from where and when, as
// natclass.Observations.
package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"

	"github.com/natcheck/natcheck/natclass"
	natstun "github.com/natcheck/natcheck/stun"
)

// Family is an address family: "ipv4" or "ipv6".
type Family string

// Address families.
const (
	IPv4 Family = "ipv4"
	IPv6 Family = "ipv6"
)

// Config configures a diagnosis. The zero value of every field but Servers
// is a documented default.
type Config struct {
	// Servers are the STUN servers to probe.
	Servers []Target
	// Net is the network to use; nil means the host's real sockets.
	// pion/transport's vnet makes the same code run on simulated NATs.
	Net transport.Net
	// Resolver looks up server names; nil means net.DefaultResolver.
	Resolver Resolver
	// Hairpin enables the hairpinning test (RFC 5780 section 4.7). Some
	// firewalls flag it as an attack, so it is opt-in.
	Hairpin bool
	// Trace, when set, receives one Event per packet sent or received.
	// It must be safe for concurrent use.
	Trace func(Event)
	// FirstWait bounds how long the first requests wait for any server
	// to answer; zero means 3 s. The context's deadline always wins.
	FirstWait time.Duration
	// TLSPorts are the ports tried with STUN over TLS for every UDP
	// server; nil means DefaultTLSPorts (443 and 5349), empty means none.
	TLSPorts []uint16
	// NoPaths turns the TCP and TLS path probes off.
	NoPaths bool
	// PathTimeout bounds each TCP or TLS attempt; zero means 2 s.
	PathTimeout time.Duration
	// TLS is the base TLS configuration (for instance RootCAs for a
	// private CA); nil means the system's roots. Verification is never
	// skipped silently: a failure is recorded on the path.
	TLS *tls.Config
}

// EventKind says what happened in a trace Event.
type EventKind string

// Event kinds.
const (
	EventSend       EventKind = "send"
	EventRetransmit EventKind = "retransmit"
	EventReply      EventKind = "reply"
	EventTimeout    EventKind = "timeout"
	EventDropped    EventKind = "dropped"
	EventError      EventKind = "error"
)

// Event is one line of the per-transaction trace.
type Event struct {
	Time       time.Time
	Kind       EventKind
	Test       string // e.g. "mapping-I", "filtering-II"
	SocketName string
	Socket     netip.AddrPort // local socket
	Peer       netip.AddrPort // destination, or source of a received packet
	ID         string         // transaction ID, hex
	Detail     string
	// What a sent request asked of the server: CHANGE-REQUEST flags and
	// RESPONSE-PORT (zero if none).
	ChangeIP, ChangePort bool
	ResponsePort         uint16
}

// Run is the outcome for one family: the observations, or why the family
// was skipped.
type Run struct {
	Family       Family
	Skipped      string // non-empty when the family was not tested, and why
	Observations natclass.Observations
}

// timing constants of the waiting windows.
const (
	firstInterval = 100 * time.Millisecond // first retransmission before any RTT is known
	maxInterval   = 800 * time.Millisecond
	doubleAfter   = 500 * time.Millisecond // Test I keeps firstInterval this long before doubling
	minWindow     = 200 * time.Millisecond // shortest wait before "no reply" is a result
	windowRTTs    = 3                      // window = windowRTTs*RTT + minWindow
	retransPerWin = 10                     // retransmissions inside a window
	// changeRetransPerWin bounds the sends of a CHANGE-REQUEST test per
	// window: servers rate-limit reflected responses (RFC 5780 section 9).
	// Six unanswered sends make silence a result after six answered
	// transactions without loss (natclass.Loss.SendsNeeded).
	changeRetransPerWin = 6
	// maxSilentSends bounds the sends of a transaction whose window is
	// extended because loss was measured (wait.extend).
	maxSilentSends = 20
	// maxLossProbes bounds the loss probes of one filtering socket, and
	// lossProbeWait is their window beyond two round trips.
	maxLossProbes    = 40
	lossProbeWait    = 50 * time.Millisecond
	minRetransmit    = 10 * time.Millisecond
	lateServerWait   = time.Second           // others' wait after the first server answered
	minPacedInterval = 50 * time.Millisecond // Test I's interval once paced: 20 sends a second at most
	resolveTimeout   = 3 * time.Second       // bound on name resolution
)

// window returns how long to wait for a reply given a measured round-trip
// time: long enough that "no reply" means the packet was filtered, short
// enough not to waste the user's time.
func window(rtt time.Duration) time.Duration { return windowRTTs*rtt + minWindow }

// retransmitEvery spaces retransmissions so that retransPerWin fit in the
// window, but never faster than the RTT (a reply could be on its way).
func retransmitEvery(rtt time.Duration) time.Duration {
	return max(window(rtt)/retransPerWin, rtt+rtt/2, minRetransmit)
}

// Measure resolves the servers once and probes each requested family in
// parallel. With families empty it probes IPv4 and IPv6, skipping a family
// the host or the servers do not have; then, when the host has no IPv4
// route, it looks for NAT64 (lookForNAT64), records what it found in the
// IPv6 run's observations, and probes IPv4 literals through the NAT64
// prefix.
func Measure(ctx context.Context, cfg Config, families ...Family) []Run {
	explicit := len(families) > 0
	if !explicit {
		families = []Family{IPv4, IPv6}
	}
	res := resolveAll(ctx, cfg, families)
	if !explicit && !anyResolved(res) {
		// Nothing resolved in any family: report IPv4 with the DNS errors
		// rather than skipping everything silently.
		families = families[:1]
		explicit = true
	}
	var nat64 *natclass.NAT64
	if !explicit && slices.Contains(families, IPv4) && slices.Contains(families, IPv6) {
		nat64 = lookForNAT64(ctx, cfg, res)
	}
	runs := make([]Run, len(families))
	var wg sync.WaitGroup
	for i, fam := range families {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var prefix netip.Prefix // NAT64's, for the IPv6 run
			if fam == IPv6 && nat64 != nil && nat64.Detected {
				prefix = nat64.Prefix
			}
			runs[i] = runFamily(ctx, cfg, fam, res[fam], explicit, prefix)
		}()
	}
	wg.Wait()
	for i := range runs {
		if runs[i].Family == IPv6 {
			runs[i].Observations.NAT64 = nat64
		}
	}
	return runs
}

// engine holds the state of one family's run.
type engine struct {
	cfg     Config
	net     transport.Net
	fam     Family
	localIP netip.Addr
	// nat64 is the NAT64 prefix of an IPv6 run on an IPv6-only network
	// (invalid otherwise): a server reached through it names its alternate
	// address in IPv4, which the run reaches through the prefix too.
	nat64    netip.Prefix
	deadline time.Time // budget end: windows end by then
	first    *firstWindow
	paths    *pathRunner // nil when the path probes are off

	mu      sync.Mutex // guards sockets
	sockets []*socket

	lossMu sync.Mutex    // guards loss
	loss   natclass.Loss // measured so far, as natclass.MeasureLoss counts it
}

// firstWindow is the waiting window of Test I, shared by every server: at
// most FirstWait, shrunk as soon as any server answers over UDP or accepts a
// TCP connection, since the round-trip time then tells how long an answer
// can take.
type firstWindow struct {
	deadline time.Time     // the longest the window can last
	minWait  time.Duration // shortest wait after which silence is a result
	stop     chan struct{} // closed when the window ends
	mu       sync.Mutex
	end      time.Time
	timer    *time.Timer
	rtt      time.Duration // of the first answer, 0 before it
	paced    chan struct{} // closed when rtt is set
	once     sync.Once
}

func newFirstWindow(firstWait time.Duration, budget time.Time) *firstWindow {
	if firstWait == 0 {
		firstWait = 3 * time.Second
	}
	w := &firstWindow{
		deadline: minTime(time.Now().Add(firstWait), budget),
		minWait:  min(firstWait, 500*time.Millisecond),
		stop:     make(chan struct{}),
		paced:    make(chan struct{}),
	}
	w.end = w.deadline
	w.timer = time.AfterFunc(time.Until(w.end), w.close)
	return w
}

func (w *firstWindow) close() { w.once.Do(func() { close(w.stop) }) }

// pace is the retransmission interval of Test I once a server answered: the
// first answer's round trip tells how long a reply can take, so the other
// servers' requests need not keep doubling their interval (a lost packet
// would otherwise cost up to 800 ms). Zero before any answer.
func (w *firstWindow) pace() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.rtt == 0 {
		return 0
	}
	return max(retransmitEvery(w.rtt), minPacedInterval)
}

// answered shrinks the window once a reply (or a TCP handshake) took rtt:
// the others get lateServerWait or 8 RTTs more, whichever is longer.
func (w *firstWindow) answered(rtt time.Duration) {
	to := time.Now().Add(max(lateServerWait, 8*rtt))
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.rtt == 0 {
		w.rtt = max(rtt, time.Microsecond)
		close(w.paced)
	}
	if to.Before(w.end) {
		w.end = to
		w.timer.Reset(time.Until(to))
	}
}

func runFamily(ctx context.Context, cfg Config, fam Family, res []resolved, explicit bool, nat64 netip.Prefix) Run {
	run := Run{Family: fam, Observations: natclass.Observations{Family: string(fam)}}
	obs := &run.Observations
	var first netip.Addr
	for _, r := range res {
		if !r.target.UDP() {
			if r.addr.IsValid() && !first.IsValid() {
				first = r.addr
			}
			continue
		}
		s := natclass.Server{Name: r.target.String(), ResolveError: r.err}
		if r.addr.IsValid() {
			s.Address = netip.AddrPortFrom(r.addr, r.target.Port)
			if !first.IsValid() {
				first = r.addr
			}
		}
		obs.Servers = append(obs.Servers, s)
	}
	if !first.IsValid() && !explicit {
		run.Skipped = fmt.Sprintf("no server has an %s address", fam)
		return run
	}
	n := cfg.Net
	if n == nil {
		var err error
		if n, err = stdnet.NewNet(); err != nil {
			run.Skipped = "cannot open the host's network: " + err.Error()
			return run
		}
	}
	e := &engine{cfg: cfg, net: n, fam: fam, nat64: nat64}
	defer e.closeAll()
	if !first.IsValid() {
		return run // explicit family, nothing resolved: the classifier explains
	}
	local, err := e.sourceAddr(first, res)
	if err != nil {
		if !explicit {
			run.Skipped = fmt.Sprintf("this host has no %s route (%v)", fam, err)
			return run
		}
		for i := range obs.Servers {
			if obs.Servers[i].Address.IsValid() {
				obs.Servers[i].Binding = natclass.Transaction{Dest: obs.Servers[i].Address, Error: err.Error()}
			}
		}
		return run
	}
	e.localIP = local
	e.deadline = budgetEnd(ctx)
	e.first = newFirstWindow(cfg.FirstWait, e.deadline)
	defer e.first.close()
	pathCtx, cutPaths := context.WithCancelCause(ctx)
	defer cutPaths(nil)
	if !cfg.NoPaths {
		e.paths = e.startPaths(pathCtx, e.pathJobs(res))
	}
	e.probe(ctx, obs)
	if e.paths != nil {
		// When UDP works, TCP and TLS are the fallback: give attempts still
		// hanging on dropped SYNs a short grace, not the full path timeout.
		if rtt, ok := maxRTT(obs); ok {
			t := time.AfterFunc(max(300*time.Millisecond, 4*rtt), func() { cutPaths(errUDPDone) })
			defer t.Stop()
		}
		obs.Paths = e.paths.wait()
	}
	return run
}

// errUDPDone ends TCP and TLS attempts still pending once UDP has answered.
var errUDPDone = errors.New("not finished when the UDP tests were; UDP works, so it was not waited for")

// maxRTT returns the largest round-trip time of the servers that answered.
func maxRTT(obs *natclass.Observations) (time.Duration, bool) {
	var m time.Duration
	ok := false
	for _, s := range obs.Servers {
		if s.Binding.Replied() {
			m, ok = max(m, s.Binding.PathRTT()), true
		}
	}
	return m, ok
}

// budgetEnd leaves a little of the context's time for reporting, so that
// windows end before the context does.
func budgetEnd(ctx context.Context) time.Time {
	d, ok := ctx.Deadline()
	if !ok {
		return time.Now().Add(time.Hour)
	}
	return d.Add(-min(100*time.Millisecond, time.Until(d)/10))
}

// sourceAddr finds the concrete local address the host would send from: a
// socket bound to it lets "mapped == local" detect the absence of NAT,
// which comparing against 0.0.0.0 never can.
func (e *engine) sourceAddr(first netip.Addr, res []resolved) (netip.Addr, error) {
	network := "udp4"
	if e.fam == IPv6 {
		network = "udp6"
	}
	var lastErr error
	for _, r := range res {
		if !r.addr.IsValid() {
			continue
		}
		c, err := e.net.Dial(network, netip.AddrPortFrom(r.addr, r.target.Port).String())
		if err != nil {
			lastErr = err
			continue
		}
		la := natstun.AddrPortOf(c.LocalAddr())
		_ = c.Close()
		if la.Addr().IsValid() && !la.Addr().IsUnspecified() {
			return la.Addr(), nil
		}
	}
	if lastErr == nil {
		lastErr = errors.New("no local address")
	}
	return netip.Addr{}, lastErr
}

func (e *engine) newSocket(name string) (*socket, error) {
	network := "udp4"
	if e.fam == IPv6 {
		network = "udp6"
	}
	conn, err := e.net.ListenPacket(network, netip.AddrPortFrom(e.localIP, 0).String())
	if err != nil {
		return nil, fmt.Errorf("open %s socket: %w", name, err)
	}
	s, err := newSocket(conn, name, e.cfg.Trace)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	e.mu.Lock()
	e.sockets = append(e.sockets, s)
	e.mu.Unlock()
	return s, nil
}

func (e *engine) closeAll() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range e.sockets {
		s.close()
	}
}

// probe runs all tests of one family. Test I goes from one mapping socket to
// every server at once; each RFC 5780 server then gets its mapping tests
// II and III on that socket and its filtering tests on a fresh socket, all
// in parallel.
func (e *engine) probe(ctx context.Context, obs *natclass.Observations) {
	ms, err := e.newSocket("mapping")
	if err != nil {
		for i := range obs.Servers {
			obs.Servers[i].Binding = natclass.Transaction{Dest: obs.Servers[i].Address, Error: err.Error()}
		}
		return
	}
	fw := e.first
	firstDeadline := fw.deadline
	var mu sync.Mutex // guards obs.RFC5780 and obs.Hairpin
	var wg sync.WaitGroup
	for i := range obs.Servers {
		srv := &obs.Servers[i]
		if !srv.Address.IsValid() {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			srv.Binding = e.transact(ctx, ms, "binding", srv.Address, request{}, wait{
				deadline: firstDeadline, stop: fw.stop, interval: firstInterval, minWait: fw.minWait, pace: fw.pace, paced: fw.paced,
			})
			if !srv.Binding.Replied() {
				return
			}
			if o := srv.Binding.Other; e.nat64.IsValid() && o.Addr().Unmap().Is4() && e.nat64.Contains(srv.Address.Addr()) {
				// RFC 6052: the IPv4 OTHER-ADDRESS of a server behind
				// NAT64 is reached at its synthesized address.
				if a, err := natclass.SynthesizeNAT64(e.nat64, o.Addr().Unmap()); err == nil {
					srv.Binding.Other = netip.AddrPortFrom(a, o.Port())
				}
			}
			fw.answered(srv.Binding.PathRTT())
			if natclass.UsableOther(srv.Address, srv.Binding.Other) {
				if e.paths != nil {
					// The alternate address is a second server address for
					// comparing TCP mappings from the shared port.
					e.paths.add(pathJob{transport: TransportTCP, server: srv.Name, host: srv.Address.Addr().String(), dest: srv.Binding.Other})
				}
				t := e.rfc5780(ctx, ms, i, srv)
				mu.Lock()
				obs.RFC5780 = append(obs.RFC5780, t)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	sortTests(obs.RFC5780)
	if natclass.MappingContradicts(*obs) {
		obs.Resample = e.resample(ctx, obs)
	}
	if e.cfg.Hairpin {
		obs.Hairpin = e.hairpin(ctx, ms, obs)
	}
}

// windowFor returns the waiting window for a server with the given RTT,
// clipped to the run's budget.
func (e *engine) windowFor(rtt time.Duration) wait {
	d := window(rtt)
	return wait{
		deadline: minTime(time.Now().Add(d), e.deadline),
		interval: retransmitEvery(rtt),
		minWait:  d,
		fixed:    true,
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
