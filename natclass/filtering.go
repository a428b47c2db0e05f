package natclass

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// filterOutcome is what one RFC 5780 server says about filtering.
type filterOutcome struct {
	server   string
	behavior Behavior // unknown when this server could not tell
}

// filtering classifies filtering behaviour (RFC 5780 section 4.4), checking
// that each reply came from where CHANGE-REQUEST asked it to come from.
func (c *classifier) filtering() {
	if len(c.obs.RFC5780) == 0 {
		c.reason("no server supports RFC 5780 (none sent OTHER-ADDRESS): filtering behaviour cannot be learned from plain servers")
		return
	}
	var definite []filterOutcome
	for _, t := range c.obs.RFC5780 {
		if t.Server < 0 || t.Server >= len(c.obs.Servers) {
			continue
		}
		o := c.filterOne(t)
		if o.behavior != BehaviorUnknown {
			definite = append(definite, o)
		}
	}
	if len(definite) == 0 {
		if t := c.obs.RFC5780[0]; t.Server >= 0 && t.Server < len(c.obs.Servers) {
			c.r.RFC5780Server = c.obs.Servers[t.Server].Name // tested, without a definite answer
		}
		return
	}
	for _, o := range definite[1:] {
		if o.behavior != definite[0].behavior {
			c.reason("RFC 5780 servers disagree on filtering (%s says %s, %s says %s)", definite[0].server, definite[0].behavior, o.server, o.behavior)
			return
		}
	}
	c.r.Filtering = definite[0].behavior
	c.r.RFC5780Server = definite[0].server
	if c.r.Mapping == BehaviorNone && c.r.Filtering == BehaviorEndpointIndependent {
		c.r.Filtering = BehaviorNone
	}
}

type replyKind int

const (
	replyUnknown  replyKind = iota // not run, cut short, or error response
	replyNone                      // no reply within the window
	replyRight                     // reply from the address CHANGE-REQUEST asked for
	replyWrong                     // reply from another address: CHANGE-REQUEST ignored
	replyRejected                  // error response: CHANGE-REQUEST unsupported
)

func judge(p Transaction, want netip.AddrPort) replyKind {
	switch p.Status {
	case StatusNoReply:
		return replyNone
	case StatusErrorReply:
		return replyRejected
	case StatusReply:
		if p.From == want || (!p.From.IsValid() && p.ResponseOrigin == want) {
			return replyRight
		}
		return replyWrong
	}
	return replyUnknown
}

func (c *classifier) filterOne(t RFC5780Tests) filterOutcome {
	srv := c.obs.Servers[t.Server]
	name := srv.Name
	out := filterOutcome{server: name}
	p, a := srv.Address, srv.Binding.Other
	switch {
	case !a.IsValid():
		c.reason("%s sent no OTHER-ADDRESS", name)
		return out
	case !UsableOther(p, a):
		c.reason("%s advertises OTHER-ADDRESS %s, which is not usable for behaviour tests: it must differ from %s in both IP and port, in the same family", name, a, p)
		return out
	}
	if !t.FilteringI.Replied() {
		c.reason("the fresh filtering socket got no answer from %s even without CHANGE-REQUEST: its filtering tests cannot be read", name)
		return out
	}
	wantII := a                                       // alternate IP, alternate port
	wantIII := netip.AddrPortFrom(p.Addr(), a.Port()) // primary IP, alternate port
	ii, iii, ctl := judge(t.FilteringII, wantII), judge(t.FilteringIII, wantIII), judge(t.Control, wantII)
	ctlPort := judge(t.ControlPort, wantIII)

	for _, x := range []struct {
		k    replyKind
		p    Transaction
		want netip.AddrPort
	}{{ii, t.FilteringII, wantII}, {iii, t.FilteringIII, wantIII}, {ctl, t.Control, wantII}, {ctlPort, t.ControlPort, wantIII}} {
		switch {
		case x.k == replyWrong:
			c.reason("%s answered a CHANGE-REQUEST from %s instead of %s: it does not honour CHANGE-REQUEST, so filtering is unknown", name, x.p.From, x.want)
			return out
		case x.k == replyRejected && x.p.ResponsePort != 0:
			c.reason("%s rejected a request with RESPONSE-PORT (error %d): it does not support RFC 5780 section 7.5, which a control needs behind a mapping that varies by destination, so filtering is unknown", name, x.p.ErrorCode)
			return out
		case x.k == replyRejected:
			c.reason("%s rejected CHANGE-REQUEST (error %d): it does not support it, so filtering is unknown", name, x.p.ErrorCode)
			return out
		}
	}
	// Silence is a result only when loss cannot explain it: every send
	// unanswered by chance must be less likely than MaxFalseNegative at the
	// loss measured in this run.
	silent := func(p Transaction) bool {
		return judge(p, netip.AddrPort{}) == replyNone && c.loss.FalseNegative(p.Sent) < MaxFalseNegative
	}
	lossy := func(ps ...Transaction) bool {
		for _, p := range ps {
			if judge(p, netip.AddrPort{}) == replyNone && !silent(p) {
				c.reason("no reply came from %s to a fresh socket after %d sends, but with the UDP loss measured in this run (%s; up to %.0f%% assumed) that happens by chance more often than 1 in %.0f: filtering is unknown",
					changeSource(p, p.Dest, a), p.Sent, c.loss, 100*c.loss.Bound, 1/MaxFalseNegative)
				return true
			}
		}
		return false
	}
	// Silence means filtering only where a control proved that the server
	// does send from the address in question, to this NAT.
	via := func(ps ...Transaction) string {
		var parts []string
		for _, p := range ps {
			if p.ResponsePort != 0 {
				parts = append(parts, fmt.Sprintf("%d for the mapping that talked to %s", p.ResponsePort, changeSource(p, p.Dest, a)))
			}
		}
		if len(parts) == 0 {
			return ""
		}
		return " (the mapping varies by destination, so the controls asked for RESPONSE-PORT " + strings.Join(parts, " and ") + ")"
	}
	switch {
	case ii == replyRight:
		out.behavior = BehaviorEndpointIndependent
		c.reason("a socket that never talked to %s received its reply (change IP and port): filtering is endpoint-independent", wantII)
	case ii == replyNone && iii == replyRight && ctl == replyRight:
		if lossy(t.FilteringII) {
			return out
		}
		out.behavior = BehaviorAddressDependent
		c.reason("a fresh socket received a reply from %s (same IP, other port) but none from %s after %d sends, though %s does answer from there once a socket has sent to it%s: filtering is address-dependent (UDP loss in this run: %s)",
			wantIII, wantII, t.FilteringII.Sent, name, via(t.Control), c.loss)
	case ii == replyNone && iii == replyNone && ctl == replyRight && ctlPort == replyRight:
		if lossy(t.FilteringII, t.FilteringIII) {
			return out
		}
		out.behavior = BehaviorAddressAndPortDependent
		c.reason("a fresh socket received no reply from %s or %s after %d and %d sends, though %s does answer from both once a socket has sent to them%s: filtering is address-and-port-dependent (UDP loss in this run: %s)",
			wantII, wantIII, t.FilteringII.Sent, t.FilteringIII.Sent, name, via(t.Control, t.ControlPort), c.loss)
	case ii == replyNone && iii == replyRight:
		c.reason("no reply came from %s, and it could not be confirmed from behind this NAT that %s answers from there%s: filtering is unknown", wantII, name, notRunWhy(t.Control))
	case ii == replyNone && iii == replyNone:
		c.reason("no reply came from %s or %s, and it could not be confirmed from behind this NAT that %s answers from both%s: filtering is unknown", wantII, wantIII, name, notRunWhy(t.Control, t.ControlPort))
	default:
		c.reason("the filtering tests against %s did not complete: filtering is unknown", name)
	}
	return out
}

// changeSource is where a change request to p asks the reply to come
// from, given the server's alternate address a.
func changeSource(p Transaction, primary, a netip.AddrPort) netip.AddrPort {
	switch {
	case p.ChangeIP && p.ChangePort:
		return a
	case p.ChangePort:
		return netip.AddrPortFrom(primary.Addr(), a.Port())
	case p.ChangeIP:
		return netip.AddrPortFrom(a.Addr(), primary.Port())
	}
	return primary
}

// notRunWhy explains controls that were never sent.
func notRunWhy(ps ...Transaction) string {
	for _, p := range ps {
		if p.Status == StatusNotRun && p.Error != "" {
			return " (" + p.Error + ")"
		}
	}
	return ""
}

// Change-request support of a server, as ChangeRequestSupport reports it.
const (
	ChangeRequestHonoured    = "honoured"
	ChangeRequestIgnored     = "ignored"
	ChangeRequestRejected    = "rejected"
	ChangeRequestUnconfirmed = "unconfirmed"
)

// ChangeRequestSupport says how server i treated CHANGE-REQUEST in the RFC
// 5780 tests: honoured (a reply came from the address asked for), ignored
// (a reply came from elsewhere), rejected (an error reply), unconfirmed, or
// "" when no CHANGE-REQUEST was sent to it.
func ChangeRequestSupport(obs Observations, i int) string {
	if i < 0 || i >= len(obs.Servers) {
		return ""
	}
	srv := obs.Servers[i]
	p, a := srv.Address, srv.Binding.Other
	for _, t := range obs.RFC5780 {
		if t.Server != i {
			continue
		}
		var kinds []replyKind
		for _, x := range []struct {
			p    Transaction
			want netip.AddrPort
		}{{t.FilteringII, a}, {t.FilteringIII, netip.AddrPortFrom(p.Addr(), a.Port())}, {t.Control, a}, {t.ControlPort, netip.AddrPortFrom(p.Addr(), a.Port())}} {
			k := judge(x.p, x.want)
			if k == replyRejected && x.p.ResponsePort != 0 {
				continue // RESPONSE-PORT was rejected: that says nothing of CHANGE-REQUEST
			}
			kinds = append(kinds, k)
		}
		switch {
		case slices.Contains(kinds, replyWrong):
			return ChangeRequestIgnored
		case slices.Contains(kinds, replyRejected):
			return ChangeRequestRejected
		case slices.Contains(kinds, replyRight):
			return ChangeRequestHonoured
		}
		return ChangeRequestUnconfirmed
	}
	return ""
}
