package report

import (
	"bytes"
	"fmt"
	"io"
	"strings"
)

// WritePairText writes natcheck pair's report for a person: the answer
// first (how the two sides connected, and whether the prediction held), a
// mismatch said plainly with both NATs' behaviour, the prediction's rule,
// each phase, and then this side's own diagnosis as WriteText writes it.
func WritePairText(w io.Writer, r Report, o TextOptions) error {
	pr := r.Pair
	if pr == nil {
		return WriteText(w, r, o)
	}
	p := newPalette(o.Color)
	var b bytes.Buffer

	// 1. The answer.
	fmt.Fprintln(&b, pairAnswer(p, pr))
	if mm := PairMismatch(pr); mm != "" {
		fmt.Fprintln(&b, p.bad.Sprint(mm))
	}

	// 2. The prediction, the peer and the phases.
	fmt.Fprintln(&b)
	certain := "certain"
	if !pr.PredictionCertain {
		certain = "not certain"
	}
	fmt.Fprintf(&b, "Prediction: %s (%s): %s\n", pr.Predicted, certain, dash(pr.PredictionRule))
	fmt.Fprintf(&b, "Room:       %s, this side %s\n", pr.Room, pr.Role)
	fmt.Fprintf(&b, "Here:       %s\n", describeSide(pr.Local))
	if pr.Peer != nil {
		fmt.Fprintf(&b, "Peer:       %s\n", describeSide(*pr.Peer))
	} else {
		fmt.Fprintln(&b, "Peer:       its diagnosis never arrived")
	}
	var rows [][]string
	for _, ph := range pr.Phases {
		row := []string{ph.Phase}
		switch {
		case ph.Connected:
			row = append(row, p.good.Sprintf("connected in %d ms", *ph.ConnectMS))
		default:
			row = append(row, p.bad.Sprint("not connected"))
		}
		if ph.Selected != nil {
			row = append(row, candidatePair(ph.Selected, true))
		} else {
			row = append(row, "-")
		}
		row = append(row, burstText(ph.RTTMS, ph.Loss))
		peer := "peer: no result"
		switch ph.PeerConnected.String() {
		case "yes":
			peer = "peer: connected"
		case "no":
			peer = "peer: not connected"
		}
		row = append(row, peer, dash(ph.Error))
		rows = append(rows, row)
	}
	if len(rows) > 0 {
		fmt.Fprintln(&b)
		if err := renderTable(&b, []string{"phase", "ice", "selected pair (here <-> peer)", "burst", "", "error"}, rows); err != nil {
			return err
		}
	}
	if pr.Error != "" {
		fmt.Fprintf(&b, "\nStopped early: %s\n", pr.Error)
	}
	fmt.Fprintln(&b, "\nThis side's diagnosis:")
	if _, err := w.Write(b.Bytes()); err != nil {
		return err
	}
	return WriteText(w, r, o)
}

// pairAnswer is the first line: how the sides connected, and whether the
// prediction held.
func pairAnswer(p palette, pr *Pair) string {
	var s string
	switch pr.Outcome {
	case PairDirect, PairRelay:
		how := "Connected directly"
		if pr.Outcome == PairRelay {
			how = "Connected only through a TURN relay"
		}
		if pr.OutcomeFamily == "ipv6" {
			how += " over IPv6"
		}
		s = fmt.Sprintf("%s (%s)", how, candidatePair(pr.Selected, false))
		if pr.ConnectMS != nil {
			s += fmt.Sprintf(" in %d ms", *pr.ConnectMS)
		}
		if pr.RTTMS != nil {
			s += fmt.Sprintf(", rtt %.1f ms", *pr.RTTMS)
		}
		if pr.Loss != nil {
			s += fmt.Sprintf(", %s loss", percent(*pr.Loss))
		}
	default:
		s = "No connection"
		if pr.Error != "" {
			s += ": " + pr.Error
		} else {
			var why []string
			for _, ph := range pr.Phases {
				if ph.Error != "" {
					why = append(why, ph.Phase+": "+ph.Error)
				}
			}
			if len(why) > 0 {
				s += " (" + strings.Join(why, "; ") + ")"
			}
		}
	}
	verdict := "matched"
	switch {
	case pr.Predicted == "unknown" || pr.Predicted == "":
		verdict = "nothing to check"
	case !pr.Matched:
		verdict = "MISMATCH"
	}
	predicted := dash(pr.Predicted)
	if pr.PredictedFamily == "ipv6" {
		predicted += " over IPv6"
	}
	line := fmt.Sprintf("%s; predicted %s: %s", s, predicted, verdict)
	switch {
	case pr.Outcome == PairFailed:
		return p.bad.Sprint(line)
	case pr.Outcome == PairRelay:
		return p.warn.Sprint(line)
	}
	return p.good.Sprint(line)
}

// PairMismatch says plainly what went against the prediction, with both
// NATs' mapping and filtering; "" when the prediction held or was unknown.
func PairMismatch(pr *Pair) string {
	if pr == nil || pr.Matched || pr.Predicted == "unknown" || pr.Predicted == "" || pr.Peer == nil {
		return ""
	}
	got := map[string]string{
		PairDirect: "they connected directly",
		PairRelay:  "only a TURN relay connected them",
		PairFailed: "they did not connect at all",
	}[pr.Outcome]
	return fmt.Sprintf("Mismatch: the two diagnoses predicted %s, but %s. Here: %s. Peer: %s.",
		pr.Predicted, got, natBehaviour(pr.Local), natBehaviour(*pr.Peer))
}

func natBehaviour(s PairSummary) string {
	return fmt.Sprintf("%s NAT, mapping %s, filtering %s", s.NATType, s.Mapping, s.Filtering)
}

func describeSide(s PairSummary) string {
	d := natBehaviour(s)
	if !s.UDP {
		d = "UDP blocked, " + d
	}
	if len(s.PublicAddresses) > 0 {
		d += ", public " + strings.Join(s.PublicAddresses, " ")
	}
	if s.ServerPeer {
		d += ", natcheck serve as the peer"
		if s.ICETCPPort != 0 {
			d += fmt.Sprintf(" (ICE-TCP on port %d)", s.ICETCPPort)
		}
	}
	if s.HasTURN {
		d += ", with TURN"
	}
	if s.Version != "" {
		d += " (" + s.Version + ")"
	}
	return d
}

// candidatePair is "host/udp <-> srflx/udp", with addresses when long.
func candidatePair(sel *PairSelected, long bool) string {
	if sel == nil {
		return "-"
	}
	c := func(x PairCandidate) string {
		s := x.Type + "/" + x.Protocol
		if long {
			s += " " + x.Address
		}
		return s
	}
	return c(sel.Local) + " <-> " + c(sel.Remote)
}

func burstText(rtt, loss *float64) string {
	if loss == nil {
		return "-"
	}
	s := percent(*loss) + " loss"
	if rtt != nil {
		s = fmt.Sprintf("rtt %.1f ms, %s", *rtt, s)
	}
	return s
}

func percent(f float64) string {
	s := fmt.Sprintf("%.1f", 100*f)
	return strings.TrimSuffix(s, ".0") + "%"
}
