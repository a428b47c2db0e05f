package natclass

import (
	"reflect"
	"testing"
)

func TestFoldTURN(t *testing.T) {
	ok := func(tr string) TURNCheck { return TURNCheck{Transport: tr, OK: true} }
	bad := func(tr string) TURNCheck { return TURNCheck{Transport: tr} }
	base := Verdict{Summary: "Direct UDP likely.", Relay: []string{RelayTURNUDP, RelayTURNTCP, RelayTURNTLS}}
	for _, tc := range []struct {
		name     string
		checks   []TURNCheck
		verified []string
		summary  string
	}{
		{"not tested", nil, nil, "Direct UDP likely."},
		{"none works", []TURNCheck{bad(TURNTransportUDP), bad(TURNTransportTLS)}, []string{}, "Direct UDP likely. No TURN server relayed data from here"},
		{"order of preference", []TURNCheck{ok(TURNTransportTLS), bad(TURNTransportTCP), ok(TURNTransportUDP), ok(TURNTransportTLS)},
			[]string{RelayTURNUDP, RelayTURNTLS}, "Direct UDP likely. TURN relay works from here over UDP, TLS"},
		{"one of two servers", []TURNCheck{bad(TURNTransportTCP), ok(TURNTransportTCP)}, []string{RelayTURNTCP}, "Direct UDP likely. TURN relay works from here over TCP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := FoldTURN(base, tc.checks)
			if !reflect.DeepEqual(v.RelayVerified, tc.verified) || v.Summary != tc.summary {
				t.Errorf("got %#v %q, want %#v %q", v.RelayVerified, v.Summary, tc.verified, tc.summary)
			}
			if !reflect.DeepEqual(v.Relay, base.Relay) {
				t.Errorf("Relay changed: %v", v.Relay)
			}
		})
	}
}

func TestTURNCheckAnswered(t *testing.T) {
	for _, tc := range []struct {
		c    TURNCheck
		want bool
	}{
		{TURNCheck{}, false},
		{TURNCheck{FailedStep: TURNStepConnect, Error: "refused"}, false},
		{TURNCheck{FailedStep: TURNStepAllocate, ErrorCode: 401}, true},
		{TURNCheck{FailedStep: TURNStepTLS, TLS: &TLSInfo{}}, true},
		{TURNCheck{OK: true}, true},
	} {
		if got := tc.c.Answered(); got != tc.want {
			t.Errorf("%+v: Answered %v, want %v", tc.c, got, tc.want)
		}
	}
	if l := (RelayData{Sent: 4, Received: 3}).Loss(); l != 0.25 {
		t.Errorf("loss %v, want 0.25", l)
	}
}
