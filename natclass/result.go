package natclass

import (
	"net/netip"
)

// Peer kinds of the verdict, named like the NAT types they stand for.
const (
	PeerOpen               = "open"
	PeerFullCone           = "full-cone"
	PeerRestrictedCone     = "restricted-cone"
	PeerPortRestrictedCone = "port-restricted-cone"
	PeerSymmetric          = "symmetric"
	PeerUDPBlocked         = "udp-blocked"
)

// PeerRoute is how traffic to one kind of peer will flow.
type PeerRoute struct {
	// Peer is the kind of peer, named like the NAT type it stands for.
	//
	// It is one of the Peer constants.
	Peer string `json:"peer"`
	// Route is how traffic to that kind of peer flows.
	Route Route `json:"path"`
	// Family is the address family ("ipv4" or "ipv6") that gives this
	// path, in the run's verdict when two families were tested and
	// disagree; absent in a family's own verdict and whenever only one
	// family was tested or the families agree. A path over IPv6 holds for
	// peers that have IPv6.
	//
	// CombineVerdicts sets it.
	Family string `json:"family,omitempty"`
}

// Relay transports a verdict can call for, in ICE's order of preference.
const (
	RelayTURNUDP = "turn-udp"
	RelayTURNTCP = "turn-tcp"
	RelayTURNTLS = "turn-tls"
)

// Verdict is the answer to how real-time traffic will get through from
// here.
type Verdict struct {
	// DirectUDP is the overall answer for direct UDP to typical peers.
	DirectUDP Likelihood `json:"direct_udp"`
	// Peers are the paths to each kind of peer, direct or relay; null in
	// the verdict of a skipped family.
	Peers []PeerRoute `json:"peers" jsonschema:"nullable"`
	// Relay is the TURN transports to use when direct fails, best first;
	// null in the verdict of a skipped family.
	//
	// It holds Relay constants.
	Relay []string `json:"relay" jsonschema:"nullable"`
	// RelayVerified is the relay transports proven by data through a TURN
	// relay from here, best first; absent when no TURN server was checked,
	// empty when none worked.
	//
	// FoldTURN sets it; nil when no TURN server was checked.
	RelayVerified []string `json:"relay_verified,omitzero"`
	// WayOut is the first way out that works, in ICE's order: direct UDP,
	// TURN over UDP, TURN over TCP, TURN over TLS.
	WayOut WayOut `json:"way_out"`
	// Summary is the one-line answer for a person.
	Summary string `json:"summary"`
}

// Ways out, in ICE's order of preference.
const (
	WayDirectUDP = "direct-udp"
	WayTURNUDP   = "turn-udp"
	WayTURNTCP   = "turn-tcp"
	WayTURNTLS   = "turn-tls"
	WayNone      = "none"
	WayUnknown   = "unknown"
)

// WayOut is how real-time media will leave this network.
type WayOut struct {
	// Via is the way out; empty in the verdict of a skipped family.
	//
	// It is one of the Way constants.
	Via string `json:"via"`
	// Port is the server port that got through, for TCP and TLS.
	Port int `json:"port,omitempty"`
	// Cost is what taking this way costs, in plain words.
	Cost string `json:"cost"`
	// Family is the address family ("ipv4" or "ipv6") this way out goes
	// over, in the run's verdict when two families were tested and
	// disagree; absent otherwise.
	//
	// CombineVerdicts sets it.
	Family string `json:"family,omitempty"`
}

// ServerResult is what the diagnosis says of one UDP STUN server.
type ServerResult struct {
	// RFC5780 is Yes when the server advertised a usable OTHER-ADDRESS
	// (UsableOther), No when it answered without one, Unknown without an
	// answer.
	RFC5780 Tri `json:"rfc5780"`
	// ChangeRequest says how the server treated CHANGE-REQUEST
	// (ChangeRequestSupport): honoured, ignored, rejected, unconfirmed, or
	// empty when none was sent to it.
	ChangeRequest string `json:"change_request,omitempty"`
}

// Result is the diagnosis of one address family.
type Result struct {
	Family string `json:"family"`
	// Skipped says why the family was not tested; empty when it was.
	Skipped string `json:"skipped,omitempty"`
	// UDPTested is true when a UDP STUN server was given (only TCP or TLS
	// servers leave UDP untested).
	UDPTested bool `json:"udp_tested"`
	// UDP is true when any UDP STUN reply arrived.
	UDP bool `json:"udp"`
	// NotMeasured is the short cause when no UDP reply arrived and UDP
	// could not be called blocked either ("Nothing could be measured: DNS
	// failed for every server"); empty otherwise.
	NotMeasured string   `json:"not_measured,omitempty"`
	Mapping     Behavior `json:"mapping"`
	Filtering   Behavior `json:"filtering"`
	Type        Type     `json:"type"`
	// BehindNAT: the public address differs from the local one.
	BehindNAT Tri `json:"behind_nat"`
	// MappingVariesByDestination: one socket got different public addresses
	// from servers on different IP addresses.
	MappingVariesByDestination Tri `json:"mapping_varies_by_destination"`
	// PortPreservation: the NAT kept the local port as the public port.
	PortPreservation Tri `json:"port_preservation"`
	// CGNAT: the public address seen by a public server is itself private or
	// in 100.64.0.0/10, so there is another NAT beyond the first.
	CGNAT Tri `json:"cgnat"`
	// ALG: MAPPED-ADDRESS differed from XOR-MAPPED-ADDRESS, so something on
	// the path rewrites addresses inside packets. Unknown when no server sent
	// MAPPED-ADDRESS.
	ALG Tri `json:"alg"`
	// Hairpin: a packet sent to our own public address came back to us.
	// Unknown when not tested (opt-in) or when the test did not finish.
	Hairpin Tri `json:"hairpin"`
	// HairpinTested: the hairpinning test was sent (--hairpin), whether
	// or not it finished.
	HairpinTested bool `json:"hairpin_tested"`
	// PublicAddresses are the distinct XOR-MAPPED-ADDRESSes the mapping
	// socket got: one under an endpoint-independent NAT, several under a
	// symmetric one.
	PublicAddresses []netip.AddrPort `json:"public_addresses"`
	// TCP: a TCP connection to some server got out (TLS included).
	// Unknown when no TCP attempt was made.
	TCP Tri `json:"tcp"`
	// TCPPortsOpen lists the server ports where a server answered over TCP:
	// a STUN response, or a TLS certificate that failed verification (TCP
	// gets there, TLS is not trusted). TLSPortsOpen lists the ports where
	// STUN over verified TLS answered. A bare TCP handshake counts for
	// neither: a transparent proxy can complete it.
	TCPPortsOpen []int `json:"tcp_ports_open"`
	TLSPortsOpen []int `json:"tls_ports_open"`
	// TCPMappingEndpointIndependent: connections from one local port to
	// servers on different IP addresses got the same public address.
	TCPMappingEndpointIndependent Tri `json:"tcp_mapping_endpoint_independent"`
	// TCPPortPreservation: the NAT kept the local TCP port.
	TCPPortPreservation Tri `json:"tcp_port_preservation"`
	// MappingChanged: the public address of one socket changed during the
	// test in a way no mapping behaviour explains, even on a second, fresh
	// socket; mapping and type are then unknown.
	MappingChanged bool `json:"mapping_changed"`
	// UDPLoss is the UDP loss measured in this run; nil when nothing was
	// measured (UDP did not get out, or no transaction after Test I was
	// answered: only plain servers).
	UDPLoss *Loss `json:"udp_loss"`
	// RFC5780Server names the server whose behaviour tests were used, if any.
	RFC5780Server string `json:"rfc5780_server,omitempty"`
	// Servers holds what the diagnosis says of each server, in the order
	// of Observations.Servers.
	Servers []ServerResult `json:"servers"`
	Verdict Verdict        `json:"verdict"`
	// NAT64 is Observations.NAT64, copied.
	NAT64 *NAT64 `json:"nat64,omitempty"`
	// Reasons explain the diagnosis in plain words, tied to observations.
	Reasons []string `json:"reasons"`
}
