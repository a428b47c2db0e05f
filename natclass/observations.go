package natclass

import (
	"net/netip"
	"time"
)

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
	// NAT64 is what the engine found out about NAT64 on an IPv6-only
	// network (IPv6 observations only); nil when it did not look (IPv4 has
	// a route, or IPv4 was not asked for).
	NAT64 *NAT64 `json:"nat64,omitempty"`
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
