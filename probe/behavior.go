package probe

// The RFC 5780 behaviour tests (section 4): mapping, filtering with its
// controls, the loss probes that silence is weighed against, the resample
// of a contradictory mapping, and hairpinning (4.7).

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/pion/stun/v4"

	"github.com/natcheck/natcheck/natclass"
	natstun "github.com/natcheck/natcheck/stun"
)

// rfc5780 runs mapping tests II and III and the filtering tests against one
// server that advertised a usable OTHER-ADDRESS.
//
// One rule orders them: no server endpoint is asked to send to a socket's
// public address before that socket has had an answer from that endpoint.
// On a Linux router that accepts unsolicited input, a packet that arrives
// first leaves a conntrack entry, and masquerade then gives the socket
// another port when it does send there: the test would make the mapping
// change it measures. So each control waits for the mapping test that
// opens the NAT towards the address it asks for. The filtering socket is
// the exception by design: it is sent replies from addresses it never
// talked to, and it never talks to them.
func (e *engine) rfc5780(ctx context.Context, ms *socket, idx int, srv *natclass.Server) natclass.RFC5780Tests {
	t := natclass.RFC5780Tests{Server: idx}
	p, a := srv.Address, srv.Binding.Other
	pa := netip.AddrPortFrom(p.Addr(), a.Port()) // primary IP, alternate port
	rtt := srv.Binding.PathRTT()
	var wg sync.WaitGroup
	run := func(wg *sync.WaitGroup, dst *natclass.Transaction, s *socket, name string, to netip.AddrPort, req request) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			*dst = e.transact(ctx, s, name, to, req, e.testWindow(rtt, req))
		}()
	}
	// Filtering (4.4) on a fresh socket that never talked to A, with loss
	// probes from that socket until its change tests end.
	fs, err := e.newSocket(fmt.Sprintf("filtering-%d", idx))
	if err != nil {
		t.FilteringI = natclass.Transaction{Dest: p, Error: err.Error()}
	} else {
		var fwg sync.WaitGroup
		run(&wg, &t.FilteringI, fs, "filtering-I", p, request{})
		run(&fwg, &t.FilteringII, fs, "filtering-II", p, request{change: natstun.ChangeRequest{ChangeIP: true, ChangePort: true}})
		run(&fwg, &t.FilteringIII, fs, "filtering-III", p, request{change: natstun.ChangeRequest{ChangePort: true}})
		done := make(chan struct{})
		wg.Add(2)
		go func() {
			defer wg.Done()
			t.LossProbes = e.lossProbes(ctx, fs, p, rtt, done)
		}()
		go func() {
			defer wg.Done()
			fwg.Wait()
			close(done)
		}()
	}
	// Mapping (4.3) on the mapping socket, with a plain request to P:a. The
	// controls, from the same socket, ask for replies from A:a and P:a: each
	// goes out once the request to that endpoint was answered, so the NAT
	// holds a mapping towards it and lets the reply in.
	run(&wg, &t.MappingII, ms, "mapping-II", netip.AddrPortFrom(a.Addr(), p.Port()), request{})
	wg.Add(2)
	go func() {
		defer wg.Done()
		t.MappingIII = e.transact(ctx, ms, "mapping-III", a, request{}, e.testWindow(rtt, request{}))
		t.Control = e.control(ctx, ms, "control", p, natstun.ChangeRequest{ChangeIP: true, ChangePort: true}, srv.Binding, t.MappingIII, rtt)
	}()
	go func() {
		defer wg.Done()
		t.MappingPa = e.transact(ctx, ms, "mapping-Pa", pa, request{}, e.testWindow(rtt, request{}))
		t.ControlPort = e.control(ctx, ms, "control-port", p, natstun.ChangeRequest{ChangePort: true}, srv.Binding, t.MappingPa, rtt)
	}()
	wg.Wait()
	return t
}

// lossProbes sends single plain requests from s to dest, one every
// retransmission interval, until done closes (the filtering tests ended),
// and returns those whose own short window ended: each answered or not, a
// direct sample of the loss on this path. Silence in the filtering tests is
// weighed against that loss (natclass.Loss); without the probes a run has
// only a handful of answered transactions to measure it from.
func (e *engine) lossProbes(ctx context.Context, s *socket, dest netip.AddrPort, rtt time.Duration, done <-chan struct{}) []natclass.Transaction {
	every := retransmitEvery(rtt)
	win := 2*rtt + lossProbeWait
	pctx, cancel := context.WithCancel(ctx)
	var mu sync.Mutex
	var out []natclass.Transaction
	var wg sync.WaitGroup
	tick := time.NewTicker(every)
	defer tick.Stop()
send:
	for range maxLossProbes {
		end := time.Now().Add(win)
		if end.After(e.deadline) {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := e.transact(pctx, s, "loss-probe", dest, request{}, wait{deadline: end, interval: 2 * win, minWait: win, fixed: true})
			// Counted only once its window has ended, answered or not:
			// answers come early and silences late, and counting
			// answers at once would bias the estimate low.
			select {
			case <-pctx.Done():
				return
			case <-time.After(time.Until(end)):
			}
			ok := p.Status == natclass.StatusReply || p.Status == natclass.StatusErrorReply
			if !ok && p.Status != natclass.StatusNoReply {
				return
			}
			mu.Lock()
			out = append(out, p)
			e.lossMu.Lock()
			e.loss.Add(p.Sent, ok)
			e.lossMu.Unlock()
			mu.Unlock()
		}()
		select {
		case <-done:
			break send
		case <-ctx.Done():
			break send
		case <-tick.C:
		}
	}
	cancel()
	wg.Wait()
	return out
}

// testWindow is the window of one RFC 5780 test: silence in it is read only
// when the loss measured so far cannot explain it (wait.extend). CHANGE-
// REQUEST tests retransmit less, to stay inside servers' rate limits.
func (e *engine) testWindow(rtt time.Duration, req request) wait {
	w := e.windowFor(rtt)
	if req.change.ChangeIP || req.change.ChangePort || req.responsePort != 0 {
		w.interval = max(w.interval, window(rtt)/changeRetransPerWin)
	}
	w.extend = e.needMore
	w.extendEvery = retransmitEvery(rtt)
	w.countLoss = true
	return w
}

// control asks the server at p, from socket s, for a reply changed as cr
// asks, once opened (a plain request from s to the endpoint the reply will
// come from) was answered. Behind a mapping that varies by destination,
// opened's mapping is not the one p sees, so the control carries
// RESPONSE-PORT (RFC 5780 section 7.5) with opened's public port: the reply
// then goes to the mapping that talked to that endpoint.
func (e *engine) control(ctx context.Context, s *socket, name string, p netip.AddrPort, cr natstun.ChangeRequest, testI, opened natclass.Transaction, rtt time.Duration) natclass.Transaction {
	notSent := func(why string) natclass.Transaction {
		s.emit(Event{Kind: EventTimeout, Test: name, Socket: s.local, Peer: p, Detail: why})
		return natclass.Transaction{Local: s.local, Dest: p, ChangeIP: cr.ChangeIP, ChangePort: cr.ChangePort, Error: why}
	}
	if !opened.Replied() || !opened.Mapped.IsValid() || !testI.Mapped.IsValid() {
		return notSent(fmt.Sprintf("not sent: %s did not answer, so the NAT may hold no mapping towards it", opened.Dest))
	}
	req := request{change: cr}
	if opened.Mapped != testI.Mapped {
		if opened.Mapped.Addr() != testI.Mapped.Addr() {
			return notSent(fmt.Sprintf("not sent: the NAT used public IP %s towards %s and %s towards %s, and RESPONSE-PORT cannot reach another IP",
				opened.Mapped.Addr(), opened.Dest, testI.Mapped.Addr(), testI.Dest))
		}
		req.responsePort = opened.Mapped.Port()
	}
	return e.transact(ctx, s, name, p, req, e.testWindow(rtt, req))
}

// resample repeats the mapping socket's plain requests on a fresh socket:
// Test I to every server that answered, then Tests II, III and P:a to the
// first RFC 5780 server. The engine takes it when the mapping socket's
// samples contradicted each other, so that a mapping the NAT changed during
// the test is told from a behaviour.
func (e *engine) resample(ctx context.Context, obs *natclass.Observations) []natclass.Transaction {
	rs, err := e.newSocket("mapping-2")
	if err != nil {
		return nil
	}
	var mu sync.Mutex
	var out []natclass.Transaction
	var wg sync.WaitGroup
	send := func(to netip.AddrPort, name string, rtt time.Duration) natclass.Transaction {
		p := e.transact(ctx, rs, name, to, request{}, e.testWindow(rtt, request{}))
		mu.Lock()
		out = append(out, p)
		mu.Unlock()
		return p
	}
	rfcServer := -1
	if len(obs.RFC5780) > 0 {
		rfcServer = obs.RFC5780[0].Server
	}
	for i, srv := range obs.Servers {
		if !srv.Binding.Replied() {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rtt := srv.Binding.PathRTT()
			if b := send(srv.Address, "resample-I", rtt); i != rfcServer || !b.Replied() {
				return
			}
			p, a := srv.Address, srv.Binding.Other
			for _, to := range []netip.AddrPort{netip.AddrPortFrom(a.Addr(), p.Port()), a, netip.AddrPortFrom(p.Addr(), a.Port())} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					send(to, "resample", rtt)
				}()
			}
		}()
	}
	wg.Wait()
	slices.SortFunc(out, func(x, y natclass.Transaction) int { return x.Dest.Compare(y.Dest) })
	return out
}

// hairpin sends a Binding request from a fresh socket to the mapping
// socket's public address and watches whether the mapping socket gets it
// (RFC 5780 section 4.7).
func (e *engine) hairpin(ctx context.Context, ms *socket, obs *natclass.Observations) *natclass.Transaction {
	var target, server netip.AddrPort
	var rtt time.Duration
	for _, s := range obs.Servers {
		if s.Binding.Replied() && s.Binding.Mapped.IsValid() {
			target, server, rtt = s.Binding.Mapped, s.Address, s.Binding.PathRTT()
			break
		}
	}
	if !target.IsValid() {
		return nil
	}
	hs, err := e.newSocket("hairpin")
	if err != nil {
		return &natclass.Transaction{Dest: target, Error: err.Error()}
	}
	// The hairpin socket learns its own public address; the mapping socket
	// sends there first, so that its filter lets the hairpinned packet in
	// and the test is about hairpinning, not filtering.
	own := e.transact(ctx, hs, "hairpin-self", server, request{}, e.windowFor(rtt))
	if own.Replied() && own.Mapped.IsValid() {
		if opener, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.Fingerprint); err == nil {
			dst := net.UDPAddrFromAddrPort(own.Mapped)
			for range 2 {
				_, _ = ms.conn.WriteTo(opener.Raw, dst)
			}
			ms.emit(Event{Kind: EventSend, Test: "hairpin-open", Socket: ms.local, Peer: own.Mapped, Detail: "opens the filter towards the hairpin socket"})
		}
	}
	msg, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	if err != nil {
		return &natclass.Transaction{Dest: target, Error: err.Error()}
	}
	ch := ms.register(msg.TransactionID, true)
	defer ms.unregister(msg.TransactionID)
	p := natclass.Transaction{Local: hs.local, Dest: target}
	e.retransmitLoop(ctx, hs, "hairpin", msg, &p, e.windowFor(rtt), ch)
	return &p
}
