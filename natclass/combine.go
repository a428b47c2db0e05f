package natclass

// Overall is the answer over every address family of one run: which
// family's result leads (the report's nat, verdict and reasons), whether UDP
// got out in any, and whether anything was measured at all.
type Overall struct {
	// Lead is the index of the leading family's Result; -1 when no family
	// was tested.
	Lead int
	// UDP is true when a UDP reply arrived in any family.
	UDP bool
	// Measured is false when no server answered at all, over UDP, TCP or
	// TLS, in any family.
	Measured bool
	// Verdict is the leading family's verdict, or, with no family tested,
	// the verdict of nothing measured.
	Verdict Verdict
}

// Combine picks the leading family and the run's overall facts from each
// family's Result (a skipped family has Skipped set). A family that
// measured something over UDP beats one that did not; between equals, IPv4
// leads.
func Combine(results []Result) Overall {
	o := Overall{Lead: -1}
	for i, r := range results {
		if r.Skipped != "" {
			continue
		}
		o.UDP = o.UDP || r.UDP
		o.Measured = o.Measured || r.UDP || r.TCP == TriYes // a TCP or TLS answer counts
		if o.Lead < 0 {
			o.Lead = i
			continue
		}
		lead := results[o.Lead]
		if (!lead.UDP && r.UDP) || (lead.UDP == r.UDP && r.Family == "ipv4" && lead.Family != "ipv4") {
			o.Lead = i
		}
	}
	if o.Lead >= 0 {
		o.Verdict = results[o.Lead].Verdict
	} else {
		o.Verdict = Decide(Result{UDPTested: true})
	}
	return o
}
