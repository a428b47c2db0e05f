package report

import "github.com/natcheck/natcheck/natclass"

// Pair outcomes.
const (
	PairDirect = "direct" // the direct phase connected (host, server-reflexive or peer-reflexive candidates)
	PairRelay  = "relay"  // only the relay phase connected, through a TURN server
	PairFailed = "failed" // no phase connected
)

// Pair phases.
const (
	PhaseDirect = "direct"
	PhaseRelay  = "relay"
)

// PairSummary is what one side of natcheck pair tells the other about its
// network: its own diagnosis in short. It travels as the Data of the
// rendezvous summary message.
type PairSummary struct {
	// Version is the natcheck version of that side.
	Version string `json:"version"`
	// NATType is the classic (RFC 3489) NAT type name.
	NATType natclass.Type `json:"nat_type"`
	// Mapping is the NAT's mapping behaviour (RFC 4787 section 4.1).
	Mapping natclass.Behavior `json:"mapping"`
	// Filtering is the NAT's filtering behaviour (RFC 4787 section 5).
	Filtering natclass.Behavior `json:"filtering"`
	// MappingVaries: one socket got different public addresses from
	// servers on different IP addresses.
	MappingVaries natclass.Tri `json:"mapping_varies"`
	// UDP is true when a UDP STUN reply arrived.
	UDP bool `json:"udp"`
	// BehindNAT: the public address differs from the local one; null when
	// unknown.
	BehindNAT natclass.Tri `json:"behind_nat"`
	// PublicAddresses are the public addresses (IP:port) STUN servers saw.
	PublicAddresses []string `json:"public_addresses"`
	// TCP: a TCP connection to some server got out; null when none was
	// tried or none finished.
	TCP natclass.Tri `json:"tcp"`
	// TCPPortsOpen are the server ports that answered over TCP or TLS.
	TCPPortsOpen []int `json:"tcp_ports_open"`
	// HasTURN is true when that side was given TURN servers, so a relay
	// phase runs.
	HasTURN bool `json:"has_turn"`
	// ICETCPPort is the port of the passive ICE-TCP candidate that side
	// offers at a public address (natcheck serve as the peer); absent
	// otherwise.
	ICETCPPort int `json:"ice_tcp_port,omitempty"`
	// ServerPeer is true when that side is natcheck serve acting as the
	// second peer (natcheck pair --peer server).
	ServerPeer bool `json:"server_peer,omitempty"`
	// Family is the address family of the fields above (NAT type to
	// public addresses): ipv4 when IPv4 was tested.
	Family string `json:"family,omitempty"`
	// IPv6 is that side's IPv6 diagnosis in short, beside the IPv4 one
	// above; absent when IPv6 was not tested.
	IPv6 *PairFamilySummary `json:"ipv6,omitempty"`
	// ReachesPeerICETCP: before predicting, this side tried one TCP
	// connection to the server peer's ICE-TCP port: yes it connected, no
	// it did not; null when not tried (no server peer).
	ReachesPeerICETCP natclass.Tri `json:"reaches_peer_ice_tcp"`
}

// PairFamilySummary is one address family's diagnosis in a PairSummary.
type PairFamilySummary struct {
	// UDP is true when a UDP STUN reply arrived in this family.
	UDP bool `json:"udp"`
	// NATType is the classic (RFC 3489) NAT type name.
	NATType natclass.Type `json:"nat_type"`
	// Mapping is the mapping behaviour (RFC 4787 section 4.1).
	Mapping natclass.Behavior `json:"mapping"`
	// Filtering is the filtering behaviour (RFC 4787 section 5).
	Filtering natclass.Behavior `json:"filtering"`
	// MappingVaries: one socket got different public addresses from
	// servers on different IP addresses.
	MappingVaries natclass.Tri `json:"mapping_varies"`
	// PublicAddresses are the public addresses (IP:port) STUN servers saw.
	PublicAddresses []string `json:"public_addresses"`
}

// PairCandidate is one end of the selected ICE candidate pair.
type PairCandidate struct {
	// Type is the candidate type (RFC 8445 section 5.1.1).
	Type string `json:"type"`
	// Protocol is the transport of the candidate.
	Protocol string `json:"protocol"`
	// Address is the candidate's IP:port.
	Address string `json:"address"`
}

// PairSelected is the candidate pair ICE selected.
type PairSelected struct {
	// Local is this side's candidate.
	Local PairCandidate `json:"local"`
	// Remote is the peer's candidate.
	Remote PairCandidate `json:"remote"`
}

// PairPhase is one phase of natcheck pair as this side saw it.
type PairPhase struct {
	// Phase is the phase: direct (host and server-reflexive candidates)
	// or relay (TURN relay candidates on each side that has TURN servers).
	Phase string `json:"phase"`
	// Connected is true when ICE connected in this phase.
	Connected bool `json:"connected"`
	// ConnectMS is the time from the offer (sent or received) to ICE
	// connected; absent when not connected.
	ConnectMS *int64 `json:"connect_ms,omitempty"`
	// Selected is the candidate pair ICE selected; absent when not
	// connected.
	Selected *PairSelected `json:"selected,omitempty"`
	// RTTMS is the median round-trip time of the burst over the selected
	// pair; absent when no echo came back.
	RTTMS *float64 `json:"rtt_ms,omitempty"`
	// Loss is the fraction of the burst's packets whose echo did not come
	// back; absent when no burst was sent.
	Loss *float64 `json:"loss,omitempty"`
	// PeerConnected is what the peer said of this phase in its result;
	// null when its result did not arrive.
	PeerConnected natclass.Tri `json:"peer_connected"`
	// Error says why the phase did not connect, or what went wrong after.
	Error string `json:"error,omitempty"`
}

// Pair is the result of natcheck pair: the connection between two networks
// through a rendezvous, and the prediction checked against it.
type Pair struct {
	// Room is the rendezvous room.
	Room string `json:"room"`
	// Role is this side's role in the room: first (ICE-controlling, sends
	// the offers) or second.
	Role string `json:"role"`
	// Predicted is the path expected from the two diagnoses before
	// connecting.
	Predicted string `json:"predicted"`
	// PredictionCertain is false when the outcome may depend on timing or
	// on what the diagnoses could not tell.
	PredictionCertain bool `json:"prediction_certain"`
	// PredictionRule says which rule gave the prediction, with both sides'
	// behaviour.
	PredictionRule string `json:"prediction_rule"`
	// PredictedFamily is the address family the prediction is for, when
	// both sides had an IPv6 diagnosis with UDP and both families were
	// weighed (ICE tries both at once); absent otherwise (IPv4).
	//
	// It is ipv4 or ipv6.
	PredictedFamily string `json:"predicted_family,omitempty"`
	// Outcome is direct when the direct phase connected, relay when only
	// the relay phase did, failed otherwise.
	Outcome string `json:"outcome"`
	// Matched: the outcome is direct exactly when direct was predicted;
	// false when the prediction was unknown.
	Matched bool `json:"matched"`
	// Selected is the candidate pair of the phase that gave the outcome;
	// absent when it failed.
	Selected *PairSelected `json:"selected,omitempty"`
	// OutcomeFamily is the address family of the selected pair; absent
	// when it failed.
	//
	// It is ipv4 or ipv6.
	OutcomeFamily string `json:"outcome_family,omitempty"`
	// ConnectMS is that phase's time from the offer to ICE connected;
	// absent when it failed.
	ConnectMS *int64 `json:"connect_ms,omitempty"`
	// PresentToConnectedMS is the time from both peers being in the room
	// to ICE connected in the phase that gave the outcome: the rest of the
	// diagnosis, the summary exchange, an earlier phase, gathering and ICE;
	// absent when it failed.
	PresentToConnectedMS *int64 `json:"present_to_connected_ms,omitempty"`
	// RTTMS is that phase's median burst round-trip time; absent when no
	// echo came back.
	RTTMS *float64 `json:"rtt_ms,omitempty"`
	// Loss is that phase's burst loss (a fraction); absent when no burst
	// was sent.
	Loss *float64 `json:"loss,omitempty"`
	// Phases are the phases run, in order.
	Phases []PairPhase `json:"phases"`
	// Peer is the other side's summary; absent when it never arrived.
	Peer *PairSummary `json:"peer,omitempty"`
	// Local is this side's summary, as sent to the peer.
	Local PairSummary `json:"local"`
	// Error says why the pairing stopped early (the peer left, the
	// rendezvous closed, a malformed message); absent otherwise.
	Error string `json:"error,omitempty"`
}
