package pair

import "github.com/natcheck/natcheck/natclass"

const predictUnknown = natclass.PredictUnknown

// side is what the prediction needs of a summary.
func side(s Summary) natclass.PairSide {
	return natclass.PairSide{
		UDP: s.UDP, Mapping: s.Mapping, Filtering: s.Filtering, MappingVaries: s.MappingVaries,
		TCP: s.TCP, TCPPortsOpen: s.TCPPortsOpen, ICETCPPort: s.ICETCPPort,
		ReachesPeerICETCP: s.ReachesPeerICETCP,
	}
}

// side6 is what the prediction needs of a summary's IPv6 part; nil
// without one.
func side6(s Summary) *natclass.PairSide {
	if s.IPv6 == nil {
		return nil
	}
	return &natclass.PairSide{UDP: s.IPv6.UDP, Mapping: s.IPv6.Mapping, Filtering: s.IPv6.Filtering, MappingVaries: s.IPv6.MappingVaries}
}

// predictPair is natclass.PredictPairFamilies over two summaries. A side
// that is IPv6 only (Family "ipv6": its main fields are IPv6's) is
// weighed against the other side's IPv6 only, never its IPv4: ICE pairs
// candidates of one family.
func predictPair(local, remote Summary) natclass.PairPrediction {
	l6only, r6only := local.Family == "ipv6", remote.Family == "ipv6"
	if l6only == r6only {
		return natclass.PredictPairFamilies(side(local), side(remote), side6(local), side6(remote))
	}
	here := "here"
	if r6only {
		here = "at the peer"
	}
	l6, r6 := side6(local), side6(remote)
	if l6only {
		s := side(local)
		l6 = &s
	} else {
		s := side(remote)
		r6 = &s
	}
	if l6 == nil || r6 == nil {
		return natclass.PairPrediction{Predicted: natclass.PredictRelay, Certain: false,
			Rule: "IPv6 only " + here + ", and the other side sent no IPv6 diagnosis: no address family in common for a direct path, so only a TURN relay connects (not certain: the other side may have IPv6 its servers did not test)"}
	}
	p := natclass.PredictPair(*l6, *r6)
	p.Family, p.Rule = "ipv6", "IPv6 only "+here+", so over IPv6: "+p.Rule
	return p
}

// matched says whether the outcome bore the prediction out: the outcome
// is direct exactly when direct was predicted; never for an unknown
// prediction.
func matched(predicted, outcome string) bool {
	switch predicted {
	case natclass.PredictDirect, natclass.PredictRelay:
		return (outcome == natclass.PredictDirect) == (predicted == natclass.PredictDirect)
	}
	return false
}
