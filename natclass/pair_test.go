package natclass

import (
	"strings"
	"testing"
)

func TestPredictPair(t *testing.T) {
	var (
		open = PairSide{UDP: true, Mapping: BehaviorNone, Filtering: BehaviorNone, MappingVaries: TriNo}
		// fullCone: EIM + EIF.
		fullCone   = PairSide{UDP: true, Mapping: BehaviorEndpointIndependent, Filtering: BehaviorEndpointIndependent, MappingVaries: TriNo}
		restricted = PairSide{UDP: true, Mapping: BehaviorEndpointIndependent, Filtering: BehaviorAddressDependent, MappingVaries: TriNo}
		portRestr  = PairSide{UDP: true, Mapping: BehaviorEndpointIndependent, Filtering: BehaviorAddressAndPortDependent, MappingVaries: TriNo}
		firewall   = PairSide{UDP: true, Mapping: BehaviorNone, Filtering: BehaviorAddressAndPortDependent, MappingVaries: TriNo}
		symmetric  = PairSide{UDP: true, Mapping: BehaviorAddressAndPortDependent, Filtering: BehaviorAddressAndPortDependent, MappingVaries: TriYes}
		// eimUnknownFilter: EIM whose filtering could not be measured.
		eimUnknownFilter = PairSide{UDP: true, Mapping: BehaviorEndpointIndependent, MappingVaries: TriNo}
		// nothingKnown: UDP gets out, nothing else is known.
		nothingKnown = PairSide{UDP: true}
		server       = PairSide{UDP: true, Mapping: BehaviorNone, Filtering: BehaviorNone, MappingVaries: TriNo, ICETCPPort: 3480}
		blockedTCP   = PairSide{TCP: TriYes, TCPPortsOpen: []int{443, 3480}}
		blocked443   = PairSide{TCP: TriYes, TCPPortsOpen: []int{443}}
		blockedNoTCP = PairSide{TCP: TriNo}
		// blocked443Reached/Refused: only 443 was tested, but a TCP
		// connection to the peer's ICE-TCP port was tried.
		blocked443Reached = PairSide{TCP: TriYes, TCPPortsOpen: []int{443}, ReachesPeerICETCP: TriYes}
		blocked443Refused = PairSide{TCP: TriYes, TCPPortsOpen: []int{443}, ReachesPeerICETCP: TriNo}
	)
	tests := []struct {
		name      string
		a, b      PairSide
		predicted string
		certain   bool
		rule      string // a substring of the rule
	}{
		{"open x symmetric", open, symmetric, "direct", true, "lets in packets from any address"},
		{"full cone x symmetric", fullCone, symmetric, "direct", true, "lets in packets from any address"},
		{"restricted x symmetric", restricted, symmetric, "direct", true, "any port of an address it sent to"},
		{"restricted x port-restricted", restricted, portRestr, "direct", true, "filtering by address (restricted cone)"},
		{"port-restricted x port-restricted", portRestr, portRestr, "direct", false, "gives this mapping another port"},
		{"firewall x port-restricted", firewall, portRestr, "direct", false, "stateful firewall"},
		{"firewall x firewall", firewall, firewall, "direct", true, "neither side has a NAT"},
		{"port-restricted x symmetric", portRestr, symmetric, "relay", true, "lets in only the port it sent to"},
		{"firewall x symmetric", firewall, symmetric, "relay", true, "symmetric side sends from a port"},
		{"symmetric x symmetric", symmetric, symmetric, "relay", true, "both NATs map each destination"},
		{"unknown filtering x port-restricted", eimUnknownFilter, portRestr, "direct", false, "every behaviour the diagnoses allow"},
		{"unknown filtering x symmetric", eimUnknownFilter, symmetric, "unknown", false, "others need a relay"},
		{"nothing known x open", nothingKnown, open, "direct", true, ""},
		{"symmetric x server", symmetric, server, "direct", true, ""},
		{"udp blocked x port-restricted", blockedTCP, portRestr, "relay", true, "only a TURN relay"},
		{"udp blocked, tcp to the ICE-TCP port x server", blockedTCP, server, "direct", true, "offers ICE-TCP there"},
		{"udp blocked, only 443 tested x server", blocked443, server, "unknown", false, "was not tested"},
		{"udp and tcp blocked x server", blockedNoTCP, server, "relay", true, "TCP does not get out either"},
		{"udp blocked, ICE-TCP port reached x server", blocked443Reached, server, "direct", true, "got through"},
		{"udp blocked, ICE-TCP port not reached x server", blocked443Refused, server, "relay", true, "did not get through"},
		{"udp blocked both", blockedTCP, blockedNoTCP, "relay", true, "neither side"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i, sides := range [][2]PairSide{{tt.a, tt.b}, {tt.b, tt.a}} {
				got := PredictPair(sides[0], sides[1])
				if got.Predicted != tt.predicted || got.Certain != tt.certain {
					t.Errorf("order %d: got %s (certain %v), want %s (certain %v); rule: %s", i, got.Predicted, got.Certain, tt.predicted, tt.certain, got.Rule)
				}
				if !strings.Contains(got.Rule, tt.rule) {
					t.Errorf("order %d: rule %q lacks %q", i, got.Rule, tt.rule)
				}
			}
		})
	}
}

func TestPredictPairFamilies(t *testing.T) {
	var (
		symmetric = PairSide{UDP: true, Mapping: BehaviorAddressAndPortDependent, Filtering: BehaviorAddressAndPortDependent, MappingVaries: TriYes}
		portRestr = PairSide{UDP: true, Mapping: BehaviorEndpointIndependent, Filtering: BehaviorAddressAndPortDependent, MappingVaries: TriNo}
		firewall  = PairSide{UDP: true, Mapping: BehaviorNone, Filtering: BehaviorAddressAndPortDependent, MappingVaries: TriNo}
		open      = PairSide{UDP: true, Mapping: BehaviorNone, Filtering: BehaviorNone, MappingVaries: TriNo}
		blocked   = PairSide{TCP: TriNo}
	)
	tests := []struct {
		name              string
		l4, r4            PairSide
		l6, r6            *PairSide
		predicted, family string
		certain           bool
		rule              string
	}{
		{"IPv4 only", symmetric, symmetric, nil, nil, "relay", "", true, "both NATs"},
		{"IPv6 on one side only", symmetric, symmetric, &firewall, nil, "relay", "", true, "both NATs"},
		{"IPv6 firewalls beat IPv4 symmetric", symmetric, symmetric, &firewall, &firewall, "direct", "ipv6", true, "over IPv6, "},
		{"IPv4 certain beats IPv6 uncertain", open, portRestr, &portRestr, &portRestr, "direct", "ipv4", true, "over IPv6 direct"},
		{"IPv6 uncertain beats IPv4 relay", symmetric, portRestr, &portRestr, &portRestr, "direct", "ipv6", false, "over IPv4 relay"},
		{"equal: IPv4", open, open, &open, &open, "direct", "ipv4", true, "over IPv4, "},
		{"IPv6 UDP blocked on one side", symmetric, symmetric, &blocked, &open, "relay", "", true, "both NATs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := PredictPairFamilies(tt.l4, tt.r4, tt.l6, tt.r6)
			if got.Predicted != tt.predicted || got.Family != tt.family || got.Certain != tt.certain || !strings.Contains(got.Rule, tt.rule) {
				t.Errorf("got %s over %q (certain %v), rule %q; want %s over %q (certain %v), rule with %q", got.Predicted, got.Family, got.Certain, got.Rule, tt.predicted, tt.family, tt.certain, tt.rule)
			}
		})
	}
}
