package natclass

import (
	"net/netip"
	"strings"
	"time"
)

// TURN transports of a TURN URL (RFC 7065): the transport between the
// client and the server, not the relayed one (always UDP here).
const (
	TURNTransportUDP = "udp" // turn:HOST or turn:HOST?transport=udp
	TURNTransportTCP = "tcp" // turn:HOST?transport=tcp
	TURNTransportTLS = "tls" // turns:HOST (TLS over TCP)
)

// TURN check steps, in the order they run. A failed check names the step
// that failed.
const (
	TURNStepResolve    = "resolve"    // DNS lookup of the server
	TURNStepConnect    = "connect"    // TCP connect (TCP and TLS only)
	TURNStepTLS        = "tls"        // TLS handshake and certificate verification
	TURNStepAllocate   = "allocate"   // Allocate request (RFC 8656 section 7)
	TURNStepPermission = "permission" // CreatePermission (RFC 8656 section 9)
	TURNStepData       = "data"       // data through the relay to a peer and back
	TURNStepEndToEnd   = "end-to-end" // two relay-only ICE agents connect
	TURNStepSoak       = "soak"       // the long run: a refresh failed, or loss above the limit
)

// TLSInfo is a TURN server's TLS session and certificate.
type TLSInfo struct {
	// Version is the TLS version, e.g. "TLS 1.3"; empty when the handshake
	// failed.
	Version string `json:"version"`
	// ServerName is the name verified.
	ServerName string `json:"server_name"`
	// Subject is the leaf certificate subject common name.
	Subject string `json:"subject"`
	// Issuer is the leaf certificate issuer common name.
	Issuer string `json:"issuer"`
	// DNSNames are the DNS names of the leaf certificate.
	DNSNames []string `json:"dns_names,omitempty"`
	// NotAfter is the expiry of the leaf certificate.
	NotAfter time.Time `json:"not_after"`
	// Verified is true when the chain and the name passed verification;
	// --insecure does not skip verification, only its refusal.
	Verified bool `json:"verified"`
	// VerifyError is why verification failed (with --insecure, the check
	// went on).
	VerifyError string `json:"verify_error,omitempty"`
}

// RelayData is the data sent through a relay to a peer and echoed back.
type RelayData struct {
	Peer     netip.AddrPort `json:"peer"` // the peer as the relay saw it
	Sent     int            `json:"sent"`
	Received int            `json:"received"`
	RTTMin   time.Duration  `json:"-"`
	RTTAvg   time.Duration  `json:"-"`
	RTTMax   time.Duration  `json:"-"`
}

// Loss is the fraction of packets that did not come back, 0 to 1.
func (d RelayData) Loss() float64 {
	if d.Sent == 0 {
		return 0
	}
	return float64(d.Sent-d.Received) / float64(d.Sent)
}

// EndToEnd is the result of two relay-only ICE agents connecting to each
// other through one TURN server and exchanging data.
type EndToEnd struct {
	Connected bool          `json:"connected"`
	Time      time.Duration `json:"-"` // from agent creation to connected
	// Local and Remote are the selected candidate pair, in ICE's notation.
	Local    string `json:"local,omitempty"`
	Remote   string `json:"remote,omitempty"`
	Sent     int    `json:"sent"`
	Received int    `json:"received"`
	Error    string `json:"error,omitempty"`
}

// TURNCheck is everything one TURN URL check observed. Durations are zero
// for steps that did not run. It never holds a password, a secret or a
// credential derived from them.
type TURNCheck struct {
	URL       string         `json:"url"` // the URL without credentials
	Transport string         `json:"transport"`
	Server    netip.AddrPort `json:"server,omitzero"` // the address connected to
	Local     netip.AddrPort `json:"local,omitzero"`  // our end of the control connection
	// Family is the address family of the transport to the server:
	// "ipv4" or "ipv6"; empty when the name did not resolve.
	Family string `json:"family,omitempty"`
	// Auth is "long-term" or "rest" (time-limited, from a shared secret).
	Auth string `json:"auth"`
	User string `json:"user,omitempty"`
	// CredentialExpires is the expiry of REST credentials.
	CredentialExpires time.Time `json:"credential_expires,omitzero"`

	Connect      time.Duration `json:"-"` // TCP connect
	TLSHandshake time.Duration `json:"-"`
	TLS          *TLSInfo      `json:"tls,omitempty"`

	Allocate    time.Duration  `json:"-"` // the whole Allocate exchange (401 challenge included)
	AllocateRTT time.Duration  `json:"-"` // round trip of the authenticated Allocate request
	Realm       string         `json:"realm,omitempty"`
	Relayed     netip.AddrPort `json:"relayed,omitzero"` // XOR-RELAYED-ADDRESS
	// RelayedFamily is the family of the relayed address, "ipv4" or
	// "ipv6" (RFC 6156); empty without an allocation.
	RelayedFamily string         `json:"relayed_family,omitempty"`
	Mapped        netip.AddrPort `json:"mapped,omitzero"` // XOR-MAPPED-ADDRESS of the Allocate response
	Lifetime      time.Duration  `json:"-"`

	Permission time.Duration `json:"-"`
	Data       *RelayData    `json:"data,omitempty"`
	// Released is Yes when the server confirmed the allocation's release
	// (Refresh with LIFETIME 0), No on an error reply, Unknown otherwise.
	Released Tri `json:"released"`

	EndToEnd *EndToEnd `json:"end_to_end,omitempty"`

	// Soak is the long run (natcheck turn --duration), when run.
	Soak *TURNSoak `json:"soak,omitempty"`

	// OK is true when data went through the relay and back (and the
	// end-to-end check, when run, connected).
	OK bool `json:"ok"`
	// FailedStep is the TURNStep that failed; empty when OK.
	FailedStep string `json:"failed_step,omitempty"`
	// ErrorCode is the STUN error code of the failing response, if any.
	ErrorCode int `json:"error_code,omitempty"`
	// Error says what went wrong, Hint what to do about it.
	Error    string        `json:"error,omitempty"`
	Hint     string        `json:"hint,omitempty"`
	Warnings []string      `json:"warnings,omitempty"`
	Duration time.Duration `json:"-"`
}

// RelayTransport returns the verdict's name of the check's transport:
// RelayTURNUDP, RelayTURNTCP or RelayTURNTLS.
func (c TURNCheck) RelayTransport() string {
	switch c.Transport {
	case TURNTransportTCP:
		return RelayTURNTCP
	case TURNTransportTLS:
		return RelayTURNTLS
	}
	return RelayTURNUDP
}

// Answered reports whether the server answered at all: a TLS handshake or
// any TURN response (an error response included).
func (c TURNCheck) Answered() bool {
	return c.OK || c.TLS != nil || c.ErrorCode != 0 || c.Relayed.IsValid()
}

// VerifiedRelays returns the relay transports, in ICE's order of preference
// (RelayTURNUDP, RelayTURNTCP, RelayTURNTLS), over which at least one check
// passed. It returns nil when there are no checks and an empty, non-nil
// slice when there are checks but none passed.
func VerifiedRelays(checks []TURNCheck) []string {
	if len(checks) == 0 {
		return nil
	}
	ok := map[string]bool{}
	for _, c := range checks {
		if c.OK {
			ok[c.RelayTransport()] = true
		}
	}
	out := []string{}
	for _, t := range []string{RelayTURNUDP, RelayTURNTCP, RelayTURNTLS} {
		if ok[t] {
			out = append(out, t)
		}
	}
	return out
}

// FoldTURN adds the outcome of TURN checks to a verdict: RelayVerified lists
// the relay transports proven by data through a relay from here, and the
// summary says which work. With no checks v is returned unchanged.
func FoldTURN(v Verdict, checks []TURNCheck) Verdict {
	verified := VerifiedRelays(checks)
	if verified == nil {
		return v
	}
	v.RelayVerified = verified
	var s string
	if len(verified) == 0 {
		s = "No TURN server relayed data from here"
	} else {
		names := make([]string, len(verified))
		for i, t := range verified {
			names[i] = strings.ToUpper(strings.TrimPrefix(t, "turn-"))
		}
		s = "TURN relay works from here over " + strings.Join(names, ", ")
	}
	if v.Summary == "" {
		v.Summary = s
	} else {
		v.Summary = strings.TrimSuffix(v.Summary, ".") + ". " + s
	}
	return v
}

// Candidate types, protocols and relay protocols use ICE's names (RFC 8445
// section 5.1.1, RFC 8839 section 5.1): "host", "srflx", "prflx", "relay";
// "udp", "tcp"; and for relays "udp", "tcp", "tls".

// Candidate is one ICE candidate gathered from here.
type Candidate struct {
	Type     string     `json:"type"`
	Protocol string     `json:"protocol"`
	Address  netip.Addr `json:"address"`
	// Family is the address's family: "ipv4" or "ipv6".
	Family      string     `json:"family"`
	Port        int        `json:"port"`
	RelatedAddr netip.Addr `json:"related_address,omitzero"`
	RelatedPort int        `json:"related_port,omitempty"`
	Priority    uint32     `json:"priority"`
	// Server is the URL (without credentials) that produced the candidate;
	// empty for host candidates.
	Server string `json:"server,omitempty"`
	// RelayProtocol is the transport to the TURN server of a relay candidate.
	RelayProtocol string        `json:"relay_protocol,omitempty"`
	Time          time.Duration `json:"-"` // from the start of gathering
}

// CandidateServer is one STUN or TURN server's part in gathering: whether it
// produced what it should (srflx from STUN, relay from TURN).
type CandidateServer struct {
	// URL is the server URL, without credentials.
	URL string `json:"url"`
	// Want is the candidate type the server should produce: "srflx" or
	// "relay".
	Want string `json:"want"`
	// Produced is how many candidates of that type it produced.
	Produced int `json:"produced"`
	// Error is why the server produced nothing, in plain words.
	Error string `json:"error,omitempty"`
}

// Gathering is the result of gathering ICE candidates.
type Gathering struct {
	Candidates []Candidate       `json:"candidates"`
	Servers    []CandidateServer `json:"servers"`
	Duration   time.Duration     `json:"-"`
}

// Kinds of TURN refreshes a soak observes (RFC 8656 sections 7.2, 9 and
// 12).
const (
	RefreshAllocation = "allocation" // Refresh request
	RefreshPermission = "permission" // CreatePermission request
	RefreshChannel    = "channel"    // ChannelBind request
)

// TURNRefresh is the outcome of one refresh during a soak: a Refresh,
// CreatePermission or ChannelBind transaction, or one that was due and
// never answered.
type TURNRefresh struct {
	Kind string        `json:"kind"` // RefreshAllocation, RefreshPermission or RefreshChannel
	At   time.Duration `json:"-"`    // since the soak started
	OK   bool          `json:"ok"`
	// Code is the STUN error code of an error response.
	Code  int           `json:"code,omitempty"`
	Error string        `json:"error,omitempty"`
	RTT   time.Duration `json:"-"`
}

// SoakStats are packets through a relay over a span of a soak: how many
// were sent and came back, round-trip quantiles and jitter.
type SoakStats struct {
	Sent     int `json:"sent"`
	Received int `json:"received"`
	// ChannelSent/Received went as ChannelData (a bound channel),
	// IndicationSent/Received as Send and Data indications.
	ChannelSent        int           `json:"channel_sent"`
	ChannelReceived    int           `json:"channel_received"`
	IndicationSent     int           `json:"indication_sent"`
	IndicationReceived int           `json:"indication_received"`
	RTTP50             time.Duration `json:"-"`
	RTTP95             time.Duration `json:"-"`
	RTTP99             time.Duration `json:"-"`
	// Jitter is the mean absolute difference between the round trips of
	// consecutive packets of a stream (RFC 3550's D, not smoothed).
	Jitter time.Duration `json:"-"`
}

// Loss is the fraction of packets that did not come back, 0 to 1.
func (s SoakStats) Loss() float64 {
	if s.Sent == 0 {
		return 0
	}
	return float64(s.Sent-s.Received) / float64(s.Sent)
}

// SoakMinute is one minute of a soak (the last one may be shorter).
type SoakMinute struct {
	Minute int `json:"minute"` // from 0
	SoakStats
}

// TURNSoak is a TURN allocation kept alive for a while with a steady
// packet stream through the relay: every refresh the client made and the
// loss, round trips and jitter per minute.
type TURNSoak struct {
	Planned time.Duration `json:"-"` // the --duration asked for
	Elapsed time.Duration `json:"-"`
	// Interrupted is true when the soak ended early (Ctrl-C, or the
	// allocation failed).
	Interrupted bool `json:"interrupted,omitempty"`
	// MaxLoss is the loss above which the soak fails, 0 to 1.
	MaxLoss   float64       `json:"max_loss"`
	Refreshes []TURNRefresh `json:"refreshes"`
	Minutes   []SoakMinute  `json:"minutes"`
	Total     SoakStats     `json:"total"`
}

// RefreshFailures is the number of refreshes that failed.
func (s TURNSoak) RefreshFailures() int {
	n := 0
	for _, r := range s.Refreshes {
		if !r.OK {
			n++
		}
	}
	return n
}
