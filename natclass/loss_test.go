package natclass

import (
	"fmt"
	"math"
	"net/netip"
	"strings"
	"testing"
)

func TestLossBound(t *testing.T) {
	// Wilson score upper bounds at z = 1.645, worked out by hand.
	cases := []struct {
		sends []int // sends of each answered transaction
		lost  int
		bound float64
		need  int
	}{
		{[]int{1, 1, 1, 1, 1, 1}, 0, 0.3108, 6},
		{[]int{2, 1, 3, 1, 1, 1}, 3, 0.6018, 14},
		{[]int{1}, 0, 0.7302, 22},
		{[]int{1, 1, 1, 1, 1, 1, 1, 1, 2}, 1, 0.3477, 7},
	}
	for _, c := range cases {
		var l Loss
		for _, s := range c.sends {
			l.Add(s, true)
		}
		if l.Lost != c.lost || math.Abs(l.Bound-c.bound) > 5e-4 || l.SendsNeeded() != c.need {
			t.Errorf("sends %v: lost %d bound %.4f need %d; want %d %.4f %d", c.sends, l.Lost, l.Bound, l.SendsNeeded(), c.lost, c.bound, c.need)
		}
		if fn := l.FalseNegative(c.need); fn >= MaxFalseNegative {
			t.Errorf("sends %v: %d sends leave a false-negative chance of %g", c.sends, c.need, fn)
		}
		if fn := l.FalseNegative(c.need - 1); fn < MaxFalseNegative {
			t.Errorf("sends %v: %d sends already enough (%g): SendsNeeded is not the fewest", c.sends, c.need-1, fn)
		}
	}
	var none Loss
	if none.SendsNeeded() != math.MaxInt || none.FalseNegative(100) != 1 {
		t.Error("without any measurement, silence must never be a result")
	}
	if got := MeasureLoss(rfc(pubX, pubX, pubX, none2(), none2(), ok(srvA))); got.Sends != 6 || got.Lost != 0 {
		// FilteringI, MappingII, MappingIII, MappingPa, Control, ControlPort
		// answered at the first send; Test I is not counted.
		t.Errorf("MeasureLoss = %+v, want 6 sends, 0 lost", got)
	}
}

func none2() reply { return none }

// lossy returns observations of an EIM NAT whose answered transactions
// needed retransmissions: the run saw loss.
func lossy(fII, fIII reply) Observations {
	o := rfc(pubX, pubX, pubX, fII, fIII, ok(srvA))
	t := &o.RFC5780[0]
	t.MappingII.Sent, t.MappingIII.Sent, t.FilteringI.Sent = 3, 2, 2 // 4 of 10 sends lost
	return o
}

// TestSilenceUnderLoss: when the run saw loss, silence is read as
// filtering only after enough sends.
func TestSilenceUnderLoss(t *testing.T) {
	for _, c := range []struct {
		name      string
		fII, fIII reply
		sends     int
		want      Behavior
	}{
		{"APDF, 6 sends each", none, none, 6, BehaviorUnknown},
		{"APDF, 30 sends each", none, none, 30, BehaviorAddressAndPortDependent},
		{"ADF, 6 sends", none, ok(srvPa), 6, BehaviorUnknown},
		{"ADF, 30 sends", none, ok(srvPa), 30, BehaviorAddressDependent},
		{"EIF needs no silence", ok(srvA), ok(srvPa), 0, BehaviorEndpointIndependent},
	} {
		o := lossy(c.fII, c.fIII)
		for _, p := range []*Transaction{&o.RFC5780[0].FilteringII, &o.RFC5780[0].FilteringIII} {
			if p.Status == StatusNoReply {
				p.Sent = c.sends
			}
		}
		r := Classify(o)
		if r.Filtering != c.want {
			t.Errorf("%s: filtering %s, want %s; reasons %q", c.name, r.Filtering, c.want, r.Reasons)
		}
		// 10 sends of the six always-answered transactions, plus one for
		// each filtering test that was answered.
		wantSends := 10
		for _, f := range []reply{c.fII, c.fIII} {
			if f.status == StatusReply {
				wantSends++
			}
		}
		if r.UDPLoss == nil || r.UDPLoss.Lost != 4 || r.UDPLoss.Sends != wantSends {
			t.Errorf("%s: udp_loss %+v, want 4 of %d", c.name, r.UDPLoss, wantSends)
		}
		if c.want == BehaviorUnknown && !strings.Contains(strings.Join(r.Reasons, " "), "by chance") {
			t.Errorf("%s: no reason names the loss: %q", c.name, r.Reasons)
		}
	}
}

// TestResample: a contradiction on the mapping socket is settled by a
// fresh socket's samples, or reported as a mapping that changed.
func TestResample(t *testing.T) {
	// Test III got a new port (the NAT moved the mapping mid-test): I and
	// II agree across two IPs, III and P:a differ on one IP.
	contradictory := func() Observations {
		o := rfc(pubX, pubX, pubY, none, none, ok(srvA))
		return o
	}
	if !MappingContradicts(contradictory()) {
		t.Fatal("I = II = X, III = Y on II's IP is not flagged as a contradiction")
	}
	freshLocal := ap("192.168.1.10:40002")
	pubW := ap("198.51.100.200:40002")
	sample := func(dest, mapped netip.AddrPort) Transaction { return probe(freshLocal, dest, okm(dest, mapped)) }

	o := contradictory()
	o.Resample = []Transaction{sample(srvP, pubW), sample(srvAp, pubW), sample(srvA, pubW), sample(srvPa, pubW)}
	r := Classify(o)
	if r.Mapping != BehaviorEndpointIndependent || r.MappingChanged || r.Type != TypePortRestrictedCone {
		t.Errorf("consistent resample: mapping %s changed %v type %s; reasons %q", r.Mapping, r.MappingChanged, r.Type, r.Reasons)
	}
	if !strings.Contains(strings.Join(r.Reasons, " "), "fresh socket") {
		t.Errorf("reasons do not say a fresh socket settled it: %q", r.Reasons)
	}

	o = contradictory()
	o.Resample = []Transaction{sample(srvP, pubW), sample(srvAp, pubW), sample(srvA, pubZ)}
	r = Classify(o)
	if r.Mapping != BehaviorUnknown || !r.MappingChanged || r.Type != TypeUnknown || r.MappingVariesByDestination != TriUnknown {
		t.Errorf("contradictory resample: mapping %s changed %v type %s varies %s", r.Mapping, r.MappingChanged, r.Type, r.MappingVariesByDestination)
	}
	if !strings.Contains(r.Verdict.Summary, "changed during the test") {
		t.Errorf("summary %q does not say the mapping changed", r.Verdict.Summary)
	}
}

// typeAllowed is the RFC 3489 naming written out independently of TypeOf:
// which types a mapping, filtering and "varies" may carry.
func typeAllowed(m, f Behavior, varies Tri, typ Type) bool {
	eif := f == BehaviorNone || f == BehaviorEndpointIndependent
	switch typ {
	case TypeOpenInternet:
		return m == BehaviorNone && eif
	case TypeFirewall:
		return m == BehaviorNone && (f == BehaviorAddressDependent || f == BehaviorAddressAndPortDependent)
	case TypeFullCone:
		return m == BehaviorEndpointIndependent && eif
	case TypeRestrictedCone:
		return m == BehaviorEndpointIndependent && f == BehaviorAddressDependent
	case TypePortRestrictedCone:
		return m == BehaviorEndpointIndependent && f == BehaviorAddressAndPortDependent
	case TypeSymmetric:
		return m == BehaviorAddressDependent || m == BehaviorAddressAndPortDependent || (m == BehaviorUnknown && varies == TriYes)
	case TypeUnknown:
		// Unknown only when the type is not settled by what is known.
		settled := m == BehaviorAddressDependent || m == BehaviorAddressAndPortDependent || (m == BehaviorUnknown && varies == TriYes) ||
			((m == BehaviorNone || m == BehaviorEndpointIndependent) && f != BehaviorUnknown)
		return !settled
	}
	return false
}

// TestTypeNeverContradicts checks nat.type against nat.mapping and
// nat.filtering for every combination TypeOf can get, and for every
// result Classify gives over a grid of observations.
func TestTypeNeverContradicts(t *testing.T) {
	all := []Behavior{BehaviorUnknown, BehaviorNone, BehaviorEndpointIndependent, BehaviorAddressDependent, BehaviorAddressAndPortDependent}
	for _, m := range all {
		for _, f := range all {
			for _, v := range []Tri{TriUnknown, TriNo, TriYes} {
				if v == TriNo && (m == BehaviorAddressDependent || m == BehaviorAddressAndPortDependent) {
					continue // a dependent mapping varies by definition
				}
				if typ := TypeOf(m, f, v); !typeAllowed(m, f, v, typ) {
					t.Errorf("TypeOf(%s, %s, varies %s) = %s", m, f, v, typ)
				}
			}
		}
	}
	maps := []netip.AddrPort{{}, local, pubX, pubY, pubZ}
	replies := []reply{notRun, none, ok(srvA), ok(srvPa), ok(srvP), rejected(420)}
	n := 0
	for _, m1 := range maps[1:] {
		for _, m2 := range maps {
			for _, m3 := range maps {
				for _, fII := range replies {
					for _, fIII := range replies {
						for _, ctl := range replies {
							r := Classify(rfc(m1, m2, m3, fII, fIII, ctl))
							n++
							if r.UDP && !typeAllowed(r.Mapping, r.Filtering, r.MappingVariesByDestination, r.Type) {
								t.Fatalf("%s", fmt.Sprintf("mapping %s filtering %s varies %s gave type %s (m %v %v %v); reasons %q",
									r.Mapping, r.Filtering, r.MappingVariesByDestination, r.Type, m1, m2, m3, r.Reasons))
							}
							if r.MappingChanged && r.Type != TypeUnknown {
								t.Fatalf("mapping changed but type %s", r.Type)
							}
						}
					}
				}
			}
		}
	}
	t.Logf("%d classified observation sets checked", n)
}

// TestResponsePortRejected: a server that rejects RESPONSE-PORT cannot
// vouch for its alternate address behind a varying mapping.
func TestResponsePortRejected(t *testing.T) {
	o := rfc(pubX, pubY, pubZ, none, none, ok(srvA))
	c := &o.RFC5780[0].Control
	if c.ResponsePort == 0 {
		t.Fatal("the control behind APDM carries no RESPONSE-PORT")
	}
	c.Status, c.From, c.ErrorCode, c.Mapped = StatusErrorReply, srvP, 420, netip.AddrPort{}
	r := Classify(o)
	if r.Filtering != BehaviorUnknown || !strings.Contains(strings.Join(r.Reasons, " "), "RESPONSE-PORT") {
		t.Errorf("filtering %s; reasons %q", r.Filtering, r.Reasons)
	}
	if got := ChangeRequestSupport(o, 0); got == ChangeRequestRejected {
		t.Errorf("a rejected RESPONSE-PORT made CHANGE-REQUEST support %q", got)
	}
}

// TestLossProbes: single-send loss probes count whether answered or not;
// probes cut short say nothing.
func TestLossProbes(t *testing.T) {
	o := rfc(pubX, pubX, pubX, none, none, ok(srvA))
	lp := func(s Status) Transaction { return Transaction{Local: fresh, Dest: srvP, Sent: 1, Status: s} }
	o.RFC5780[0].LossProbes = []Transaction{lp(StatusReply), lp(StatusReply), lp(StatusNoReply), lp(StatusNotRun)}
	l := MeasureLoss(o)
	// 6 answered transactions at one send each, and 3 probes, 1 unanswered.
	if l.Sends != 9 || l.Lost != 1 || l.Fraction != 0.1111 {
		t.Errorf("MeasureLoss = %+v, want 1 of 9 (0.1111)", l)
	}
}
