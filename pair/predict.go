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

// predictPair is natclass.PredictPairFamilies over two summaries.
func predictPair(local, remote Summary) natclass.PairPrediction {
	return natclass.PredictPairFamilies(side(local), side(remote), side6(local), side6(remote))
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
