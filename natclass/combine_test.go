package natclass

import "testing"

func TestCombine(t *testing.T) {
	v4 := Result{Family: "ipv4", UDP: true, Verdict: Verdict{Summary: "v4"}}
	v6 := Result{Family: "ipv6", UDP: true, Verdict: Verdict{Summary: "v6"}}
	v4silent := Result{Family: "ipv4", Verdict: Verdict{Summary: "v4 silent"}}
	v6silent := Result{Family: "ipv6", Verdict: Verdict{Summary: "v6 silent"}}
	v4tcp := Result{Family: "ipv4", TCP: TriYes, Verdict: Verdict{Summary: "v4 tcp"}}
	skipped4 := Result{Family: "ipv4", Skipped: "no IPv4 route", UDP: true}
	for _, c := range []struct {
		name          string
		in            []Result
		lead          int
		udp, measured bool
		summary       string
	}{
		{"IPv4 leads", []Result{v4, v6}, 0, true, true, "v4"},
		{"IPv4 leads whatever the order", []Result{v6, v4}, 1, true, true, "v4"},
		{"a family with replies beats one without", []Result{v4silent, v6}, 1, true, true, "v6"},
		{"no replies anywhere: IPv4 leads", []Result{v6silent, v4silent}, 1, false, false, "v4 silent"},
		{"a TCP answer counts as measured", []Result{v4tcp, v6silent}, 0, false, true, "v4 tcp"},
		{"skipped families neither lead nor count", []Result{skipped4, v6silent}, 1, false, false, "v6 silent"},
		{"nothing tested", []Result{skipped4}, -1, false, false, "Nothing could be measured: no STUN server answered"},
	} {
		o := Combine(c.in)
		if o.Lead != c.lead || o.UDP != c.udp || o.Measured != c.measured || o.Verdict.Summary != c.summary {
			t.Errorf("%s: lead %d udp %v measured %v summary %q; want %d %v %v %q", c.name, o.Lead, o.UDP, o.Measured, o.Verdict.Summary, c.lead, c.udp, c.measured, c.summary)
		}
	}
}
