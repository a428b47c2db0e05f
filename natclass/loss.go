package natclass

import (
	"fmt"
	"math"
)

// MaxFalseNegative is the largest chance natcheck accepts that silence,
// read as "no reply", was in fact loss: a negative conclusion (the NAT
// filters, the server does not answer) needs every send of its transaction
// to have gone unanswered, and that must be less likely than this by chance.
const MaxFalseNegative = 1e-3

// lossZ is the normal quantile of the one-sided 95% upper confidence bound
// on the loss fraction.
const lossZ = 1.645

// Loss is the UDP loss measured in one run: among the transactions that were
// answered, how many sends went unanswered before the one that got through
// (the request or its reply was lost), and how many single-send loss probes
// went unanswered. Test I is left out: its first retransmissions go before
// any round-trip time is known, so a late reply could not be told from a
// lost one.
type Loss struct {
	// Sends is the number of requests of answered transactions (Test I left
	// out), retransmissions included, and of single-send loss probes.
	Sends int `json:"sends"`
	// Lost is how many of those sends went unanswered (the request or its
	// reply was lost).
	Lost int `json:"lost"`
	// Fraction is the share of those sends lost: the measured chance that
	// one request or its reply is lost.
	Fraction float64 `json:"fraction"`
	// Bound is the one-sided 95% upper confidence bound on that chance
	// (Wilson score interval): what natcheck assumes when it reads
	// silence, which it reads as a result only when every send of a
	// transaction going unanswered at this loss is less likely than 1 in
	// 1000.
	//
	// 1 in 1000 is MaxFalseNegative; see SendsNeeded.
	Bound float64 `json:"bound"`
}

// Add counts one transaction of sends requests: answered by the last of
// them, or not at all.
func (l *Loss) Add(sends int, answered bool) {
	if sends < 1 {
		return
	}
	l.Sends += sends
	l.Lost += sends
	if answered {
		l.Lost--
	}
	// Four decimals are plenty for a fraction and keep JSON short.
	l.Fraction = math.Round(1e4*float64(l.Lost)/float64(l.Sends)) / 1e4
	l.Bound = math.Round(1e4*wilsonUpper(l.Lost, l.Sends)) / 1e4
}

// wilsonUpper is the upper end of the Wilson score interval for k
// successes in n trials at lossZ; 1 without trials.
func wilsonUpper(k, n int) float64 {
	if n <= 0 {
		return 1
	}
	nf := float64(n)
	p := float64(k) / nf
	z2 := lossZ * lossZ
	centre := p + z2/(2*nf)
	margin := lossZ * math.Sqrt(p*(1-p)/nf+z2/(4*nf*nf))
	return math.Min(1, (centre+margin)/(1+z2/nf))
}

// FalseNegative is the chance that sends requests all go unanswered by loss
// alone, at the loss bound.
func (l Loss) FalseNegative(sends int) float64 {
	b := l.Bound
	if l.Sends == 0 {
		b = 1
	}
	return math.Pow(b, float64(max(sends, 0)))
}

// SendsNeeded is the number of unanswered sends after which silence is a
// result: the fewest that make FalseNegative less than MaxFalseNegative.
// It is at least 1; with a bound of 1 it is math.MaxInt.
func (l Loss) SendsNeeded() int {
	b := l.Bound
	if l.Sends == 0 || b >= 1 {
		return math.MaxInt
	}
	if b <= 0 {
		return 1
	}
	n := int(math.Floor(math.Log(MaxFalseNegative)/math.Log(b))) + 1
	return max(n, 1)
}

// String describes the loss for a reason: "2 of 9 sends unanswered, 22%".
func (l Loss) String() string {
	if l.Sends == 0 {
		return "no loss measurement (no transaction after Test I was answered)"
	}
	return fmt.Sprintf("%d of %d sends unanswered, %.0f%%", l.Lost, l.Sends, 100*l.Fraction)
}

// MeasureLoss counts the loss of one run's observations: every answered
// transaction but Test I and the hairpin test, and every loss probe.
func MeasureLoss(obs Observations) Loss {
	var l Loss
	add := func(p Transaction) {
		if answered(p) {
			l.Add(p.Sent, true)
		}
	}
	for _, t := range obs.RFC5780 {
		for _, p := range t.probes() {
			add(p)
		}
	}
	for _, t := range obs.RFC5780 {
		for _, p := range t.LossProbes {
			if p.Status == StatusNoReply || answered(p) {
				l.Add(p.Sent, answered(p))
			}
		}
	}
	for _, p := range obs.Extra {
		add(p)
	}
	for _, p := range obs.Resample {
		add(p)
	}
	return l
}

func answered(p Transaction) bool { return p.Status == StatusReply || p.Status == StatusErrorReply }
