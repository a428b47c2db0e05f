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
	for _, a := range s.PublicAddresses {
		if _, err := netip.ParseAddrPort(a); err != nil {
			return fmt.Errorf("public address %q: want IP:port", shorten(a))
		}
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
