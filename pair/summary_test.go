package pair

import (
	"testing"

	"github.com/natcheck/natcheck/natclass"
	"github.com/natcheck/natcheck/report"
)

// A dual-stack diagnosis: the summary's main fields are IPv4's even where
// IPv6 leads, IPv6 goes beside, and two such peers are predicted direct
// over IPv6 (two stateful firewalls) although IPv4 needs a relay.
func TestSummaryFamilies(t *testing.T) {
	r := report.Report{
		Version: "test", Family: "ipv6", UDP: true,
		NAT: report.NAT{Type: natclass.TypeFirewall, Mapping: natclass.BehaviorNone, Filtering: natclass.BehaviorAddressAndPortDependent},
		Families: []report.FamilyResult{
			{Family: "ipv4", UDP: true, PublicAddresses: []string{"198.51.100.1:4000", "198.51.100.1:4001"},
				NAT: report.NAT{Type: natclass.TypeSymmetric, Mapping: natclass.BehaviorAddressAndPortDependent,
					Filtering: natclass.BehaviorAddressAndPortDependent, MappingVariesByDestination: natclass.TriYes}},
			{Family: "ipv6", UDP: true, PublicAddresses: []string{"[2001:db8::1]:4000"},
				NAT: report.NAT{Type: natclass.TypeFirewall, Mapping: natclass.BehaviorNone,
					Filtering: natclass.BehaviorAddressAndPortDependent, MappingVariesByDestination: natclass.TriNo}},
		},
	}
	s := SummaryOf(r, false)
	if s.Family != "ipv4" || s.NATType != natclass.TypeSymmetric || len(s.PublicAddresses) != 2 {
		t.Fatalf("main fields: family %q type %v addresses %v; want IPv4's: symmetric, two addresses", s.Family, s.NATType, s.PublicAddresses)
	}
	if s.IPv6 == nil || s.IPv6.NATType != natclass.TypeFirewall || !s.IPv6.UDP {
		t.Fatalf("ipv6: %+v; want the firewall", s.IPv6)
	}
	if err := checkSummary(s); err != nil {
		t.Fatal(err)
	}
	p := predictPair(s, s)
	if p.Predicted != "direct" || !p.Certain || p.Family != "ipv6" {
		t.Errorf("got %s (certain %v) over %q: %s; want direct for certain over ipv6", p.Predicted, p.Certain, p.Family, p.Rule)
	}
	// Only IPv4 on the peer: IPv4's prediction, no family.
	four := s
	four.IPv6 = nil
	if p := predictPair(s, four); p.Predicted != "relay" || p.Family != "" {
		t.Errorf("without IPv6 at the peer: got %s over %q; want relay, no family", p.Predicted, p.Family)
	}
}
