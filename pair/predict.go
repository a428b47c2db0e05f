package pair

const predictUnknown = "unknown"

// prediction is the path expected from the two diagnoses.
type prediction struct {
	Predicted string // direct, relay or unknown
	Certain   bool
	Rule      string
}

// predictPair is the seam to natclass.PredictPair (pure), which lands on
// main separately; until then every prediction is unknown.
var predictPair = func(local, remote Summary) prediction {
	return prediction{Predicted: "unknown", Rule: "no prediction rule available in this build"}
}

// matched says whether the outcome bore the prediction out: the outcome
// is direct exactly when direct was predicted; never for an unknown
// prediction.
func matched(predicted, outcome string) bool {
	switch predicted {
	case "direct", "relay":
		return (outcome == "direct") == (predicted == "direct")
	}
	return false
}
