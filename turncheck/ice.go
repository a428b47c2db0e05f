package turncheck

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/stun/v4"

	"github.com/natcheck/natcheck/natclass"
)

// proxyDialer dials TURN servers for pion/ice over TCP with a timeout, and
// does the TLS handshake itself for turns:, so that a private CA and
// --insecure apply (pion/ice has no option for a private CA). It
// implements golang.org/x/net/proxy.Dialer.
type proxyDialer struct {
	ctx     context.Context
	url     URL
	o       Options
	mu      sync.Mutex
	lastErr error
}

func (d *proxyDialer) Dial(network, addr string) (net.Conn, error) {
	if d.o.Allow != nil {
		ap, err := netip.ParseAddrPort(addr)
		if err == nil {
			err = d.o.Allow(ap)
		} else {
			err = fmt.Errorf("%s is not an address the check resolved and allowed", addr)
		}
		if err != nil {
			d.mu.Lock()
			d.lastErr = err
			d.mu.Unlock()
			return nil, err
		}
	}
	nd := net.Dialer{Timeout: d.o.stepTimeout()}
	conn, err := nd.DialContext(d.ctx, network, addr)
	if err == nil && d.url.Secure {
		var tc *tls.Conn
		tc, _, err = handshake(d.ctx, conn, d.url.Host, d.o)
		if err != nil {
			conn.Close()
		} else {
			conn = tc
		}
	}
	if err != nil {
		d.mu.Lock()
		d.lastErr = err
		d.mu.Unlock()
		return nil, err
	}
	return conn, nil
}

func (d *proxyDialer) err() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lastErr
}

// agentOptions are the options of an ICE agent gathering only candidates of
// type typ from the given URLs, quietly, with logs kept in logs. Its
// candidates and its transports to TURN servers are IPv4 (relayOptions
// changes both).
func agentOptions(typ ice.CandidateType, urls []*stun.URI, logs *logFactory, o Options) []ice.AgentOption {
	return []ice.AgentOption{
		ice.WithUrls(urls),
		ice.WithCandidateTypes([]ice.CandidateType{typ}),
		ice.WithNetworkTypes([]ice.NetworkType{ice.NetworkTypeUDP4, ice.NetworkTypeTCP4}),
		ice.WithTURNTransportProtocols([]ice.NetworkType{ice.NetworkTypeUDP4, ice.NetworkTypeTCP4}),
		ice.WithMulticastDNSMode(ice.MulticastDNSModeDisabled),
		ice.WithRelayAcceptanceMinWait(0),
		ice.WithSTUNGatherTimeout(o.stepTimeout()),
		ice.WithDisconnectedTimeout(o.stepTimeout()),
		ice.WithFailedTimeout(o.stepTimeout()),
		ice.WithLoggerFactory(logs),
	}
}

// relayOptions are the options that make an agent reach its TURN server
// over the server's family (IPv6 when server6) and gather relayed
// candidates of relayFamily (4 or 6; 0 is the server's family). pion/ice
// asks for the relayed address family (RFC 6156 REQUESTED-ADDRESS-FAMILY)
// when its candidates are of one family only, as here; pion/turn sends
// the attribute for IPv6 only, so an IPv4 relay over an IPv6 transport is
// left to the server (relayOverTURNClients).
func relayOptions(server6 bool, relayFamily int) []ice.AgentOption {
	udp, tcp := ice.NetworkTypeUDP4, ice.NetworkTypeTCP4
	if server6 {
		udp, tcp = ice.NetworkTypeUDP6, ice.NetworkTypeTCP6
	}
	transports := []ice.NetworkType{udp, tcp}
	switch relayFamily {
	case 4:
		udp, tcp = ice.NetworkTypeUDP4, ice.NetworkTypeTCP4
	case 6:
		udp, tcp = ice.NetworkTypeUDP6, ice.NetworkTypeTCP6
	}
	return []ice.AgentOption{
		ice.WithNetworkTypes([]ice.NetworkType{udp, tcp}),
		ice.WithTURNTransportProtocols(transports),
	}
}

// EndToEndCheck connects two local ICE agents, restricted to relayed
// candidates (RFC 8445 section 5.1.1.2) from the same TURN server, to each
// other, and sends data both ways: the proof that two browsers could relay
// media through the server. It returns the selected candidate pair. The
// agents reach the server over its family and ask for relayed addresses of
// o.RelayFamily (default: the server's family); for an IPv4 relay over an
// IPv6 transport two TURN clients take the agents' place
// (relayOverTURNClients).
func EndToEndCheck(ctx context.Context, s Server, o Options) natclass.EndToEnd {
	var res natclass.EndToEnd
	if err := s.Credentials.Validate(); err != nil {
		res.Error = err.Error()
		return res
	}
	budget := 4 * o.stepTimeout()
	ctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	server, err := resolveServer(ctx, s.URL, o)
	if err == nil && useTURNClients(server, o) {
		return endToEndClients(ctx, s, server, o)
	}
	server6 := err == nil && server.Addr().Unmap().Is6()
	start := time.Now()

	user, pw, _ := s.Credentials.Resolve(o.now())
	logs := newLogFactory(pw.Reveal(), s.Credentials.SharedSecret.Reveal())
	iceURL := s.URL
	if o.Allow != nil {
		// The agents get the address resolved and allowed here, not the
		// name: pion/ice would look it up again, and a second answer may
		// differ (DNS rebinding). TLS still verifies the name (d.url).
		server, err := resolveServer(ctx, s.URL, o)
		if err == nil {
			err = o.Allow(server)
		}
		if err != nil {
			res.Error = err.Error()
			return res
		}
		iceURL.Host = server.Addr().String()
	}
	uri := iceURL.stunURI(user, pw.Reveal())
	newAgent := func() (*ice.Agent, *proxyDialer, error) {
		opts := agentOptions(ice.CandidateTypeRelay, []*stun.URI{uri}, logs, o)
		opts = append(opts, relayOptions(server6, o.RelayFamily)...)
		d := &proxyDialer{ctx: ctx, url: s.URL, o: o}
		if s.URL.Transport != natclass.TURNTransportUDP {
			opts = append(opts, ice.WithProxyDialer(d))
		}
		a, err := ice.NewAgentWithOptions(opts...)
		return a, d, err
	}
	a, da, err := newAgent()
	if err != nil {
		res.Error = "creating an ICE agent: " + err.Error()
		return res
	}
	defer closeAgent(a)
	b, _, err := newAgent()
	if err != nil {
		res.Error = "creating an ICE agent: " + err.Error()
		return res
	}
	defer closeAgent(b)

	// Trickle each agent's candidates to the other, and note when each has
	// finished gathering and how many relay candidates it found.
	var mu sync.Mutex
	relays := map[*ice.Agent]int{}
	gathered := make(chan *ice.Agent, 2)
	trickle := func(from, to *ice.Agent) {
		from.OnCandidate(func(c ice.Candidate) {
			if c == nil {
				gathered <- from
				return
			}
			mu.Lock()
			relays[from]++
			mu.Unlock()
			if rc, err := ice.UnmarshalCandidate(c.Marshal()); err == nil {
				to.AddRemoteCandidate(rc)
			}
		})
	}
	trickle(a, b)
	trickle(b, a)
	failed := make(chan struct{})
	var once sync.Once
	for _, ag := range []*ice.Agent{a, b} {
		ag.OnConnectionStateChange(func(st ice.ConnectionState) {
			if st == ice.ConnectionStateFailed {
				once.Do(func() { close(failed) })
			}
		})
	}
	aUfrag, aPwd, _ := a.GetLocalUserCredentials()
	bUfrag, bPwd, _ := b.GetLocalUserCredentials()
	if err := a.GatherCandidates(); err != nil {
		res.Error = "gathering: " + err.Error()
		return res
	}
	if err := b.GatherCandidates(); err != nil {
		res.Error = "gathering: " + err.Error()
		return res
	}

	type result struct {
		conn *ice.Conn
		err  error
	}
	dialed := make(chan result, 1)
	accepted := make(chan result, 1)
	go func() { c, err := a.Dial(ctx, bUfrag, bPwd); dialed <- result{c, err} }()
	go func() { c, err := b.Accept(ctx, aUfrag, aPwd); accepted <- result{c, err} }()

	var ac, bc *ice.Conn
	noRelay := func() string {
		msg := "no relay candidate was gathered"
		if e := da.err(); e != nil {
			return msg + ": " + e.Error()
		}
		if w := firstWarning(logs); w != "" {
			return msg + ": " + w
		}
		return msg
	}
	for ac == nil || bc == nil {
		select {
		case r := <-dialed:
			if r.err != nil {
				res.Error = "connecting: " + r.err.Error()
				return res
			}
			ac = r.conn
		case r := <-accepted:
			if r.err != nil {
				res.Error = "connecting: " + r.err.Error()
				return res
			}
			bc = r.conn
		case ag := <-gathered:
			mu.Lock()
			n := relays[ag]
			mu.Unlock()
			if n == 0 {
				res.Error = noRelay()
				return res
			}
		case <-failed:
			res.Error = "ICE connectivity checks between the two relayed candidates failed"
			return res
		case <-ctx.Done():
			res.Error = fmt.Sprintf("not connected within %v", budget)
			mu.Lock()
			if relays[a] == 0 || relays[b] == 0 {
				res.Error = noRelay()
			}
			mu.Unlock()
			return res
		}
	}
	res.Time = time.Since(start)
	if p, err := a.GetSelectedCandidatePair(); err == nil && p != nil {
		res.Local, res.Remote = candidateString(p.Local), candidateString(p.Remote)
	}

	// Data both ways: b echoes what a sends.
	const n = 3
	go func() {
		buf := make([]byte, 1500)
		for i := 0; i < n; i++ {
			bc.SetReadDeadline(time.Now().Add(o.stepTimeout()))
			k, err := bc.Read(buf)
			if err != nil {
				return
			}
			bc.Write(buf[:k])
		}
	}()
	buf := make([]byte, 1500)
	for i := 0; i < n; i++ {
		msg := fmt.Sprintf("natcheck end-to-end %d", i)
		if _, err := ac.Write([]byte(msg)); err != nil {
			break
		}
		res.Sent++
		ac.SetReadDeadline(time.Now().Add(o.stepTimeout()))
		k, err := ac.Read(buf)
		if err != nil {
			break
		}
		if string(buf[:k]) == msg {
			res.Received++
		}
	}
	res.Connected = res.Received > 0
	if !res.Connected {
		res.Error = "connected, but no data came back through the relays"
	}
	return res
}

func closeAgent(a *ice.Agent) {
	done := make(chan struct{})
	go func() { a.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second): // bounded; the agent's goroutines end on their own
	}
}

// firstWarning is the first warning pion logged, shortened for a person.
func firstWarning(l *logFactory) string {
	msgs := l.messages()
	// Lines about the server first, then any failure.
	for _, m := range msgs {
		lm := strings.ToLower(m)
		for _, k := range []string{"turn", "allocate", "relay", "dial", "server reflexive", "stun", "listen"} {
			if strings.Contains(lm, k) && (strings.Contains(lm, "fail") || strings.Contains(lm, "error")) {
				return plainICEError(m)
			}
		}
	}
	for _, m := range msgs {
		if strings.Contains(m, "ailed") || strings.Contains(m, "rror") {
			return plainICEError(m)
		}
	}
	return ""
}

// plainICEError rewords pion's log line about a failed server.
func plainICEError(m string) string {
	switch {
	case strings.Contains(m, "401") || strings.Contains(m, "441"):
		return "the TURN server rejected the credentials (401)"
	case strings.Contains(m, "all retransmissions failed") || strings.Contains(m, "i/o timeout") || strings.Contains(m, "timeout"):
		return "no answer from the server"
	case strings.Contains(m, "connection refused"):
		return "connection refused: nothing listens on that port"
	case strings.Contains(m, "certificate"):
		return "TLS certificate not trusted: " + m
	}
	return m
}

// Gather gathers ICE candidates as a browser would from here: host
// candidates, server-reflexive candidates from each STUN server (HOST:PORT)
// and relayed candidates from each TURN server, with one agent per server so
// each candidate can be tied to the server that produced it. Per server it
// says whether it produced what it should, and if not why.
func Gather(ctx context.Context, stunServers []string, turnServers []Server, o Options) natclass.Gathering {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, 3*o.stepTimeout())
	defer cancel()
	var (
		mu  sync.Mutex
		out natclass.Gathering
		wg  sync.WaitGroup
	)
	out.Candidates = []natclass.Candidate{}
	out.Servers = []natclass.CandidateServer{}
	run := func(label string, typ ice.CandidateType, urls []*stun.URI, d *proxyDialer, extra []ice.AgentOption, secrets ...string) natclass.CandidateServer {
		cs := natclass.CandidateServer{URL: label, Want: typ.String()}
		logs := newLogFactory(secrets...)
		opts := append(agentOptions(typ, urls, logs, o), extra...)
		if typ != ice.CandidateTypeRelay {
			// Host and server-reflexive candidates of both families:
			// pion/ice gathers srflx over UDP only.
			opts = append(opts, ice.WithNetworkTypes([]ice.NetworkType{ice.NetworkTypeUDP4, ice.NetworkTypeUDP6}))
		}
		if d != nil {
			opts = append(opts, ice.WithProxyDialer(d))
		}
		a, err := ice.NewAgentWithOptions(opts...)
		if err != nil {
			cs.Error = "creating an ICE agent: " + err.Error()
			return cs
		}
		defer closeAgent(a)
		done := make(chan struct{})
		a.OnCandidate(func(c ice.Candidate) {
			if c == nil {
				close(done)
				return
			}
			nc := convertCandidate(c, start)
			if typ != ice.CandidateTypeHost {
				nc.Server = label
			}
			mu.Lock()
			out.Candidates = append(out.Candidates, nc)
			mu.Unlock()
			if c.Type() == typ {
				cs.Produced++ // only this callback's goroutine writes it
			}
		})
		if err := a.GatherCandidates(); err != nil {
			cs.Error = "gathering: " + err.Error()
			return cs
		}
		select {
		case <-done:
		case <-ctx.Done():
			cs.Error = "gathering did not finish in time"
			return cs
		}
		if cs.Produced == 0 {
			switch {
			case d != nil && d.err() != nil:
				cs.Error = d.err().Error()
			case firstWarning(logs) != "":
				cs.Error = firstWarning(logs)
			case typ == ice.CandidateTypeHost:
				cs.Error = "no usable network interface"
			default:
				cs.Error = "no answer from the server"
			}
		}
		return cs
	}
	results := make([]natclass.CandidateServer, 1+len(stunServers)+len(turnServers))
	wg.Go(func() {
		results[0] = run("", ice.CandidateTypeHost, nil, nil, nil)
	})
	for i, s := range stunServers {
		wg.Go(func() {
			label := "stun:" + s
			uri, err := stun.ParseURI(label)
			if err != nil {
				results[1+i] = natclass.CandidateServer{URL: label, Want: "srflx", Error: "bad STUN server: " + err.Error()}
				return
			}
			results[1+i] = run(label, ice.CandidateTypeServerReflexive, []*stun.URI{uri}, nil, nil)
		})
	}
	for i, s := range turnServers {
		wg.Go(func() {
			k := 1 + len(stunServers) + i
			if err := s.Credentials.Validate(); err != nil {
				results[k] = natclass.CandidateServer{URL: s.URL.String(), Want: "relay", Error: err.Error()}
				return
			}
			// A server named by an IPv6 literal is reached over IPv6 and
			// gives IPv6 relays; a name, over IPv4 as before.
			a, err := netip.ParseAddr(s.URL.Host)
			server6 := err == nil && a.Unmap().Is6()
			user, pw, _ := s.Credentials.Resolve(o.now())
			var d *proxyDialer
			if s.URL.Transport != natclass.TURNTransportUDP {
				d = &proxyDialer{ctx: ctx, url: s.URL, o: o}
			}
			results[k] = run(s.URL.String(), ice.CandidateTypeRelay, []*stun.URI{s.URL.stunURI(user, pw.Reveal())}, d,
				relayOptions(server6, 0), pw.Reveal(), s.Credentials.SharedSecret.Reveal())
		})
	}
	wg.Wait()
	// The host agent's entry is not a server.
	out.Servers = append(out.Servers, results[1:]...)
	if results[0].Error != "" && results[0].Produced == 0 {
		out.Servers = append([]natclass.CandidateServer{results[0]}, out.Servers...)
		out.Servers[0].URL = "host"
	}
	sortCandidates(out.Candidates)
	out.Duration = time.Since(start)
	return out
}

// ExplainGathering replaces a TURN server's gathering error with the
// explanation of its TURN check, which knows more.
func ExplainGathering(g *natclass.Gathering, checks []natclass.TURNCheck) {
	for i := range g.Servers {
		s := &g.Servers[i]
		if s.Produced > 0 || s.Want != ice.CandidateTypeRelay.String() {
			continue
		}
		for _, c := range checks {
			if c.URL == s.URL && c.Error != "" && c.FailedStep != natclass.TURNStepData && c.FailedStep != natclass.TURNStepEndToEnd {
				s.Error = c.Error
			}
		}
	}
}

func convertCandidate(c ice.Candidate, start time.Time) natclass.Candidate {
	nc := natclass.Candidate{
		Type:     c.Type().String(),
		Protocol: c.NetworkType().NetworkShort(),
		Port:     c.Port(),
		Priority: c.Priority(),
		Time:     time.Since(start),
	}
	if a, err := netip.ParseAddr(c.Address()); err == nil {
		nc.Address = a.Unmap()
		nc.Family = Family(nc.Address)
	}
	if ra := c.RelatedAddress(); ra != nil {
		if a, err := netip.ParseAddr(ra.Address); err == nil {
			nc.RelatedAddr = a.Unmap()
		}
		nc.RelatedPort = ra.Port
	}
	if rc, ok := c.(*ice.CandidateRelay); ok {
		nc.RelayProtocol = rc.RelayProtocol()
	}
	return nc
}

// sortCandidates orders candidates by priority, highest first, as ICE
// would try them.
func sortCandidates(cs []natclass.Candidate) {
	slices.SortStableFunc(cs, func(a, b natclass.Candidate) int { return cmp.Compare(b.Priority, a.Priority) })
}

// candidateString is a candidate in short: type, protocol, address, and the
// transport to the TURN server of a local relay candidate.
func candidateString(c ice.Candidate) string {
	s := fmt.Sprintf("%s %s %s", c.Type(), c.NetworkType().NetworkShort(), net.JoinHostPort(c.Address(), fmt.Sprint(c.Port())))
	if rc, ok := c.(*ice.CandidateRelay); ok && rc.RelayProtocol() != "" {
		s += " (to the server over " + rc.RelayProtocol() + ")"
	}
	return s
}

// ProxyDialer is golang.org/x/net/proxy.Dialer, which ice.WithProxyDialer
// takes.
type ProxyDialer interface {
	Dial(network, addr string) (net.Conn, error)
}

// ICERelay returns what an ICE agent needs to gather relayed candidates
// from servers: their URLs with credentials (resolved at o's clock), and,
// when a server is reached over TCP or TLS, a proxy dialer that connects
// to it as the TURN checks do (o's roots, --insecure, Allow). pion/ice
// takes one proxy dialer per agent: every UDP server is used, and the
// first TCP or TLS one.
func ICERelay(ctx context.Context, servers []Server, o Options) ([]*stun.URI, ProxyDialer, error) {
	var (
		urls []*stun.URI
		d    *proxyDialer
	)
	for _, s := range servers {
		if err := s.Credentials.Validate(); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", s.URL, err)
		}
		if s.URL.Transport != natclass.TURNTransportUDP {
			if d != nil {
				continue
			}
			d = &proxyDialer{ctx: ctx, url: s.URL, o: o}
		}
		user, pw, _ := s.Credentials.Resolve(o.now())
		urls = append(urls, s.URL.stunURI(user, pw.Reveal()))
	}
	if len(urls) == 0 {
		return nil, nil, errors.New("no TURN server")
	}
	if d == nil {
		return urls, nil, nil
	}
	return urls, d, nil
}

// ICERelayTransports are the transports an ICE agent reaches servers over
// (ice.WithTURNTransportProtocols): UDP and TCP over IPv4, as before, and
// over IPv6 for a server named by an IPv6 literal or by a name whose
// resolved address (as the TURN checks pick it: IPv4 first, NAT64 aside)
// is IPv6. Only IPv6 when every server is IPv6. pion/ice tries each server over every
// transport given, so with both families a dual-stack name is also
// reached over IPv6; an IPv4 literal is not (it does not resolve as udp6).
func ICERelayTransports(ctx context.Context, servers []Server, o Options) []ice.NetworkType {
	o.NAT64 = netip.Prefix{} // a name with an IPv4 address stays IPv4, as before
	var v4, v6 bool
	for _, s := range servers {
		six := false
		if a, err := netip.ParseAddr(s.URL.Host); err == nil {
			six = a.Unmap().Is6()
		} else if ap, err := resolveServer(ctx, s.URL, o); err == nil {
			six = ap.Addr().Unmap().Is6()
		}
		if six {
			v6 = true
		} else {
			v4 = true
		}
	}
	var out []ice.NetworkType
	if v4 || !v6 {
		out = append(out, ice.NetworkTypeUDP4, ice.NetworkTypeTCP4)
	}
	if v6 {
		out = append(out, ice.NetworkTypeUDP6, ice.NetworkTypeTCP6)
	}
	return out
}
