package pair

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/logging"
	"github.com/pion/stun/v4"
	"github.com/pion/transport/v5"

	"github.com/natcheck/natcheck/natclass"
	"github.com/natcheck/natcheck/rendezvous"
	"github.com/natcheck/natcheck/report"
	"github.com/natcheck/natcheck/turncheck"
)

// Defaults of Config.
const (
	DefaultWait          = 2 * time.Minute
	DefaultPhaseTimeout  = 10 * time.Second
	DefaultBurst         = 50
	DefaultBurstInterval = 20 * time.Millisecond
	DefaultBurstSize     = 100
)

// maxRemoteCandidates bounds the peer's candidates a phase takes; more
// are ignored. A host with a dozen interfaces offers far fewer.
const maxRemoteCandidates = 64

// Errors Run returns (wrapped) when the pairing stops early.
var (
	// ErrNoPeer: no peer joined the room within Config.Wait, or its
	// summary did not come.
	ErrNoPeer = errors.New("no peer")
	// ErrPeerLeft: the peer left the room or said bye before the end.
	ErrPeerLeft = errors.New("the peer left")
	// ErrBadMessage: the peer sent something malformed (SDP, candidate,
	// summary, result).
	ErrBadMessage = errors.New("malformed message from the peer")
	// ErrRendezvous: the rendezvous sent an error or the connection to
	// it broke.
	ErrRendezvous = errors.New("rendezvous")
)

// Result is what Run found: the report's pair object.
type Result = report.Pair

// Config configures Run. The zero value of each field but Role is a
// documented default.
type Config struct {
	// Room is the room's name, for the result.
	Room string
	// Role is this side's role from the joined message:
	// rendezvous.RoleFirst (ICE-controlling, sends the offers) or
	// rendezvous.RoleSecond.
	Role string
	// PeerSince, if set, says when the rendezvous first said the peer is
	// present (rendezvous.Client.PeerSince), for present_to_connected_ms;
	// without it, the time Run saw the peer.
	PeerSince func() time.Time
	// PeerPresent says the peer is known to be in the room already (a
	// peer message was seen before Run). The second member's peer is
	// always present.
	PeerPresent bool
	// Wait bounds the wait for the peer to join and send its summary;
	// zero means DefaultWait.
	Wait time.Duration
	// Summary is this side's summary, sent to the peer.
	Summary Summary
	// STUN are STUN servers (HOST:PORT) for server-reflexive candidates.
	STUN []string
	// TURN are TURN servers for the relay phase: relay candidates come
	// from every turn: URL over UDP and the first over TCP or TLS.
	TURN []turncheck.Server
	// TURNOptions gives the TLS roots, --insecure and the clock for
	// TURN.
	TURNOptions turncheck.Options
	// ActiveTCP also offers ICE-TCP (active, RFC 6544) in the direct
	// phase, for a server peer's passive candidate.
	ActiveTCP bool
	// PhaseTimeout bounds each phase from its start to ICE connected;
	// zero means DefaultPhaseTimeout.
	PhaseTimeout time.Duration
	// Burst is the number of packets sent over the selected pair (at most
	// 1000), BurstInterval apart, each BurstSize bytes (17 to 1200);
	// zero means the defaults. A negative Burst sends none.
	Burst         int
	BurstInterval time.Duration
	BurstSize     int
	// Net is the network for the ICE agents; nil means the host's.
	Net transport.Net
	// IPFilter, when set, restricts the local addresses used for host
	// candidates (tests keep to loopback with it).
	IPFilter func(net.IP) bool
	// IncludeLoopback offers loopback addresses as host candidates.
	IncludeLoopback bool
	// LoggerFactory receives pion's logs; nil discards them.
	LoggerFactory logging.LoggerFactory
	// Progress, when set, is told what Run is doing, in a few words.
	Progress func(string)

	// Set by ServePeer.
	server *serverSide
}

func (c Config) wait() time.Duration         { return cmpOr(c.Wait, DefaultWait) }
func (c Config) phaseTimeout() time.Duration { return cmpOr(c.PhaseTimeout, DefaultPhaseTimeout) }

func (c Config) burst() int {
	switch {
	case c.Burst < 0:
		return 0
	case c.Burst == 0:
		return DefaultBurst
	}
	return min(c.Burst, maxBurst)
}

func cmpOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// phaseResult is the Data of a result message.
type phaseResult struct {
	Connected bool                 `json:"connected"`
	Selected  *report.PairSelected `json:"selected,omitempty"`
	ConnectMS *int64               `json:"connect_ms,omitempty"`
	Error     string               `json:"error,omitempty"`
}

// session is the state of one Run.
type session struct {
	cfg  Config
	conn rendezvous.Conn
	in   chan rendezvous.Message
	// recvErr is the reader's error once in is closed.
	recvErr error
	wake    chan struct{}
	sendMu  sync.Mutex

	present   bool
	presentAt time.Time            // when Run saw the peer present
	connected map[string]time.Time // phase -> when ICE connected
	peer      *Summary
	bye       bool
	offers    map[string]string // phase -> SDP
	answers   map[string]string
	results   map[string]phaseResult
	pending   map[string][]ice.Candidate // phase -> candidates before the agent could take them
	eoc       map[string]bool
	// remote counts the peer's candidates of each phase, to cap them.
	remote   map[string]int
	agents   map[string]*ice.Agent // phases whose agent takes remote candidates now
	failures chan error            // from callbacks
}

// Run pairs this side with the peer in the room conn belongs to: it sends
// cfg.Summary, waits for the peer's, predicts the path, runs the direct
// phase and, when either side has TURN servers and the direct phase did
// not connect, the relay phase, and says bye. The Result is filled as far
// as Run got; the error, when not nil, says why it stopped early (and is
// in Result.Error too). It returns within Wait plus about three phase
// timeouts per phase.
func Run(ctx context.Context, cfg Config, conn rendezvous.Conn) (Result, error) {
	res := Result{Room: cfg.Room, Role: cfg.Role, Outcome: report.PairFailed, Phases: []report.PairPhase{}, Local: cfg.Summary,
		Predicted: predictUnknown}
	if cfg.Role != rendezvous.RoleFirst && cfg.Role != rendezvous.RoleSecond {
		err := fmt.Errorf("role %q: want %s or %s", cfg.Role, rendezvous.RoleFirst, rendezvous.RoleSecond)
		res.Error = err.Error()
		return res, err
	}
	ctx, cancel := context.WithCancel(ctx)
	s := &session{
		cfg: cfg, conn: conn, in: make(chan rendezvous.Message, 64), wake: make(chan struct{}, 1),
		present: cfg.PeerPresent || cfg.Role == rendezvous.RoleSecond || cfg.server != nil,
		offers:  map[string]string{}, answers: map[string]string{}, results: map[string]phaseResult{},
		pending: map[string][]ice.Candidate{}, eoc: map[string]bool{}, remote: map[string]int{}, agents: map[string]*ice.Agent{},
		failures: make(chan error, 4), connected: map[string]time.Time{},
	}
	if s.present {
		s.presentAt = time.Now()
	}
	readerDone := make(chan struct{})
	go s.read(ctx, readerDone)
	defer func() { cancel(); <-readerDone }()

	err := s.run(ctx, &res)
	if err != nil {
		res.Error = err.Error()
		if !errors.Is(err, ErrPeerLeft) && !errors.Is(err, ErrRendezvous) {
			// Tell the peer, so it does not wait for what will not come.
			bctx, bcancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			_ = s.send(bctx, rendezvous.Message{Type: rendezvous.TypeBye})
			bcancel()
		}
	}
	return res, err
}

func (s *session) progress(msg string) {
	if s.cfg.Progress != nil {
		s.cfg.Progress(msg)
	}
}

// read passes the connection's messages to s.in until ctx ends or Recv
// fails.
func (s *session) read(ctx context.Context, done chan struct{}) {
	defer close(done)
	defer close(s.in)
	for {
		m, err := s.conn.Recv(ctx)
		if err != nil {
			s.recvErr = err
			return
		}
		select {
		case s.in <- m:
		case <-ctx.Done():
			s.recvErr = ctx.Err()
			return
		}
	}
}

func (s *session) send(ctx context.Context, m rendezvous.Message) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	if err := s.conn.Send(ctx, m); err != nil {
		return fmt.Errorf("%w: sending %s: %v", ErrRendezvous, m.Type, err)
	}
	return nil
}

func (s *session) notify() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// wait handles incoming messages until done() holds, ctx ends (the error
// is then ctx's), or a message is fatal.
func (s *session) wait(ctx context.Context, done func() bool) error {
	for !done() {
		select {
		case m, ok := <-s.in:
			if !ok {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("%w: connection lost: %v", ErrRendezvous, s.recvErr)
			}
			if err := s.handle(m); err != nil {
				return err
			}
		case err := <-s.failures:
			return err
		case <-s.wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// handle records one message.
func (s *session) handle(m rendezvous.Message) error {
	switch m.Type {
	case rendezvous.TypeError:
		// Before the peer is present, the server's complaint about an
		// early message is not fatal (the spec of /pair).
		if !s.present {
			return nil
		}
		return fmt.Errorf("%w: %s", ErrRendezvous, clean(shorten(m.Error)))
	case rendezvous.TypePeer:
		if m.Present != nil && *m.Present {
			if !s.present {
				s.presentAt = time.Now()
			}
			s.present = true
			return nil
		}
		return fmt.Errorf("%w the room", ErrPeerLeft)
	case rendezvous.TypeBye:
		s.bye = true
		if m.Error != "" {
			return fmt.Errorf("%w: %s", ErrPeerLeft, clean(shorten(m.Error)))
		}
		return fmt.Errorf("%w: it said bye", ErrPeerLeft)
	case rendezvous.TypeSummary:
		if !s.present {
			s.presentAt = time.Now()
		}
		s.present = true
		var p Summary
		if err := json.Unmarshal(m.Data, &p); err != nil {
			return fmt.Errorf("%w: summary: %v", ErrBadMessage, err)
		}
		if err := checkSummary(p); err != nil {
			return fmt.Errorf("%w: summary: %v", ErrBadMessage, err)
		}
		s.peer = &p
	case rendezvous.TypeOffer, rendezvous.TypeAnswer:
		if m.Phase != report.PhaseDirect && m.Phase != report.PhaseRelay {
			return nil // another phase: ignored
		}
		if _, _, err := parseSDP(m.SDP); err != nil {
			return fmt.Errorf("%w: %s SDP: %v", ErrBadMessage, m.Type, err)
		}
		if m.Type == rendezvous.TypeOffer {
			s.offers[m.Phase] = m.SDP
		} else {
			s.answers[m.Phase] = m.SDP
		}
	case rendezvous.TypeCandidate:
		if m.Phase != report.PhaseDirect && m.Phase != report.PhaseRelay {
			return nil
		}
		c, err := ice.UnmarshalCandidate(m.Candidate)
		if err != nil {
			return fmt.Errorf("%w: candidate %q: %v", ErrBadMessage, shorten(m.Candidate), err)
		}
		// Every candidate gets ICE checks, wherever it points: a peer
		// cannot make this side check more than maxRemoteCandidates
		// addresses a phase.
		if s.remote[m.Phase] >= maxRemoteCandidates {
			return nil
		}
		s.remote[m.Phase]++
		if a := s.agents[m.Phase]; a != nil {
			if err := a.AddRemoteCandidate(c); err != nil {
				return fmt.Errorf("%w: candidate %q: %v", ErrBadMessage, shorten(m.Candidate), err)
			}
		} else {
			s.pending[m.Phase] = append(s.pending[m.Phase], c)
		}
	case rendezvous.TypeEndOfCandidates:
		if m.Phase == report.PhaseDirect || m.Phase == report.PhaseRelay {
			s.eoc[m.Phase] = true
		}
	case rendezvous.TypeResult:
		if m.Phase != report.PhaseDirect && m.Phase != report.PhaseRelay {
			return nil
		}
		var r phaseResult
		if err := json.Unmarshal(m.Data, &r); err != nil {
			return fmt.Errorf("%w: %s result: %v", ErrBadMessage, m.Phase, err)
		}
		s.results[m.Phase] = r
	case rendezvous.TypeJoined:
		// Dial has read it; a repeat is harmless.
	default:
		return fmt.Errorf("%w: unknown message type %q", ErrBadMessage, shorten(m.Type))
	}
	return nil
}

func shorten(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// run is Run's body.
func (s *session) run(ctx context.Context, res *Result) error {
	cfg := s.cfg
	// 1. The peer and its summary.
	wctx, wcancel := context.WithTimeout(ctx, cfg.wait())
	defer wcancel()
	if !s.present {
		s.progress("waiting for the peer to join the room")
		if err := s.wait(wctx, func() bool { return s.present }); err != nil {
			return waitErr(ctx, err, "no peer joined the room within %v", cfg.wait())
		}
	}
	data, err := json.Marshal(cfg.Summary)
	if err != nil {
		return err
	}
	if err := s.send(ctx, rendezvous.Message{Type: rendezvous.TypeSummary, Data: data}); err != nil {
		return err
	}
	s.progress("waiting for the peer's diagnosis")
	if err := s.wait(wctx, func() bool { return s.peer != nil }); err != nil {
		return waitErr(ctx, err, "the peer's summary did not come within %v", cfg.wait())
	}
	wcancel()
	res.Peer = s.peer

	// 2. The prediction, before connecting. Towards the server peer, one
	// TCP connection to its ICE-TCP port first: the diagnosis tested other
	// ports, and whether this one gets out decides ICE-TCP.
	local := cfg.Summary
	if cfg.ActiveTCP && s.peer.ServerPeer && s.peer.ICETCPPort != 0 {
		local.ReachesPeerICETCP = s.reachICETCP(ctx, *s.peer)
		res.Local.ReachesPeerICETCP = local.ReachesPeerICETCP
	}
	p := predictPair(local, *s.peer)
	res.Predicted, res.PredictionCertain, res.PredictionRule, res.PredictedFamily = p.Predicted, p.Certain, p.Rule, p.Family

	// 3. The phases.
	phases := []string{report.PhaseDirect}
	for i := 0; i < len(phases); i++ {
		phase := phases[i]
		s.progress(phase + " phase: connecting")
		pr, err := s.phase(ctx, phase)
		res.Phases = append(res.Phases, pr)
		if err != nil {
			return err
		}
		if pr.Connected && res.Outcome == report.PairFailed {
			res.Outcome = phase
			res.Selected, res.ConnectMS, res.RTTMS, res.Loss = pr.Selected, pr.ConnectMS, pr.RTTMS, pr.Loss
			since := s.presentAt
			if cfg.PeerSince != nil {
				if t := cfg.PeerSince(); !t.IsZero() {
					since = t
				}
			}
			ms := s.connected[phase].Sub(since).Milliseconds()
			res.PresentToConnectedMS = &ms
			if pr.Selected != nil {
				if ap, err := netip.ParseAddrPort(pr.Selected.Remote.Address); err == nil {
					res.OutcomeFamily = "ipv4"
					if ap.Addr().Unmap().Is6() {
						res.OutcomeFamily = "ipv6"
					}
				}
			}
		}
		// Both sides decide alike: relay when either has TURN and the
		// direct phase did not connect on both. Never with the server
		// peer: it takes candidates only at its client's own address, so
		// a relayed candidate could not connect.
		serverPeer := cfg.server != nil || s.peer.ServerPeer
		if phase == report.PhaseDirect && (len(cfg.TURN) > 0 || s.peer.HasTURN) && !serverPeer &&
			!(pr.Connected && pr.PeerConnected == natclass.TriYes) {
			phases = append(phases, report.PhaseRelay)
		}
	}
	res.Matched = matched(res.Predicted, res.Outcome)
	bctx, bcancel := context.WithTimeout(ctx, time.Second)
	defer bcancel()
	_ = s.send(bctx, rendezvous.Message{Type: rendezvous.TypeBye})
	return nil
}

// waitErr turns a wait's error into Run's: a timeout of the wait itself is
// ErrNoPeer.
func waitErr(ctx context.Context, err error, format string, args ...any) error {
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		return fmt.Errorf("%w: "+format, append([]any{ErrNoPeer}, args...)...)
	}
	return err
}

// phase runs one phase: offer and answer, trickled candidates, ICE, the
// burst, and the results both ways. An error ends the whole run; a phase
// that did not connect is not an error.
func (s *session) phase(ctx context.Context, phase string) (report.PairPhase, error) {
	cfg := s.cfg
	pr := report.PairPhase{Phase: phase}
	pctx, pcancel := context.WithTimeout(ctx, cfg.phaseTimeout())
	defer pcancel()

	agent, err := s.newAgent(pctx, phase)
	if err != nil {
		pr.Error = err.Error()
		// Still tell the peer, so it does not wait for an offer.
		return pr, s.finishPhase(ctx, phase, &pr, nil)
	}
	defer closeAgent(agent)
	ufrag, pwd, err := agent.GetLocalUserCredentials()
	if err != nil {
		return pr, err
	}
	mySDP, err := offerSDP(ufrag, pwd, rand.Uint64()>>2)
	if err != nil {
		return pr, err
	}
	if err := agent.OnCandidate(func(c ice.Candidate) {
		m := rendezvous.Message{Type: rendezvous.TypeEndOfCandidates, Phase: phase}
		if c != nil {
			m = rendezvous.Message{Type: rendezvous.TypeCandidate, Phase: phase, Candidate: c.Marshal()}
		}
		if err := s.send(pctx, m); err != nil && pctx.Err() == nil {
			select {
			case s.failures <- err:
			default:
			}
		}
	}); err != nil {
		return pr, err
	}

	var start time.Time
	var remoteSDP string
	first := cfg.Role == rendezvous.RoleFirst
	if first {
		start = time.Now()
		if err := s.send(ctx, rendezvous.Message{Type: rendezvous.TypeOffer, Phase: phase, SDP: mySDP}); err != nil {
			return pr, err
		}
		if err := agent.GatherCandidates(); err != nil {
			pr.Error = "gathering candidates: " + err.Error()
			return pr, s.finishPhase(ctx, phase, &pr, nil)
		}
		if err := s.wait(pctx, func() bool { return s.answers[phase] != "" }); err != nil {
			if pctx.Err() == nil || ctx.Err() != nil {
				return pr, err
			}
			pr.Error = fmt.Sprintf("no answer from the peer within %v", cfg.phaseTimeout())
			return pr, s.finishPhase(ctx, phase, &pr, nil)
		}
		remoteSDP = s.answers[phase]
	} else {
		if err := s.wait(pctx, func() bool { return s.offers[phase] != "" }); err != nil {
			if pctx.Err() == nil || ctx.Err() != nil {
				return pr, err
			}
			pr.Error = fmt.Sprintf("no offer from the peer within %v", cfg.phaseTimeout())
			return pr, s.finishPhase(ctx, phase, &pr, nil)
		}
		start = time.Now()
		remoteSDP = s.offers[phase]
		if err := s.send(ctx, rendezvous.Message{Type: rendezvous.TypeAnswer, Phase: phase, SDP: mySDP}); err != nil {
			return pr, err
		}
		if err := agent.GatherCandidates(); err != nil {
			pr.Error = "gathering candidates: " + err.Error()
			return pr, s.finishPhase(ctx, phase, &pr, nil)
		}
	}
	rufrag, rpwd, _ := parseSDP(remoteSDP) // checked in handle
	s.agents[phase] = agent
	defer delete(s.agents, phase)
	for _, c := range s.pending[phase] {
		if err := agent.AddRemoteCandidate(c); err != nil {
			return pr, fmt.Errorf("%w: candidate %q: %v", ErrBadMessage, shorten(c.Marshal()), err)
		}
	}
	delete(s.pending, phase)

	type connected struct {
		conn *ice.Conn
		err  error
	}
	dialed := make(chan connected, 1)
	go func() {
		var c *ice.Conn
		var err error
		if first {
			c, err = agent.Dial(pctx, rufrag, rpwd)
		} else {
			c, err = agent.Accept(pctx, rufrag, rpwd)
		}
		dialed <- connected{c, err}
		s.notify()
	}()
	var got *connected
	err = s.wait(pctx, func() bool {
		if got != nil {
			return true
		}
		select {
		case c := <-dialed:
			got = &c
			return true
		default:
			return false
		}
	})
	if err != nil && (pctx.Err() == nil || ctx.Err() != nil) {
		return pr, err
	}
	if got == nil || got.err != nil {
		pr.Error = fmt.Sprintf("ICE did not connect within %v", cfg.phaseTimeout())
		if s.eoc[phase] && got != nil {
			pr.Error = "ICE connectivity checks failed on every candidate pair"
		}
		return pr, s.finishPhase(ctx, phase, &pr, nil)
	}
	s.connected[phase] = time.Now()
	ms := s.connected[phase].Sub(start).Milliseconds()
	pr.Connected, pr.ConnectMS = true, &ms
	if p, err := agent.GetSelectedCandidatePair(); err == nil && p != nil {
		pr.Selected = &report.PairSelected{Local: pairCandidate(p.Local), Remote: pairCandidate(p.Remote)}
	}
	s.progress(phase + " phase: connected, measuring")
	return pr, s.finishPhase(ctx, phase, &pr, got.conn)
}

// finishPhase runs the burst over conn (when connected), sends this side's
// result and waits for the peer's, keeping conn open (and echoing) until
// it arrives or a phase timeout passes.
func (s *session) finishPhase(ctx context.Context, phase string, pr *report.PairPhase, conn *ice.Conn) error {
	cfg := s.cfg
	var b *burster
	if conn != nil {
		b = newBurster(conn)
		defer func() { conn.Close(); <-b.done }()
		if n := cfg.burst(); n > 0 && cfg.server == nil {
			st := b.send(ctx, n, cmpOrInt(cfg.BurstSize, DefaultBurstSize), cmpOr(cfg.BurstInterval, DefaultBurstInterval), time.Second)
			loss := st.loss()
			pr.Loss = &loss
			if len(st.rtts) > 0 {
				rtt := float64(st.medianRTT().Microseconds()) / 1000
				pr.RTTMS = &rtt
			}
			if st.echoed == 0 {
				pr.Error = "connected, but no echo of the burst came back"
			}
		}
	}
	data, err := json.Marshal(phaseResult{Connected: pr.Connected, Selected: pr.Selected, ConnectMS: pr.ConnectMS, Error: pr.Error})
	if err != nil {
		return err
	}
	if err := s.send(ctx, rendezvous.Message{Type: rendezvous.TypeResult, Phase: phase, Data: data}); err != nil {
		return err
	}
	// The peer's burst lasts as long as ours; its result follows.
	rctx, rcancel := context.WithTimeout(ctx, cfg.phaseTimeout()+burstTime(cfg))
	defer rcancel()
	err = s.wait(rctx, func() bool { _, ok := s.results[phase]; return ok })
	if r, ok := s.results[phase]; ok {
		pr.PeerConnected = natclass.TriOf(r.Connected)
	}
	if err != nil && (rctx.Err() == nil || ctx.Err() != nil) {
		return err
	}
	return nil
}

// burstTime is how long a burst like ours takes: the packets and a second
// for the last echoes.
func burstTime(cfg Config) time.Duration {
	return time.Duration(cfg.burst())*cmpOr(cfg.BurstInterval, DefaultBurstInterval) + time.Second
}

func cmpOrInt(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

func pairCandidate(c ice.Candidate) report.PairCandidate {
	return report.PairCandidate{
		Type:     c.Type().String(),
		Protocol: c.NetworkType().NetworkShort(),
		Address:  net.JoinHostPort(c.Address(), strconv.Itoa(c.Port())),
	}
}

// newAgent creates the ICE agent of a phase.
func (s *session) newAgent(ctx context.Context, phase string) (*ice.Agent, error) {
	cfg := s.cfg
	lf := cfg.LoggerFactory
	if lf == nil {
		d := logging.NewDefaultLoggerFactory()
		d.Writer = io.Discard
		d.DefaultLogLevel = logging.LogLevelDisabled
		lf = d
	}
	opts := []ice.AgentOption{
		ice.WithMulticastDNSMode(ice.MulticastDNSModeDisabled),
		ice.WithLoggerFactory(lf),
		ice.WithDisconnectedTimeout(cfg.phaseTimeout()),
		ice.WithFailedTimeout(cfg.phaseTimeout()),
		ice.WithSTUNGatherTimeout(cfg.phaseTimeout() / 2),
		ice.WithRelayAcceptanceMinWait(0),
	}
	if cfg.Net != nil {
		opts = append(opts, ice.WithNet(cfg.Net))
	}
	if cfg.IPFilter != nil {
		opts = append(opts, ice.WithIPFilter(cfg.IPFilter))
	}
	if cfg.IncludeLoopback {
		opts = append(opts, ice.WithIncludeLoopback())
	}
	if cfg.server != nil {
		return cfg.server.newAgent(opts)
	}
	// Both families: a pair symmetric over IPv4 may connect directly over
	// IPv6, and relays of either family pair up with the peer's.
	networks := []ice.NetworkType{ice.NetworkTypeUDP4, ice.NetworkTypeUDP6}
	if cfg.ActiveTCP && phase == report.PhaseDirect {
		networks = append(networks, ice.NetworkTypeTCP4, ice.NetworkTypeTCP6)
		// pion nominates the first host pair that works; give UDP, whose
		// pairs rank higher, time to be that pair, so ICE-TCP is chosen
		// only where UDP does not get through (as a browser would).
		opts = append(opts, ice.WithHostAcceptanceMinWait(iceTCPWait))
	}
	opts = append(opts, ice.WithNetworkTypes(networks))
	if phase == report.PhaseRelay && len(cfg.TURN) > 0 {
		urls, dialer, err := turncheck.ICERelay(ctx, cfg.TURN, cfg.TURNOptions)
		if err != nil {
			return nil, err
		}
		// TURN servers are reached over IPv4 as before, and over IPv6 when
		// named by an IPv6 literal or a name with IPv6 addresses only;
		// with both families in the candidates, each allocation's relayed
		// address is of its transport's family.
		opts = append(opts, ice.WithCandidateTypes([]ice.CandidateType{ice.CandidateTypeRelay}), ice.WithUrls(urls),
			ice.WithTURNTransportProtocols(turncheck.ICERelayTransports(ctx, cfg.TURN, cfg.TURNOptions)))
		if dialer != nil {
			opts = append(opts, ice.WithProxyDialer(dialer))
		}
	} else {
		var urls []*stun.URI
		for _, hp := range cfg.STUN {
			u, err := stun.ParseURI("stun:" + hp)
			if err != nil {
				return nil, fmt.Errorf("STUN server %q: %w", hp, err)
			}
			urls = append(urls, u)
		}
		opts = append(opts, ice.WithCandidateTypes([]ice.CandidateType{ice.CandidateTypeHost, ice.CandidateTypeServerReflexive}),
			ice.WithUrls(urls))
	}
	a, err := ice.NewAgentWithOptions(opts...)
	if err != nil {
		return nil, fmt.Errorf("creating an ICE agent: %w", err)
	}
	return a, nil
}

// closeAgent closes a, bounded: pion's agent ends its goroutines on its own.
func closeAgent(a *ice.Agent) {
	done := make(chan struct{})
	go func() { _ = a.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
}

// iceTCPWait is how long the controlling agent waits before nominating a
// host pair when ICE-TCP is offered beside UDP.
const iceTCPWait = 500 * time.Millisecond

// reachICETCP tries one TCP connection to the server peer's ICE-TCP port,
// at the IP of its first public address, for at most 3 s.
func (s *session) reachICETCP(ctx context.Context, peer Summary) natclass.Tri {
	if len(peer.PublicAddresses) == 0 {
		return natclass.TriUnknown
	}
	ap, err := netip.ParseAddrPort(peer.PublicAddresses[0])
	if err != nil {
		return natclass.TriUnknown
	}
	addr := netip.AddrPortFrom(ap.Addr(), uint16(peer.ICETCPPort)).String()
	s.progress("trying TCP to the server peer's ICE-TCP port " + addr)
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	var c net.Conn
	if s.cfg.Net != nil {
		c, err = s.cfg.Net.CreateDialer(&net.Dialer{Timeout: 3 * time.Second}).Dial("tcp", addr)
	} else {
		c, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	}
	if ctx.Err() != nil && errors.Is(ctx.Err(), context.Canceled) {
		return natclass.TriUnknown
	}
	if err != nil {
		return natclass.TriNo
	}
	c.Close()
	return natclass.TriYes
}
