package natclass

import (
	"fmt"
	"net/netip"
	"strings"
)

// Port mapping protocols, as the report names them.
const (
	PortMapUPnP   = "upnp"
	PortMapNATPMP = "nat-pmp"
	PortMapPCP    = "pcp"
)

// PortMappingProtocol is what one port mapping protocol (UPnP IGD,
// NAT-PMP, PCP) found on the default gateway.
type PortMappingProtocol struct {
	// Answered: the gateway answered in this protocol.
	Answered bool
	// External is the external address the gateway claims; zero if none.
	External netip.Addr
	// InboundVerified: a packet from a host this one never sent to arrived
	// through a mapping made with this protocol (yes), did not (no), or
	// no mapping was tried with it (unknown).
	InboundVerified Tri
	// Error says why the protocol did not answer or what failed.
	Error string
	// ResultCode is the NAT-PMP or PCP result code of a refusal; 0
	// otherwise.
	ResultCode int
}

// PortMapping is what port mapping detection (and, with --portmap, a
// mapping and its inbound test) found.
type PortMapping struct {
	UPnP, NATPMP, PCP PortMappingProtocol
	// Mapped is the protocol of the mapping tried (empty: none tried) and
	// MappedExternal the external address and port it was given.
	Mapped         string
	MappedExternal netip.AddrPort
	// MapError is why no mapping could be made (with --portmap).
	MapError string
	// NoGateway says why no gateway was asked.
	NoGateway string
}

// natpmpNetworkFailure is NAT-PMP's result code 3 (RFC 6886 section 3.5).
const natpmpNetworkFailure = 3

// Protocols returns the three results with their names, in report order.
func (p PortMapping) Protocols() []struct {
	Name string
	PortMappingProtocol
} {
	return []struct {
		Name string
		PortMappingProtocol
	}{{PortMapUPnP, p.UPnP}, {PortMapNATPMP, p.NATPMP}, {PortMapPCP, p.PCP}}
}

// PortMappingJudgement is natclass's reading of a PortMapping against the
// STUN public address.
type PortMappingJudgement struct {
	// Answered lists the protocols the gateway answered.
	Answered []string
	// ExternalNotPublic: the gateway claims an external address that is
	// not the public address STUN saw (or not a public address at all):
	// another NAT lies beyond the gateway (double NAT, CGNAT), so its
	// mappings help nobody on the internet. Unknown when the gateway
	// claimed no address or STUN saw none.
	ExternalNotPublic Tri
	// Claimed is the first external address the gateway claimed.
	Claimed netip.Addr
	// Verified is the protocol whose mapping let a stranger in; empty if
	// none did.
	Verified string
	// Summary is one line for a person.
	Summary string
	// Reasons explain the judgement, for the report's reasons.
	Reasons []string
}

// publicAddr reports whether a is usable as a public internet address.
func publicAddr(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsGlobalUnicast() && !a.IsPrivate() && !sharedSpace.Contains(a)
}

// JudgePortMapping reads p against public, the public address STUN saw
// (zero if none).
func JudgePortMapping(p PortMapping, public netip.Addr) PortMappingJudgement {
	var j PortMappingJudgement
	for _, x := range p.Protocols() {
		if x.Answered {
			j.Answered = append(j.Answered, x.Name)
		}
		if !j.Claimed.IsValid() && x.External.IsValid() && !x.External.IsUnspecified() {
			j.Claimed = x.External.Unmap()
		}
		if x.InboundVerified == TriYes && j.Verified == "" {
			j.Verified = x.Name
		}
	}
	public = public.Unmap()
	// A mapping on a gateway behind another NAT helps nobody on the
	// internet, unless that NAT forwards to the gateway (a modem with an
	// exposed host): then the inbound test, sent from beyond both NATs,
	// got through, and that proof wins over the claim.
	consequence := "so a mapping on it helps nobody on the internet"
	if j.Verified != "" {
		consequence = "yet a packet from outside came in through the mapping, so that NAT forwards to the gateway (an exposed host or DMZ) and the mapping works"
	}
	switch {
	case !j.Claimed.IsValid():
	case public.IsValid() && j.Claimed != public:
		j.ExternalNotPublic = TriYes
		j.Reasons = append(j.Reasons, fmt.Sprintf("The gateway claims external address %s, but STUN servers see %s: another NAT (double NAT or carrier-grade NAT) lies beyond the gateway, %s", j.Claimed, public, consequence))
	case public.IsValid():
		// The address STUN servers see: whatever its range, it is the one
		// peers reach.
		j.ExternalNotPublic = TriNo
	case !publicAddr(j.Claimed):
		j.ExternalNotPublic = TriYes
		j.Reasons = append(j.Reasons, fmt.Sprintf("The gateway claims external address %s, which is not a public address: another NAT lies beyond it, %s", j.Claimed, consequence))
	}
	if !j.Claimed.IsValid() && p.NATPMP.Answered && p.NATPMP.ResultCode == natpmpNetworkFailure {
		// RFC 6886 section 3.5: result 3, "Network Failure", e.g. the
		// gateway has no public address itself; miniupnpd answers so when
		// its own WAN address is private.
		j.Reasons = append(j.Reasons, "The gateway answered NAT-PMP with \"network failure\" and claims no external address: gateways answer so when their own WAN address is private, so another NAT (double NAT or carrier-grade NAT) probably lies beyond it")
	}
	switch {
	case len(j.Answered) == 0:
		j.Summary = "no port mapping protocol answered"
		if p.NoGateway != "" {
			j.Summary += " (" + p.NoGateway + ")"
		}
	default:
		j.Summary = "the gateway answers " + strings.Join(j.Answered, ", ")
	}
	switch {
	case j.Verified != "":
		j.Summary += fmt.Sprintf("; a %s mapping let a stranger's packet in", j.Verified)
		j.Reasons = append(j.Reasons, fmt.Sprintf("A port mapping made with %s let in a packet from an address this host never sent to: every kind of peer can reach this host directly, for applications that ask the gateway for a mapping (games, VPNs, BitTorrent, VoIP clients); browsers' WebRTC does not use UPnP, NAT-PMP or PCP", j.Verified))
	case p.Mapped != "":
		j.Summary += fmt.Sprintf("; a %s mapping was made, but no stranger's packet came through it", p.Mapped)
		j.Reasons = append(j.Reasons, fmt.Sprintf("The gateway granted a %s mapping (external %s), but a packet sent to it from outside did not arrive", p.Mapped, p.MappedExternal))
	case p.MapError != "":
		j.Summary += "; no mapping could be made"
	}
	if j.ExternalNotPublic == TriYes {
		j.Summary += "; its external address is not the public one"
	}
	return j
}

// FoldPortMapping folds a verified port mapping into v: every peer that
// can send UDP reaches this host directly (a peer whose UDP is blocked
// still needs its relay). Without a verified mapping v is unchanged; a
// verified one counts even where the gateway's external address is not
// the public one (the inbound test came from beyond both NATs). The
// mapping is an IPv4 one: in a verdict over both families (rows that name
// their family) the rows it makes direct name IPv4.
func FoldPortMapping(v Verdict, j PortMappingJudgement) Verdict {
	if j.Verified == "" || v.Peers == nil {
		return v
	}
	combined := false // a verdict over both families names them
	for _, p := range v.Peers {
		combined = combined || p.Family != ""
	}
	peers := make([]PeerRoute, len(v.Peers))
	for i, p := range v.Peers {
		peers[i] = p
		if p.Peer != PeerUDPBlocked {
			peers[i].Route = RouteDirect
			if combined {
				peers[i].Family = FamilyIPv4 // the mappings are IPv4's
			}
		}
	}
	v.Peers = peers
	s := fmt.Sprintf("With a %s port mapping every peer reaches this host directly (for applications that use port mapping; browsers' WebRTC does not)", j.Verified)
	if v.Summary == "" {
		v.Summary = s
	} else {
		v.Summary = strings.TrimSuffix(v.Summary, ".") + ". " + s
	}
	return v
}
