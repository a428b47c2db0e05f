package report

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/natcheck/natcheck/natclass"
)

func i64(v int64) *int64     { return &v }
func f64(v float64) *float64 { return &v }

// pairReport is a natcheck pair report: this side behind a
// port-restricted cone, the peer behind a symmetric NAT.
func pairReport(outcome string, predicted string, matched bool) Report {
	r := build(in(portRestricted()))
	here := PairSummary{Version: "v0.1.0", NATType: natclass.TypePortRestrictedCone, Mapping: natclass.BehaviorEndpointIndependent,
		Filtering: natclass.BehaviorAddressAndPortDependent, UDP: true, BehindNAT: natclass.TriYes,
		PublicAddresses: []string{"203.0.113.7:40000"}, TCP: natclass.TriYes, TCPPortsOpen: []int{443}}
	peer := PairSummary{Version: "v0.1.0", NATType: natclass.TypeSymmetric, Mapping: natclass.BehaviorAddressAndPortDependent,
		Filtering: natclass.BehaviorAddressAndPortDependent, MappingVaries: natclass.TriYes, UDP: true, BehindNAT: natclass.TriYes,
		PublicAddresses: []string{"198.51.100.9:5000", "198.51.100.9:5001"}, TCP: natclass.TriUnknown, TCPPortsOpen: []int{}, HasTURN: true}
	p := &Pair{Room: "r1", Role: "first", Predicted: predicted, PredictionCertain: true, PredictionRule: "a rule",
		Outcome: outcome, Matched: matched, Local: here, Peer: &peer}
	direct := PairPhase{Phase: PhaseDirect, PeerConnected: natclass.TriYes}
	sel := &PairSelected{Local: PairCandidate{"host", "udp", "192.168.1.2:40000"}, Remote: PairCandidate{"srflx", "udp", "198.51.100.9:5000"}}
	switch outcome {
	case PairDirect:
		direct.Connected, direct.ConnectMS, direct.Selected, direct.RTTMS, direct.Loss = true, i64(412), sel, f64(3.1), f64(0)
		p.Phases = []PairPhase{direct}
		p.Selected, p.ConnectMS, p.RTTMS, p.Loss = sel, i64(412), f64(3.1), f64(0)
	case PairRelay:
		direct.Error, direct.PeerConnected = "ICE did not connect within 10s", natclass.TriNo
		rsel := &PairSelected{Local: PairCandidate{"srflx", "udp", "203.0.113.7:40001"}, Remote: PairCandidate{"relay", "udp", "192.0.2.1:50000"}}
		relay := PairPhase{Phase: PhaseRelay, Connected: true, ConnectMS: i64(812), Selected: rsel, RTTMS: f64(20.25), Loss: f64(0.02), PeerConnected: natclass.TriYes}
		p.Phases = []PairPhase{direct, relay}
		p.Selected, p.ConnectMS, p.RTTMS, p.Loss = rsel, i64(812), f64(20.25), f64(0.02)
	default:
		direct.Error, direct.PeerConnected = "ICE did not connect within 10s", natclass.TriNo
		p.Phases = []PairPhase{direct}
	}
	r.Pair = p
	return r
}

// TestPairText: the answer comes first, in one line, and a mismatch is
// said with both NATs' mapping and filtering.
func TestPairText(t *testing.T) {
	cases := []struct {
		r        Report
		first    string
		mismatch string
	}{
		{pairReport(PairDirect, "direct", true),
			"Connected directly (host/udp <-> srflx/udp) in 412 ms, rtt 3.1 ms, 0% loss; predicted direct: matched", ""},
		{pairReport(PairRelay, "direct", false),
			"Connected only through a TURN relay (srflx/udp <-> relay/udp) in 812 ms, rtt 20.2 ms, 2% loss; predicted direct: MISMATCH",
			"Mismatch: the two diagnoses predicted direct, but only a TURN relay connected them. " +
				"Here: port-restricted-cone NAT, mapping endpoint-independent, filtering address-and-port-dependent. " +
				"Peer: symmetric NAT, mapping address-and-port-dependent, filtering address-and-port-dependent."},
		{pairReport(PairFailed, "relay", true),
			"No connection (direct: ICE did not connect within 10s); predicted relay: matched", ""},
		{pairReport(PairFailed, "unknown", false),
			"No connection (direct: ICE did not connect within 10s); predicted unknown: nothing to check", ""},
	}
	// Direct over IPv6 where IPv6 was predicted: both say the family.
	v6 := pairReport(PairDirect, "direct", true)
	v6.Pair.PredictedFamily, v6.Pair.OutcomeFamily = "ipv6", "ipv6"
	cases = append(cases, struct {
		r        Report
		first    string
		mismatch string
	}{v6, "Connected directly over IPv6 (host/udp <-> srflx/udp) in 412 ms, rtt 3.1 ms, 0% loss; predicted direct over IPv6: matched", ""})
	for _, c := range cases {
		var b bytes.Buffer
		if err := WritePairText(&b, c.r, TextOptions{}); err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(b.String(), "\n")
		if lines[0] != c.first {
			t.Errorf("first line\n%q\nwant\n%q", lines[0], c.first)
		}
		if c.mismatch != "" && lines[1] != c.mismatch {
			t.Errorf("second line\n%q\nwant\n%q", lines[1], c.mismatch)
		}
		if c.mismatch == "" && strings.Contains(b.String(), "Mismatch") {
			t.Errorf("a mismatch where the prediction held or was unknown:\n%s", b.String())
		}
		if !strings.Contains(b.String(), "This side's diagnosis:") || !strings.Contains(b.String(), c.r.Verdict.Summary) {
			t.Errorf("the diagnosis is missing:\n%s", b.String())
		}
	}
}

// TestPairSchema: a pair report validates against the schema, and one
// with an outcome outside the vocabulary does not.
func TestPairSchema(t *testing.T) {
	s := compileSchema(t, "")
	for _, r := range []Report{pairReport(PairDirect, "direct", true), pairReport(PairRelay, "direct", false), pairReport(PairFailed, "unknown", false)} {
		doc, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if err := validate(s, doc); err != nil {
			t.Errorf("%s: %v", r.Pair.Outcome, err)
		}
		if !bytes.Contains(doc, []byte(`"pair":{"room":"r1"`)) {
			t.Errorf("no pair object: %s", doc)
		}
	}
	bad := pairReport(PairDirect, "direct", true)
	bad.Pair.Outcome = "sideways"
	doc, _ := json.Marshal(bad)
	if validate(s, doc) == nil {
		t.Error("an outcome outside the vocabulary validated")
	}
}
