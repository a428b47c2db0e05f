package report

import (
	"fmt"
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/natcheck/natcheck/natclass"
)

// Lifetime is the NAT's UDP binding lifetime measured by natcheck
// --lifetime: how long a mapping that saw one request and its answer
// survives without traffic.
type Lifetime struct {
	// Server is the STUN server used (it must honour RESPONSE-PORT, RFC
	// 5780 section 7.5); empty when none could be.
	Server string `json:"server"`
	// Address is the server's address (IP:port); empty when none could be
	// used.
	Address string `json:"address"`
	// LowerS is the longest idle time, in seconds, that a mapping was seen
	// to survive; 0 when none was.
	LowerS float64 `json:"lower_s"`
	// UpperS is the shortest idle time, in seconds, after which a mapping
	// had expired; null when none expired within max_s.
	UpperS *float64 `json:"upper_s"`
	// KeepaliveS is the recommended keepalive interval in seconds: four
	// fifths of lower_s, whole seconds, at least 1; 0 when no mapping
	// survived a second.
	KeepaliveS float64 `json:"keepalive_s"`
	// PrecisionS is the width of the bracket found, upper_s - lower_s;
	// null without an upper bound.
	PrecisionS *float64 `json:"precision_s"`
	// TargetPrecisionS is the precision asked for (--lifetime-precision),
	// in seconds.
	TargetPrecisionS float64 `json:"target_precision_s"`
	// MaxS is the longest idle time tested (--lifetime-max), in seconds.
	MaxS float64 `json:"max_s"`
	// RefreshedByInbound is true when a packet from the server to the
	// mapping half-way through renewed it, false when it did not, null
	// when not measured.
	RefreshedByInbound *bool `json:"refreshed_by_inbound"`
	// RefreshedByOutbound is the same for a packet from the mapping to the
	// server.
	RefreshedByOutbound *bool `json:"refreshed_by_outbound"`
	// Probes is the number of tested sockets that gave an answer (alive
	// or expired).
	Probes int `json:"probes"`
	// Packets is the number of packets the measurement sent.
	Packets int `json:"packets"`
	// Partial says why the measurement stopped early (interrupted, out of
	// time); empty when it ran to its end. The bounds are those found.
	Partial string `json:"partial,omitempty"`
	// Error says why nothing could be measured; empty otherwise.
	Error string `json:"error,omitempty"`
	// Notes are observations that weaken the result.
	Notes []string `json:"notes"`
}

// secs converts d to seconds with millisecond precision.
func secs(d time.Duration) float64 { return math.Round(float64(d.Milliseconds())) / 1000 }

// LifetimeOf converts a lifetime measurement to its JSON shape.
func LifetimeOf(l natclass.Lifetime) *Lifetime {
	out := &Lifetime{
		Server: l.Server, Address: str(l.Address),
		LowerS: secs(l.Lower), KeepaliveS: secs(l.Keepalive()),
		TargetPrecisionS: secs(l.Precision), MaxS: secs(l.Max),
		RefreshedByInbound: l.RefreshedByInbound, RefreshedByOutbound: l.RefreshedByOutbound,
		Probes: l.Probes, Packets: l.Sent, Partial: l.Partial, Error: l.Error,
		Notes: append([]string{}, l.Notes...),
	}
	if l.Upper > 0 {
		u, p := secs(l.Upper), secs(l.PrecisionFound())
		out.UpperS, out.PrecisionS = &u, &p
	}
	return out
}

// AddLifetime puts a lifetime measurement into r.
func (r *Report) AddLifetime(l natclass.Lifetime) { r.Lifetime = LifetimeOf(l) }

// lifetimeText is the text report's line for l.
func lifetimeText(p palette, l *Lifetime) string {
	s := "Binding lifetime: "
	switch {
	case l.Error != "":
		return s + p.warn.Sprint("not measured") + " (" + l.Error + ")"
	case l.UpperS != nil:
		s += fmt.Sprintf("between %gs and %gs", l.LowerS, *l.UpperS)
	case l.LowerS > 0:
		s += fmt.Sprintf("more than %gs", l.LowerS)
	default:
		s += p.warn.Sprint("unknown")
	}
	if l.KeepaliveS > 0 {
		s += fmt.Sprintf("; keepalive every %gs", l.KeepaliveS)
	}
	var refresh []string
	for _, x := range []struct {
		name string
		v    *bool
	}{{"inbound", l.RefreshedByInbound}, {"outbound", l.RefreshedByOutbound}} {
		if x.v != nil {
			verb := "refreshes"
			if !*x.v {
				verb = "does not refresh"
			}
			refresh = append(refresh, x.name+" traffic "+verb)
		}
	}
	for i, r := range refresh {
		if i == 0 {
			s += "; "
		} else {
			s += ", "
		}
		s += r
	}
	if l.Partial != "" {
		s += " (" + p.warn.Sprint("partial: "+l.Partial) + ")"
	}
	return s
}

// lifetimeCollectors are the gauges of r's lifetime, none without one.
func lifetimeCollectors(l *Lifetime) []prometheus.Collector {
	if l == nil || l.Error != "" {
		return nil
	}
	g := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: "natcheck_binding_lifetime_" + name, Help: help})
	}
	lower := g("lower_seconds", "Longest idle time a NAT UDP mapping was seen to survive (natcheck --lifetime).")
	lower.Set(l.LowerS)
	keep := g("keepalive_seconds", "Recommended keepalive interval for NAT UDP mappings: four fifths of the lower bound; 0 when unknown.")
	keep.Set(l.KeepaliveS)
	cs := []prometheus.Collector{lower, keep}
	if l.UpperS != nil {
		upper := g("upper_seconds", "Shortest idle time after which a NAT UDP mapping had expired; absent when none expired within --lifetime-max.")
		upper.Set(*l.UpperS)
		cs = append(cs, upper)
	}
	refreshed := gauge("binding_lifetime_refreshed", "1 when a packet in the direction (inbound, outbound) renewed an idle NAT UDP mapping, 0 when not; absent when not measured.", "direction")
	if l.RefreshedByInbound != nil {
		refreshed.WithLabelValues("inbound").Set(b2f(*l.RefreshedByInbound))
	}
	if l.RefreshedByOutbound != nil {
		refreshed.WithLabelValues("outbound").Set(b2f(*l.RefreshedByOutbound))
	}
	partial := g("partial", "1 when the lifetime measurement stopped early (interrupted, out of time), else 0.")
	partial.Set(b2f(l.Partial != ""))
	return append(cs, refreshed, partial)
}
