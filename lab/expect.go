package lab

import (
	"fmt"
	"slices"
)

// Expectation is what a correct diagnosis says behind a router mode: what
// the Linux kernel really does, as measured in README.md. A nil list is
// not checked.
type Expectation struct {
	UDP       bool
	Mapping   []string // accepted values
	Filtering []string
	Type      []string
	DirectUDP []string
	ExitCode  int // natcheck's exit code
}

// Expect returns the expectation for mode.
func Expect(mode Mode) Expectation {
	switch mode {
	case Routed:
		return Expectation{UDP: true,
			Mapping:   []string{None},
			Filtering: []string{None, EndpointIndependent},
			Type:      []string{TypeOpenInternet},
			DirectUDP: []string{"likely"}}
	case Firewall:
		return Expectation{UDP: true,
			Mapping:   []string{None},
			Filtering: []string{AddressAndPortDependent},
			Type:      []string{TypeFirewall},
			DirectUDP: []string{"likely"}}
	case OneToOne:
		return Expectation{UDP: true,
			Mapping:   []string{EndpointIndependent},
			Filtering: []string{EndpointIndependent},
			Type:      []string{TypeFullCone},
			DirectUDP: []string{"likely"}}
	case Masquerade:
		return Expectation{UDP: true,
			Mapping:   []string{EndpointIndependent},
			Filtering: []string{AddressAndPortDependent},
			Type:      []string{TypePortRestrictedCone},
			DirectUDP: []string{"likely"}}
	case Symmetric:
		// Filtering behind a symmetric NAT may honestly be unknown: every
		// new destination gets a new mapping.
		return Expectation{UDP: true,
			Mapping:   []string{AddressAndPortDependent},
			Filtering: []string{AddressAndPortDependent, Unknown},
			Type:      []string{TypeSymmetric},
			DirectUDP: []string{"unlikely"}}
	case UDPBlocked:
		return Expectation{UDP: false,
			Type:      []string{TypeUDPBlocked},
			DirectUDP: []string{"impossible"},
			ExitCode:  3}
	}
	return Expectation{}
}

// CheckNatcheck returns what is wrong in natcheck's answer, or nil. With
// lossy set, "unknown" is accepted for every field (a lost packet may leave
// a test undecided, never wrong), and so is a direct_udp of "possible" when
// the mapping is unknown.
func (e Expectation) CheckNatcheck(r NatcheckResult, lossy bool) []string {
	var bad []string
	if r.ExitCode != e.ExitCode {
		bad = append(bad, fmt.Sprintf("exit code %d, want %d", r.ExitCode, e.ExitCode))
	}
	if e.UDP && r.SchemaVersion != 1 {
		bad = append(bad, fmt.Sprintf("schema_version %d, want 1", r.SchemaVersion))
	}
	if r.UDP != e.UDP {
		bad = append(bad, fmt.Sprintf("udp %v, want %v", r.UDP, e.UDP))
	}
	if r.ExitCode == 3 && r.Stdout == "" {
		// Nothing measured and no report: only the exit code can be checked.
		return bad
	}
	direct := e.DirectUDP
	if lossy && r.NAT.Mapping == Unknown && direct != nil {
		direct = append([]string{"possible"}, direct...)
	}
	bad = append(bad, check("mapping", r.NAT.Mapping, e.Mapping, lossy)...)
	bad = append(bad, check("filtering", r.NAT.Filtering, e.Filtering, lossy)...)
	bad = append(bad, check("type", r.NAT.Type, e.Type, lossy)...)
	bad = append(bad, check("direct_udp", r.Verdict.DirectUDP, direct, lossy)...)
	return bad
}

// CheckNatdiscovery returns what is wrong in turnutils_natdiscovery's
// answer, or nil. A missing conclusion is wrong where one was due.
func (e Expectation) CheckNatdiscovery(r NatdiscoveryResult) []string {
	var bad []string
	if r.UDP != e.UDP {
		bad = append(bad, fmt.Sprintf("udp %v, want %v", r.UDP, e.UDP))
	}
	bad = append(bad, check("mapping", r.Mapping, e.Mapping, false)...)
	bad = append(bad, check("filtering", r.Filtering, e.Filtering, false)...)
	bad = append(bad, check("type", r.Type, e.Type, false)...)
	return bad
}

func check(field, got string, want []string, unknownOK bool) []string {
	if want == nil || slices.Contains(want, got) || (unknownOK && got == Unknown) {
		return nil
	}
	return []string{fmt.Sprintf("%s %q, want one of %q", field, got, want)}
}
