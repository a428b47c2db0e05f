// Package natclass turns STUN observations into a NAT diagnosis: mapping and
// filtering behaviour (RFC 4787 section 4 and 5), the classic RFC 3489 NAT
// type, and a verdict on how real-time traffic will get through. It holds
// pure functions over data only: no sockets, no clock.
package natclass

import (
	"fmt"
	"net/netip"
	"time"
)

// Behavior is an RFC 4787 mapping or filtering behaviour. The zero value is
// BehaviorUnknown.
type Behavior int

// Behaviours, in the vocabulary of RFC 4787 and RFC 5780.
const (
	BehaviorUnknown                 Behavior = iota // not determined
	BehaviorNone                                    // no NAT (mapping) or no filtering at all
	BehaviorEndpointIndependent                     // EIM / EIF
	BehaviorAddressDependent                        // ADM / ADF
	BehaviorAddressAndPortDependent                 // APDM / APDF
)

var behaviorNames = [...]string{"unknown", "none", "endpoint-independent", "address-dependent", "address-and-port-dependent"}

func (b Behavior) String() string {
	if b < 0 || int(b) >= len(behaviorNames) {
		return fmt.Sprintf("Behavior(%d)", int(b))
	}
	return behaviorNames[b]
}

// MarshalText implements encoding.TextMarshaler.
func (b Behavior) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (b *Behavior) UnmarshalText(t []byte) error {
	return unmarshalEnum(t, behaviorNames[:], (*int)(b), "behavior")
}

// Type is the classic RFC 3489 NAT type name people search for. The zero
// value is TypeUnknown.
type Type int

// NAT types.
const (
	TypeUnknown            Type = iota
	TypeOpenInternet            // no NAT, no filtering
	TypeFirewall                // no NAT, unsolicited inbound dropped
	TypeFullCone                // EIM + EIF
	TypeRestrictedCone          // EIM + ADF
	TypePortRestrictedCone      // EIM + APDF
	TypeSymmetric               // ADM or APDM
	TypeUDPBlocked              // no UDP reply from any server
)

var typeNames = [...]string{"unknown", "open-internet", "firewall", "full-cone", "restricted-cone", "port-restricted-cone", "symmetric", "udp-blocked"}

func (t Type) String() string {
	if t < 0 || int(t) >= len(typeNames) {
		return fmt.Sprintf("Type(%d)", int(t))
	}
	return typeNames[t]
}

// MarshalText implements encoding.TextMarshaler.
func (t Type) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (t *Type) UnmarshalText(b []byte) error {
	return unmarshalEnum(b, typeNames[:], (*int)(t), "NAT type")
}

// Tri is a yes/no answer that may also be unknown (the zero value). In JSON it
// is true, false or null.
type Tri int

// Tri values.
const (
	TriUnknown Tri = iota
	TriNo
	TriYes
)

// TriOf returns Yes for true and No for false.
func TriOf(b bool) Tri {
	if b {
		return TriYes
	}
	return TriNo
}

func (t Tri) String() string {
	switch t {
	case TriYes:
		return "yes"
	case TriNo:
		return "no"
	}
	return "unknown"
}

// MarshalJSON encodes Yes as true, No as false and Unknown as null.
func (t Tri) MarshalJSON() ([]byte, error) {
	switch t {
	case TriYes:
		return []byte("true"), nil
	case TriNo:
		return []byte("false"), nil
	}
	return []byte("null"), nil
}

// UnmarshalJSON decodes true, false and null.
func (t *Tri) UnmarshalJSON(b []byte) error {
	switch string(b) {
	case "true":
		*t = TriYes
	case "false":
		*t = TriNo
	case "null":
		*t = TriUnknown
	default:
		return fmt.Errorf("natclass: %q is not true, false or null", b)
	}
	return nil
}

// Likelihood is the overall answer to "will direct UDP work?". The zero
// value is LikelihoodUnknown.
type Likelihood int

// Likelihoods.
const (
	LikelihoodUnknown    Likelihood = iota
	LikelihoodLikely                // direct with every kind of NAT peer
	LikelihoodPossible              // direct with some kinds of peer; which could not be fully told
	LikelihoodUnlikely              // relay needed with the most common home-router peers
	LikelihoodImpossible            // UDP does not get out
)

var likelihoodNames = [...]string{"unknown", "likely", "possible", "unlikely", "impossible"}

func (l Likelihood) String() string {
	if l < 0 || int(l) >= len(likelihoodNames) {
		return fmt.Sprintf("Likelihood(%d)", int(l))
	}
	return likelihoodNames[l]
}

// MarshalText implements encoding.TextMarshaler.
func (l Likelihood) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (l *Likelihood) UnmarshalText(b []byte) error {
	return unmarshalEnum(b, likelihoodNames[:], (*int)(l), "likelihood")
}

// Route is how traffic to one kind of peer will flow: a route to a peer
// (JSON "path"). The zero value is RouteUnknown.
type Route int

// Routes.
const (
	RouteUnknown        Route = iota
	RouteDirect               // UDP hole punching works
	RouteProbablyDirect       // works in most cases (EIM + APDF on both sides)
	RouteRelay                // a TURN relay is needed
)

var routeNames = [...]string{"unknown", "direct", "probably-direct", "relay"}

func (p Route) String() string {
	if p < 0 || int(p) >= len(routeNames) {
		return fmt.Sprintf("Route(%d)", int(p))
	}
	return routeNames[p]
}

// MarshalText implements encoding.TextMarshaler.
func (p Route) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (p *Route) UnmarshalText(b []byte) error {
	return unmarshalEnum(b, routeNames[:], (*int)(p), "path")
}

func unmarshalEnum(b []byte, names []string, v *int, what string) error {
	for i, n := range names {
		if n == string(b) {
			*v = i
			return nil
		}
	}
	return fmt.Errorf("natclass: unknown %s %q", what, b)
}

// Status is the outcome of one STUN transaction. The zero value StatusNotRun
// means the request was never sent, or the run ended before its waiting
// window did: that is "unknown", never "no reply".
type Status int

// Statuses.
const (
	StatusNotRun     Status = iota
	StatusNoReply           // sent (with retransmissions) and nothing came back within the window
	StatusReply             // a success response arrived
	StatusErrorReply        // an error response arrived (e.g. 420 Unknown Attribute)
)

var statusNames = [...]string{"not-run", "no-reply", "reply", "error-reply"}

func (s Status) String() string {
	if s < 0 || int(s) >= len(statusNames) {
		return fmt.Sprintf("Status(%d)", int(s))
	}
	return statusNames[s]
}

// MarshalText implements encoding.TextMarshaler.
func (s Status) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Status) UnmarshalText(b []byte) error {
	return unmarshalEnum(b, statusNames[:], (*int)(s), "status")
}

// Transaction is one STUN Binding transaction as the engine saw it: what was sent,
// from which local socket, to where, and what came back.
type Transaction struct {
	Local      netip.AddrPort `json:"local"`       // the socket's own, concrete address
	Dest       netip.AddrPort `json:"dest"`        // where the request was sent
	ChangeIP   bool           `json:"change_ip"`   // CHANGE-REQUEST change-IP flag sent
	ChangePort bool           `json:"change_port"` // CHANGE-REQUEST change-port flag sent
	// ResponsePort is the RESPONSE-PORT sent (RFC 5780 section 7.5): the
	// reply goes to this port at the request's public IP. Zero if none.
	ResponsePort uint16 `json:"response_port,omitempty"`
	Sent         int    `json:"sent"` // transmissions, retransmissions included
	Status       Status `json:"status"`

	// Reply fields; zero unless Status is StatusReply or StatusErrorReply.
	From           netip.AddrPort `json:"from,omitzero"`            // the reply's source address
	ResponseOrigin netip.AddrPort `json:"response_origin,omitzero"` // RESPONSE-ORIGIN
	Mapped         netip.AddrPort `json:"mapped,omitzero"`          // XOR-MAPPED-ADDRESS
	LegacyMapped   netip.AddrPort `json:"legacy_mapped,omitzero"`   // MAPPED-ADDRESS, if sent
	Other          netip.AddrPort `json:"other,omitzero"`           // OTHER-ADDRESS
	ErrorCode      int            `json:"error_code,omitempty"`     // STUN error code of an error reply
	Error          string         `json:"error,omitempty"`          // why the request could not be sent
	RTT            time.Duration  `json:"-"`                        // first transmission to reply
	// LastRTT is the time from the last transmission to the reply: the
	// round trip when the request was sent once, a lower bound on it when
	// retransmitted (a reply cannot be told from a late one; Karn).
	LastRTT time.Duration `json:"-"`
}

// PathRTT is the round-trip time to size waiting windows with: RTT when the
// request was sent once, else LastRTT, since loss inflates RTT by the
// retransmission intervals.
func (p Transaction) PathRTT() time.Duration {
	if p.Sent > 1 && p.LastRTT > 0 {
		return p.LastRTT
	}
	return p.RTT
}

// Replied reports whether a success response arrived.
func (p Transaction) Replied() bool { return p.Status == StatusReply }

// Source is where the reply says it came from: RESPONSE-ORIGIN when the server
// sent it, else the packet's source address.
func (p Transaction) Source() netip.AddrPort {
	if p.From.IsValid() {
		return p.From
	}
	return p.ResponseOrigin
}

// Server is one configured STUN server and Test I (a plain Binding request)
// sent to it from the shared mapping socket.
type Server struct {
	Name         string         `json:"name"`                    // as the user gave it
	Address      netip.AddrPort `json:"address,omitzero"`        // resolved address; zero if resolution failed
	ResolveError string         `json:"resolve_error,omitempty"` // why it could not be resolved
	Binding      Transaction    `json:"binding"`                 // Test I from the mapping socket
}

// RFC5780Tests are the behaviour-discovery tests of RFC 5780 section 4 run
// against one server that advertised OTHER-ADDRESS in Test I.
type RFC5780Tests struct {
	Server int `json:"server"` // index into Observations.Servers

	// Mapping tests (4.3) on the mapping socket, after Test I.
	MappingII  Transaction `json:"mapping_ii"`  // to alternate IP, primary port
	MappingIII Transaction `json:"mapping_iii"` // to alternate IP, alternate port

	// Filtering tests (4.4) on a fresh socket that never talked to the
	// alternate address.
	FilteringI   Transaction `json:"filtering_i"`   // plain request to the primary address
	FilteringII  Transaction `json:"filtering_ii"`  // change-IP and change-port
	FilteringIII Transaction `json:"filtering_iii"` // change-port only

	// Control is sent from the mapping socket only once Mapping Test III
	// was answered, so the NAT holds a mapping towards the alternate
	// address and never sees a packet from there first: a change-IP and
	// change-port request whose reply, from the alternate address, proves
	// that the server can answer from there. Behind a mapping that varies
	// by destination it carries RESPONSE-PORT, the port of Test III's
	// mapping, so the reply reaches the mapping that talked to A:a.
	Control Transaction `json:"control"`
	// MappingPa is a plain request from the mapping socket to the primary
	// IP's alternate port; it opens the filter towards that port and gives
	// one more mapping sample.
	MappingPa Transaction `json:"mapping_pa"`
	// ControlPort is a change-port request from the mapping socket, sent
	// once MappingPa was answered: its reply, from the primary IP's
	// alternate port, proves that the server honours change-port. It
	// carries RESPONSE-PORT when MappingPa's mapping differs from Test I's.
	ControlPort Transaction `json:"control_port"`
	// LossProbes are single plain requests the filtering socket sends to
	// the primary address while the filtering tests wait, each given its own
	// window: answered or not, each is a direct sample of the loss that
	// silence is weighed against (natclass.MeasureLoss). Only probes whose
	// window ended are kept.
	LossProbes []Transaction `json:"loss_probes,omitempty"`
}

// probes returns every transaction of t, in a stable order.
func (t RFC5780Tests) probes() []Transaction {
	return []Transaction{t.MappingII, t.MappingIII, t.FilteringI, t.FilteringII, t.FilteringIII, t.Control, t.MappingPa, t.ControlPort}
}

// Observations is everything the probe engine saw for one address family.
type Observations struct {
	Family  string         `json:"family"` // "ipv4" or "ipv6"
	Servers []Server       `json:"servers"`
	RFC5780 []RFC5780Tests `json:"rfc5780,omitempty"`
	// Hairpin is a Binding request sent from another socket to the mapping
	// socket's mapped address; StatusReply means the mapping socket received
	// it. Nil when the test was not run.
	Hairpin *Transaction `json:"hairpin,omitempty"`
	// Resample holds the plain Binding transactions of a second, fresh
	// mapping socket (Test I to every server, and Tests II, III and P:a to
	// the first RFC 5780 server): the engine takes them when the mapping
	// socket's samples contradicted each other, so that a mapping changed
	// during the test is told from a mapping that varies by destination.
	Resample []Transaction `json:"resample,omitempty"`
	// Extra holds further plain Binding transactions on other sockets (for
	// instance a fresh socket's Test I) used for port-preservation evidence.
	Extra []Transaction `json:"extra,omitempty"`
	// Paths are the Binding requests sent over TCP and TLS.
	Paths []Attempt `json:"paths,omitempty"`
}

// Path transports.
const (
	TransportUDP = "udp"
	TransportTCP = "tcp"
	TransportTLS = "tls"
)

// Attempt is one attempt to get a STUN Binding request through over TCP
// (RFC 8489 section 6.2.2) or TLS (section 6.2.3).
type Attempt struct {
	Transport string         `json:"transport"` // "tcp" or "tls"
	Server    string         `json:"server"`    // the server as configured
	Dest      netip.AddrPort `json:"dest"`
	Local     netip.AddrPort `json:"local,omitzero"`
	// SharedPort is true when the connection was made from the local port
	// shared by all TCP probes, so that mapped addresses can be compared.
	SharedPort bool `json:"shared_port,omitempty"`
	// Connected: the TCP handshake completed, so TCP to this port gets out.
	Connected bool `json:"connected"`
	// OK: a Binding success response arrived.
	OK     bool           `json:"ok"`
	Mapped netip.AddrPort `json:"mapped,omitzero"`
	// CertError is set when the TLS certificate failed verification; the
	// path still proved that TCP to the port gets out.
	CertError    string    `json:"cert_error,omitempty"`
	CertNotAfter time.Time `json:"cert_not_after,omitzero"`
	// CutShort: the attempt was ended before it could finish (the run's
	// deadline, or UDP already answered): it says nothing either way.
	CutShort  bool          `json:"cut_short,omitempty"`
	Error     string        `json:"error,omitempty"`
	Connect   time.Duration `json:"-"` // TCP handshake
	Handshake time.Duration `json:"-"` // TLS handshake
	Total     time.Duration `json:"-"` // dial to Binding response
}

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
	// Reasons explain the diagnosis in plain words, tied to observations.
	Reasons []string `json:"reasons"`
}
