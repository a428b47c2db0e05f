package pair

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode"

	"github.com/natcheck/natcheck/natclass"
	"github.com/natcheck/natcheck/report"
)

// Summary is what one side tells the other about its network, sent as the
// Data of the rendezvous summary message.
type Summary = report.PairSummary

// SummaryOf summarises a diagnosis for the peer. hasTURN says whether this
// side has TURN servers for a relay phase.
func SummaryOf(r report.Report, hasTURN bool) Summary {
	s := Summary{
		Version:         r.Version,
		NATType:         r.NAT.Type,
		Mapping:         r.NAT.Mapping,
		Filtering:       r.NAT.Filtering,
		MappingVaries:   r.NAT.MappingVariesByDestination,
		UDP:             r.UDP,
		BehindNAT:       r.NAT.BehindNAT,
		PublicAddresses: append([]string{}, r.PublicAddresses...),
		TCP:             r.NAT.TCP,
		TCPPortsOpen:    []int{},
		HasTURN:         hasTURN,
		Family:          r.Family,
	}
	// The main fields are IPv4's whenever IPv4 was tested (the leading
	// family may be IPv6 when only IPv6 got UDP out), so that the two
	// sides' predictions compare like with like; IPv6 goes beside.
	for _, f := range r.Families {
		if f.Skipped != "" {
			continue
		}
		switch f.Family {
		case "ipv4":
			s.NATType, s.Mapping, s.Filtering = f.NAT.Type, f.NAT.Mapping, f.NAT.Filtering
			s.MappingVaries, s.UDP, s.BehindNAT = f.NAT.MappingVariesByDestination, f.UDP, f.NAT.BehindNAT
			s.PublicAddresses, s.Family = append([]string{}, f.PublicAddresses...), f.Family
		case "ipv6":
			s.IPv6 = &report.PairFamilySummary{
				UDP: f.UDP, NATType: f.NAT.Type, Mapping: f.NAT.Mapping, Filtering: f.NAT.Filtering,
				MappingVaries: f.NAT.MappingVariesByDestination, PublicAddresses: append([]string{}, f.PublicAddresses...),
			}
		}
	}
	if s.Family == "ipv6" {
		s.IPv6 = nil // IPv6 only: the main fields are IPv6's
	}
	seen := map[int]bool{}
	for _, p := range r.Paths {
		if p.Transport == natclass.TransportUDP || !p.Reachable || seen[p.Port] {
			continue
		}
		seen[p.Port] = true
		s.TCPPortsOpen = append(s.TCPPortsOpen, p.Port)
	}
	return s
}

// checkSummary rejects a peer's summary that no natcheck would send.
func checkSummary(s Summary) error {
	if len(s.PublicAddresses) > 64 || len(s.TCPPortsOpen) > 64 {
		return errors.New("too many addresses or ports")
	}
	for _, p := range s.TCPPortsOpen {
		if p < 1 || p > 65535 {
			return fmt.Errorf("TCP port %d out of range", p)
		}
	}
	if len(s.Version) > 64 || clean(s.Version) != s.Version {
		return fmt.Errorf("version %q: want at most 64 printable characters", shorten(s.Version))
	}
	addrs := s.PublicAddresses
	if s.IPv6 != nil {
		if len(s.IPv6.PublicAddresses) > 64 {
			return errors.New("too many IPv6 addresses")
		}
		addrs = append(append([]string{}, addrs...), s.IPv6.PublicAddresses...)
	}
	for _, a := range addrs {
		if _, err := netip.ParseAddrPort(a); err != nil {
			return fmt.Errorf("public address %q: want IP:port", shorten(a))
		}
	}
	if s.Family != "" && s.Family != "ipv4" && s.Family != "ipv6" {
		return fmt.Errorf("family %q: want ipv4 or ipv6", shorten(s.Family))
	}
	if s.ICETCPPort < 0 || s.ICETCPPort > 65535 {
		return fmt.Errorf("ICE-TCP port %d out of range", s.ICETCPPort)
	}
	return nil
}

// clean replaces what a terminal would interpret (control characters,
// escape sequences) in text from the peer.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return '?'
	}, s)
}
