package probe

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/pion/stun/v4"

	"github.com/natcheck/natcheck/natclass"
	natstun "github.com/natcheck/natcheck/stun"
)

// attrChangedAddress is RFC 3489's CHANGED-ADDRESS, which older servers send
// instead of OTHER-ADDRESS.
const attrChangedAddress stun.AttrType = 0x0005

// wait is the waiting window of one transaction.
type wait struct {
	deadline time.Time       // the window ends here
	stop     <-chan struct{} // or when this closes
	interval time.Duration   // first retransmission interval
	fixed    bool            // keep the interval instead of doubling it
	// minWait is the shortest window after which silence counts as "no
	// reply"; a window clipped shorter by the run's budget gives "not run".
	minWait time.Duration
	// extend, if set, is asked when the window ends without a reply after
	// sent sends; true sends once more and waits another interval (within
	// the run's budget). It keeps silence from being read while the loss
	// measured so far could explain it.
	extend func(sent int) bool
	// extendEvery, if set, is the interval of the sends that extend adds:
	// the plain retransmission pace, as they only run when loss was seen.
	extendEvery time.Duration
	// countLoss adds an answered transaction's sends to the run's loss
	// measurement (natclass.MeasureLoss counts the same ones).
	countLoss bool
	// pace, if set, gives the retransmission interval once it knows one
	// (Test I: after any server answered); zero keeps the doubling. paced
	// closes when it first knows one.
	pace  func() time.Duration
	paced <-chan struct{}
}

// request is what a Binding request asks of the server beyond a plain
// answer (RFC 5780 sections 7.2 and 7.5).
type request struct {
	change natstun.ChangeRequest
	// responsePort, if not zero, asks for the reply at this port of the
	// request's public IP.
	responsePort uint16
}

// transact runs one Binding transaction with retransmissions and returns
// what happened.
func (e *engine) transact(ctx context.Context, s *socket, test string, dest netip.AddrPort, req request, w wait) natclass.Transaction {
	cr := req.change
	p := natclass.Transaction{Local: s.local, Dest: dest, ChangeIP: cr.ChangeIP, ChangePort: cr.ChangePort, ResponsePort: req.responsePort}
	setters := []stun.Setter{stun.TransactionID, stun.BindingRequest}
	if cr.ChangeIP || cr.ChangePort {
		setters = append(setters, cr)
	}
	if req.responsePort != 0 {
		setters = append(setters, natstun.ResponsePort(req.responsePort))
	}
	setters = append(setters, padding{}, stun.Fingerprint)
	msg, err := stun.Build(setters...)
	if err != nil {
		p.Error = err.Error()
		return p
	}
	ch := s.register(msg.TransactionID, false)
	defer s.unregister(msg.TransactionID)
	e.retransmitLoop(ctx, s, test, msg, &p, w, ch)
	if w.countLoss && (p.Status == natclass.StatusReply || p.Status == natclass.StatusErrorReply) {
		e.lossMu.Lock()
		e.loss.Add(p.Sent, true)
		e.lossMu.Unlock()
	}
	return p
}

// needMore reports whether a transaction still unanswered after sent sends
// should send again: while the loss measured so far makes that silence too
// likely by chance (natclass.Loss.SendsNeeded), up to maxSilentSends.
func (e *engine) needMore(sent int) bool {
	e.lossMu.Lock()
	need := e.loss.SendsNeeded()
	e.lossMu.Unlock()
	return sent < min(need, maxSilentSends)
}

// retransmitLoop sends msg from s to p.Dest until a message arrives on ch or
// the window ends, and fills in p.
func (e *engine) retransmitLoop(ctx context.Context, s *socket, test string, msg *stun.Message, p *natclass.Transaction, w wait, ch chan response) {
	id := hex.EncodeToString(msg.TransactionID[:])
	dst := net.UDPAddrFromAddrPort(p.Dest)
	start := time.Now()
	interval := w.interval
	var lastSend time.Time
	take := func(r response) {
		fill(p, r, start, lastSend)
		s.emit(Event{Kind: EventReply, Test: test, Socket: s.local, Peer: r.from, ID: id, Detail: replyDetail(p)})
	}
	// replied takes a reply that is already there: when the window ends at
	// the moment a reply arrives, select picks either case, and silence
	// must never win over a reply in hand.
	replied := func() bool {
		select {
		case r := <-ch:
			take(r)
			return true
		default:
			return false
		}
	}
	for {
		lastSend = time.Now()
		if _, err := s.conn.WriteTo(msg.Raw, dst); err != nil {
			p.Error = fmt.Sprintf("send to %s: %v", p.Dest, unwrapOp(err))
			s.emit(Event{Kind: EventError, Test: test, Socket: s.local, Peer: p.Dest, ID: id, Detail: p.Error})
			return
		}
		kind := EventSend
		if p.Sent > 0 {
			kind = EventRetransmit
		}
		p.Sent++
		s.emit(Event{Kind: kind, Test: test, Socket: s.local, Peer: p.Dest, ID: id, Detail: changeDetail(p),
			ChangeIP: p.ChangeIP, ChangePort: p.ChangePort, ResponsePort: p.ResponsePort})
		wake := minTime(time.Now().Add(interval), w.deadline)
		switch {
		case w.pace != nil && w.pace() > 0:
			interval = w.pace()
		case !w.fixed && time.Since(start) >= doubleAfter:
			// Before any round trip is known: a steady pace at first,
			// so that a lost packet or two cost 100 ms each, not a
			// doubled interval; then back off as RFC 8489 does.
			interval = min(interval*2, maxInterval)
		}
		timer := time.NewTimer(time.Until(wake))
	waiting:
		select {
		case r := <-ch:
			timer.Stop()
			take(r)
			return
		case <-ctx.Done():
			timer.Stop()
			if replied() {
				return
			}
			p.Status = natclass.StatusNotRun // cut short: unknown, not "no reply"
			return
		case <-w.stop:
			timer.Stop()
			if replied() {
				return
			}
			e.endWindow(s, test, id, p, start, w)
			return
		case <-w.paced:
			// A round trip is known now: the next send need not wait
			// out a doubled interval.
			w.paced = nil
			if d := w.pace(); d > 0 {
				interval = d
				timer.Reset(time.Until(minTime(lastSend.Add(interval), w.deadline)))
			}
			goto waiting
		case <-timer.C:
			if !time.Now().Before(w.deadline) {
				if replied() {
					return
				}
				// Loss seen in this run may explain the silence: send
				// again rather than conclude, within the budget.
				if w.extendEvery > 0 {
					interval = min(interval, w.extendEvery)
				}
				if next := time.Now().Add(interval); w.extend != nil && next.Before(e.deadline) && w.extend(p.Sent) {
					w.deadline = next
					continue
				}
				e.endWindow(s, test, id, p, start, w)
				return
			}
		}
	}
}

func (e *engine) endWindow(s *socket, test, id string, p *natclass.Transaction, start time.Time, w wait) {
	if time.Since(start) >= w.minWait*9/10 {
		p.Status = natclass.StatusNoReply
		s.emit(Event{Kind: EventTimeout, Test: test, Socket: s.local, Peer: p.Dest, ID: id,
			Detail: fmt.Sprintf("no reply after %d sends in %v", p.Sent, time.Since(start).Round(time.Millisecond))})
		return
	}
	p.Status = natclass.StatusNotRun
	s.emit(Event{Kind: EventTimeout, Test: test, Socket: s.local, Peer: p.Dest, ID: id, Detail: "cut short by --timeout"})
}

// fill records a response in p; start is the first transmission, last the
// latest.
func fill(p *natclass.Transaction, r response, start, last time.Time) {
	m := r.msg
	p.RTT = r.at.Sub(start)
	p.LastRTT = r.at.Sub(last)
	p.From = r.from
	if m.Type.Class == stun.ClassErrorResponse {
		p.Status = natclass.StatusErrorReply
		var ec stun.ErrorCodeAttribute
		if ec.GetFrom(m) == nil {
			p.ErrorCode = int(ec.Code)
		}
		return
	}
	p.Status = natclass.StatusReply
	var xor stun.XORMappedAddress
	if xor.GetFrom(m) == nil {
		p.Mapped = natstun.AddrPortFromIP(xor.IP, xor.Port)
	}
	var legacy stun.MappedAddress
	if legacy.GetFrom(m) == nil {
		p.LegacyMapped = natstun.AddrPortFromIP(legacy.IP, legacy.Port)
		if !p.Mapped.IsValid() { // an RFC 3489 server: nothing to compare with
			p.Mapped, p.LegacyMapped = p.LegacyMapped, netip.AddrPort{}
		}
	}
	var other stun.OtherAddress
	if other.GetFrom(m) == nil {
		p.Other = natstun.AddrPortFromIP(other.IP, other.Port)
	} else {
		var changed stun.MappedAddress
		if changed.GetFromAs(m, attrChangedAddress) == nil {
			p.Other = natstun.AddrPortFromIP(changed.IP, changed.Port)
		}
	}
	var origin stun.ResponseOrigin
	if origin.GetFrom(m) == nil {
		p.ResponseOrigin = natstun.AddrPortFromIP(origin.IP, origin.Port)
	}
}

func changeDetail(p *natclass.Transaction) string {
	var parts []string
	if p.ChangeIP || p.ChangePort {
		parts = append(parts, "CHANGE-REQUEST "+natstun.ChangeRequest{ChangeIP: p.ChangeIP, ChangePort: p.ChangePort}.String())
	}
	if p.ResponsePort != 0 {
		parts = append(parts, fmt.Sprintf("RESPONSE-PORT %d", p.ResponsePort))
	}
	return strings.Join(parts, ", ")
}

func replyDetail(p *natclass.Transaction) string {
	if p.Status == natclass.StatusErrorReply {
		return fmt.Sprintf("error %d in %v", p.ErrorCode, p.RTT.Round(time.Microsecond))
	}
	s := fmt.Sprintf("mapped %s in %v", p.Mapped, p.RTT.Round(time.Microsecond))
	if p.Other.IsValid() {
		s += fmt.Sprintf(", other %s", p.Other)
	}
	return s
}

func unwrapOp(err error) error {
	if oe, ok := err.(*net.OpError); ok && oe.Err != nil {
		return oe.Err
	}
	return err
}

func sortTests(ts []natclass.RFC5780Tests) {
	slices.SortFunc(ts, func(a, b natclass.RFC5780Tests) int { return a.Server - b.Server })
}

// paddedRequestSize is the size of every Binding request the engine sends
// over UDP: no smaller than the largest response natcheck serve sends over
// IPv6 (124 bytes: XOR-MAPPED-ADDRESS, MAPPED-ADDRESS, OTHER-ADDRESS,
// RESPONSE-ORIGIN, FINGERPRINT). A server that bounds what it sends to a
// source by what it receives from it (natcheck serve's byte budgets, the
// anti-amplification rule of RFC 5780 section 9) then never has to drop
// natcheck's requests, even while it is flooded.
const paddedRequestSize = 128

// paddingText fills the SOFTWARE attribute that pads a request.
const paddingText = "natcheck; padded so that a reply need not be larger than the request" +
	"................................................................"

// padding is a stun.Setter that adds SOFTWARE, sized so that the request
// is paddedRequestSize bytes once FINGERPRINT (8 bytes) follows it.
// SOFTWARE (RFC 8489 section 14.14) is comprehension-optional, so every
// server ignores it or logs it; PADDING (RFC 5780 section 7.6) would be
// refused by servers that do not know it.
type padding struct{}

func (padding) AddTo(m *stun.Message) error {
	n := paddedRequestSize - len(m.Raw) - 8 - 4 // - FINGERPRINT - SOFTWARE header
	if n <= 0 {
		return nil
	}
	m.Add(stun.AttrSoftware, []byte(paddingText[:min(n, len(paddingText))]))
	return nil
}
