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

// predictPair is natclass.PredictPair over two summaries.
func predictPair(local, remote Summary) natclass.PairPrediction {
	return natclass.PredictPair(side(local), side(remote))
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
