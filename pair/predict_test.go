package pair

import (
	"strings"
	"testing"

	"github.com/natcheck/natcheck/natclass"
	"github.com/natcheck/natcheck/report"
)

// TestPredictIPv6Only: a side that is IPv6 only (its summary's main
// fields are IPv6's, Family "ipv6") is compared with the other side's
// IPv6, never with its IPv4.
func TestPredictIPv6Only(t *testing.T) {
	const (
		none = natclass.BehaviorNone
		eim  = natclass.BehaviorEndpointIndependent
		apd  = natclass.BehaviorAddressAndPortDependent
	)
	firewall6Only := Summary{Family: "ipv6", UDP: true, Mapping: none, Filtering: apd, MappingVaries: natclass.TriNo}
	dual := Summary{Family: "ipv4", UDP: true, Mapping: apd, Filtering: apd, MappingVaries: natclass.TriYes,
		IPv6: &report.PairFamilySummary{UDP: true, Mapping: none, Filtering: apd, MappingVaries: natclass.TriNo}}
	v4Only := Summary{Family: "ipv4", UDP: true, Mapping: eim, Filtering: apd, MappingVaries: natclass.TriNo}
	for _, tt := range []struct {
		name              string
		a, b              Summary
		predicted, family string
		certain           bool
		rule              string
	}{
		// Two stateful IPv6 firewalls, no NAT: direct over IPv6 for
		// certain; the dual-stack side's symmetric IPv4 does not matter.
		{"IPv6 only and dual stack", firewall6Only, dual, "direct", "ipv6", true, "IPv6 only"},
		// No family in common: nothing to punch a hole between.
		{"IPv6 only and IPv4 only", firewall6Only, v4Only, "relay", "", false, "no address family in common"},
	} {
		for i, ab := range [][2]Summary{{tt.a, tt.b}, {tt.b, tt.a}} {
			got := predictPair(ab[0], ab[1])
			if got.Predicted != tt.predicted || got.Family != tt.family || got.Certain != tt.certain || !strings.Contains(got.Rule, tt.rule) {
				t.Errorf("%s (order %d): got %s over %q (certain %v), rule %q; want %s over %q (certain %v), rule with %q",
					tt.name, i, got.Predicted, got.Family, got.Certain, got.Rule, tt.predicted, tt.family, tt.certain, tt.rule)
			}
		}
	}
}
