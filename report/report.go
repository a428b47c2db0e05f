// Package report holds the Report struct, natcheck's JSON schema, and the
// renderers that print it: a table for people, JSON and JSON lines for
// scripts, and Prometheus metrics (the text exposition for node_exporter's
// textfile collector, and a registry for the exporter). The TURN report of
// `natcheck turn` and the TURN part of the diagnosis are here too.
//
// report copies and renders; it decides nothing. Every conclusion, down
// to which address family leads and how TURN checks change the verdict,
// is natclass's, assembled by internal/diagnose.
package report

import (
	"net/netip"
	"strconv"
	"time"

	"github.com/natcheck/natcheck/natclass"
)

// SchemaVersion is the version of the JSON report. Fields are only ever
// added; a removal or a change of meaning bumps it.
//
// Version 2: the top-level verdict is the verdict over both address
// families (the best path to each kind of peer over either family, with
// its family), no longer the leading family's; nat64 was added.
const SchemaVersion = 2

// Report is the result of one natcheck run (natcheck --json, --format
// json-line).
//
// It is the JSON schema and the input of every renderer.
type Report struct {
	// SchemaVersion is the version of this schema. Fields are only ever
	// added; a removal or a change of meaning bumps it.
	SchemaVersion int `json:"schema_version"`
	// Tool is always "natcheck".
	Tool string `json:"tool"`
	// Version is the version of natcheck that wrote the report.
	Version string `json:"version"`
	// StartedAt is when the run started (RFC 3339, UTC).
	StartedAt time.Time `json:"started_at"`
	// DurationMS is the duration of the whole run, TURN checks included, in
	// milliseconds.
	DurationMS int64 `json:"duration_ms"`
	// UDP is true when any UDP STUN reply arrived, in any family.
	UDP bool `json:"udp"`
	// UDPLoss is the UDP loss measured in the leading family's run; null
	// when nothing was measured (UDP did not get out, or only plain servers
	// answered).
	UDPLoss *natclass.Loss `json:"udp_loss"`
	// Family is the leading family, the one that nat, public_addresses,
	// udp_loss and reasons describe: a family whose UDP got out leads one
	// whose UDP did not, and between equals ipv4 leads; empty when no
	// family was tested. Every family's own result is in families.
	Family string `json:"family"`
	// NAT is the NAT behaviour of the leading family.
	NAT NAT `json:"nat"`
	// PublicAddresses are the distinct public addresses (IP:port) of the
	// leading family's mapping socket: one under an endpoint-independent
	// NAT, several under a symmetric one.
	PublicAddresses []string `json:"public_addresses"`
	// Verdict is how real-time traffic gets through from here, over every
	// family tested (since schema version 2; before, the leading family's
	// verdict). When two families were tested and their verdicts differ,
	// each peer row is the best path over either family and names it in
	// family, as does way_out; direct_udp, relay and way_out are those of
	// the family with the best answer; and the summary gives that family's
	// answer first, then the other's. A path over IPv6 holds for peers
	// that have IPv6 too. When only one family was tested, or the families
	// agree, or one measured nothing, it is the leading family's verdict
	// unchanged, without family fields. The families' own verdicts, in
	// families, never name a family.
	Verdict natclass.Verdict `json:"verdict"`
	// NAT64 is what the run found out about NAT64 on an IPv6-only network
	// (no IPv4 route): whether a DNS64 resolver revealed a NAT64 prefix
	// (RFC 7050), and which IPv4-only STUN servers were probed through it;
	// absent when IPv4 has a route or only one family was asked for.
	NAT64 *natclass.NAT64 `json:"nat64,omitempty"`
	// Reasons are the diagnosis explained in plain words, tied to
	// observations.
	Reasons []string `json:"reasons"`
	// Servers are the STUN servers of every family tested.
	Servers []Server `json:"servers"`
	// Paths are the attempts to get a STUN request out, per transport: UDP
	// from the UDP tests, TCP and TLS from the path probes.
	Paths []Attempt `json:"paths"`
	// Families are the whole diagnosis of each address family, tested or
	// skipped.
	Families []FamilyResult `json:"families"`
	// Measured is false when no server answered at all, over UDP, TCP or
	// TLS (exit code 3).
	Measured bool `json:"measured"`
	// TURN is one check per TURN URL given (--turn, --ice-servers); absent
	// without TURN servers.
	//
	// AddTURN sets it.
	TURN []TURNResult `json:"turn,omitempty"`
	// Candidates are the ICE candidates gathered when TURN servers were
	// given; absent otherwise.
	Candidates *Candidates `json:"candidates,omitempty"`
	// Lifetime is the NAT's UDP binding lifetime (natcheck --lifetime);
	// absent without --lifetime.
	//
	// AddLifetime sets it.
	Lifetime *Lifetime `json:"lifetime,omitempty"`
	// Pair is the connection natcheck pair made to a peer on another
	// network, and the prediction checked against it; absent except in
	// natcheck pair's report.
	Pair *Pair `json:"pair,omitempty"`
	// PortMapping is what the default gateway said to UPnP IGD, NAT-PMP
	// and PCP, and with --portmap whether a mapping let a stranger in;
	// absent when detection was off (--no-portmap-detect).
	//
	// AddPortMapping sets it.
	PortMapping *PortMapping `json:"port_mapping,omitempty"`
}

// NAT is the NAT behaviour of one address family.
type NAT struct {
	// Mapping is the mapping behaviour (RFC 4787 section 4.1).
	Mapping natclass.Behavior `json:"mapping"`
	// Filtering is the filtering behaviour (RFC 4787 section 5).
	Filtering natclass.Behavior `json:"filtering"`
	// Type is the classic (RFC 3489) NAT type name.
	Type natclass.Type `json:"type"`
	// BehindNAT: the public address differs from the local one; null when
	// unknown.
	BehindNAT natclass.Tri `json:"behind_nat"`
	// MappingVariesByDestination: one socket got different public
	// addresses from servers on different IP addresses.
	MappingVariesByDestination natclass.Tri `json:"mapping_varies_by_destination"`
	// PortPreservation: the NAT kept the local port as the public port.
	PortPreservation natclass.Tri `json:"port_preservation"`
	// CGNAT: the public address seen by a public server is itself private
	// or in 100.64.0.0/10: another NAT lies beyond the first.
	CGNAT natclass.Tri `json:"cgnat"`
	// ALG: MAPPED-ADDRESS differed from XOR-MAPPED-ADDRESS: something on
	// the path rewrites addresses inside packets; null when no server sent
	// MAPPED-ADDRESS.
	ALG natclass.Tri `json:"alg"`
	// Hairpin: a packet sent to our own public address came back; null
	// when not tested (--hairpin) or when the test did not finish.
	Hairpin natclass.Tri `json:"hairpin"`
	// TCP: a TCP connection to some server got out; null when none was
	// tried or none finished.
	TCP natclass.Tri `json:"tcp"`
	// TCPMappingEndpointIndependent: connections from one local port to
	// servers on different IP addresses got the same public address.
	TCPMappingEndpointIndependent natclass.Tri `json:"tcp_mapping_endpoint_independent"`
	// TCPPortPreservation: the NAT kept the local TCP port.
	TCPPortPreservation natclass.Tri `json:"tcp_port_preservation"`
	// HairpinTested is true when the hairpinning test was sent (--hairpin),
	// whether or not it finished: with hairpin null, true means the test
	// did not finish, false that it was not asked for.
	HairpinTested bool `json:"hairpin_tested"`
	// MappingChanged is true when one socket's public address changed
	// during the test in a way no mapping behaviour explains, and so did a
	// second, fresh socket's: mapping and type are then unknown.
	MappingChanged bool `json:"mapping_changed"`
	// RFC5780Server is the server whose RFC 5780 behaviour tests decided
	// filtering, or the first one tested when none could; absent without
	// such tests, or when two servers disagreed.
	RFC5780Server string `json:"rfc5780_server,omitempty"`
}

// FamilyResult is the whole diagnosis of one address family.
type FamilyResult struct {
	// Family is the address family.
	Family string `json:"family"`
	// Skipped is why the family was not tested; absent when it was.
	Skipped string `json:"skipped,omitempty"`
	// UDP is true when a UDP STUN reply arrived in this family.
	UDP bool `json:"udp"`
	// UDPLoss is the UDP loss measured in this family's run: of the sends
	// of answered transactions (Test I left out), how many went
	// unanswered, and how many loss probes went unanswered; null when
	// nothing was measured (UDP did not get out, or only plain servers
	// answered).
	UDPLoss *natclass.Loss `json:"udp_loss"`
	// NAT is the NAT behaviour in this family.
	NAT NAT `json:"nat"`
	// PublicAddresses are the distinct public addresses of the mapping
	// socket.
	PublicAddresses []string `json:"public_addresses"`
	// Verdict is the verdict for this family.
	Verdict natclass.Verdict `json:"verdict"`
	// Reasons are the diagnosis of this family in plain words.
	Reasons []string `json:"reasons"`
	// Tests are the STUN transactions of this family's diagnosis.
	Tests []Test `json:"tests"`
}

// Server is one STUN server as seen from one family.
type Server struct {
	// Name is the server as given (HOST:PORT, or a stun:/stuns: URI).
	Name string `json:"name"`
	// Family is the address family it was tested in.
	Family string `json:"family"`
	// Address is the resolved address; absent when resolution failed.
	Address string `json:"address,omitempty"`
	// Answered is true when the server replied to a plain Binding request.
	Answered bool `json:"answered"`
	// RTTMS is the round-trip time of that request in milliseconds: from
	// the send that was answered (the last one, when it was retransmitted:
	// loss does not inflate it, though a late reply to an earlier send makes
	// it a lower bound); null without a reply.
	RTTMS *float64 `json:"rtt_ms"`
	// RFC5780 is true when the server advertised a usable OTHER-ADDRESS
	// (another IP and port), false when it did not, null without a reply.
	RFC5780 natclass.Tri `json:"rfc5780"`
	// OtherAddress is OTHER-ADDRESS as advertised.
	OtherAddress string `json:"other_address,omitempty"`
	// ChangeRequest is how the server treated CHANGE-REQUEST: honoured,
	// ignored (answered from the wrong address), rejected (error reply) or
	// unconfirmed; absent when not tried.
	ChangeRequest string `json:"change_request,omitempty"`
	// Mapped is XOR-MAPPED-ADDRESS: our address as the server saw it.
	Mapped string `json:"mapped_address,omitempty"`
	// Error is why the server did not answer: resolution failure, error
	// response, no reply, or the run ended first.
	Error string `json:"error,omitempty"`
}

// Attempt is one attempt to get a STUN Binding request out of this network
// (an entry of the JSON "paths").
type Attempt struct {
	// Transport is the transport of the attempt.
	//
	// It is natclass.TransportUDP, TransportTCP or TransportTLS.
	Transport string `json:"transport"`
	// Server is the server as given.
	Server string `json:"server"`
	// Family is the address family.
	Family string `json:"family"`
	// Address is the destination IP:port.
	Address string `json:"address"`
	// Port is the destination port.
	Port int `json:"port"`
	// OK is true when a Binding response came back.
	OK bool `json:"ok"`
	// Reachable is true when packets got through: a UDP reply, or a
	// completed TCP handshake (even if TLS or STUN then failed).
	Reachable bool `json:"reachable"`
	// TimeMS is the time to the response, or until a TCP or TLS attempt
	// gave up, in milliseconds; null for a UDP request without a reply.
	TimeMS *float64 `json:"time_ms"`
	// ConnectMS is the TCP handshake time (TCP and TLS).
	ConnectMS *float64 `json:"connect_ms,omitempty"`
	// HandshakeMS is the TLS handshake time.
	HandshakeMS *float64 `json:"handshake_ms,omitempty"`
	// Mapped is XOR-MAPPED-ADDRESS of the response.
	Mapped string `json:"mapped_address,omitempty"`
	// CertError is why the TLS certificate failed verification.
	CertError string `json:"cert_error,omitempty"`
	// CertNotAfter is the expiry of the server's leaf TLS certificate
	// (RFC 3339).
	CertNotAfter *time.Time `json:"cert_not_after,omitempty"`
	// Error is why the attempt failed.
	Error string `json:"error,omitempty"`
}

// Test is one STUN transaction of the diagnosis.
type Test struct {
	// Name is which test: the plain Binding request (Test I), the RFC 5780
	// mapping and filtering tests, the CHANGE-REQUEST and change-port
	// controls, a fresh socket's resample, or hairpin.
	Name string `json:"name"`
	// Server is the server as given; empty for hairpin.
	Server string `json:"server"`
	// Local is the local socket address.
	Local string `json:"local,omitempty"`
	// Dest is the destination address.
	Dest string `json:"dest"`
	// ChangeRequest is the CHANGE-REQUEST flags sent; absent for none.
	ChangeRequest string `json:"change_request,omitempty"`
	// ResponsePort is the RESPONSE-PORT sent (RFC 5780 section 7.5): the
	// reply was asked for at this port of the request's public IP; absent
	// for none.
	ResponsePort int `json:"response_port,omitempty"`
	// Sent is the number of transmissions, retransmissions included.
	Sent int `json:"sent"`
	// Status is the outcome: not-run means unknown (never sent, or the run
	// ended first), never no reply.
	Status natclass.Status `json:"status"`
	// From is the source address of the reply.
	From string `json:"from,omitempty"`
	// Mapped is XOR-MAPPED-ADDRESS of the reply.
	Mapped string `json:"mapped,omitempty"`
	// RTTMS is the time from the first transmission to the reply, in
	// milliseconds; null without a reply.
	RTTMS *float64 `json:"rtt_ms"`
	// ErrorCode is the STUN error code of an error response.
	ErrorCode int `json:"error_code,omitempty"`
	// Error is why the request could not be sent.
	Error string `json:"error,omitempty"`
}

// Input is one family's observations and diagnosis, or why it was skipped.
type Input struct {
	Observations natclass.Observations
	// Result is natclass.Classify's answer, or for a skipped family a
	// Result with Family and Skipped set.
	Result natclass.Result
}

// Build assembles a Report from the per-family results and what natclass
// concluded over all of them (natclass.Combine over the inputs' Results,
// in the same order). It copies; it decides nothing.
func Build(version string, started time.Time, duration time.Duration, in []Input, all natclass.Overall) Report {
	r := Report{
		SchemaVersion: SchemaVersion,
		Tool:          "natcheck",
		Version:       version,
		StartedAt:     started.UTC(),
		DurationMS:    duration.Milliseconds(),
		Servers:       []Server{},
		Paths:         []Attempt{},
		Families:      []FamilyResult{},
		UDP:           all.UDP,
		Measured:      all.Measured,
		Verdict:       all.Verdict,
		NAT64:         all.NAT64,
	}
	for _, f := range in {
		fr := FamilyResult{Family: f.Result.Family, Skipped: f.Result.Skipped, Tests: []Test{}}
		if fr.Skipped == "" {
			res := f.Result
			fr.UDP = res.UDP
			fr.UDPLoss = res.UDPLoss
			fr.NAT = natOf(res)
			fr.PublicAddresses = addrStrings(res.PublicAddresses)
			fr.Verdict = res.Verdict
			fr.Reasons = res.Reasons
			fr.Tests = tests(f.Observations)
			r.Servers = append(r.Servers, servers(f.Observations, res)...)
			r.Paths = append(r.Paths, paths(f.Observations)...)
		}
		if fr.PublicAddresses == nil {
			fr.PublicAddresses = []string{}
		}
		if fr.Reasons == nil {
			fr.Reasons = []string{}
		}
		r.Families = append(r.Families, fr)
	}
	r.PublicAddresses, r.Reasons = []string{}, []string{}
	if all.Lead >= 0 && all.Lead < len(r.Families) {
		lead := r.Families[all.Lead]
		r.Family = lead.Family
		r.NAT = lead.NAT
		r.UDPLoss = lead.UDPLoss
		r.PublicAddresses = lead.PublicAddresses
		r.Reasons = lead.Reasons
	}
	return r
}

func natOf(res natclass.Result) NAT {
	return NAT{
		Mapping:                       res.Mapping,
		Filtering:                     res.Filtering,
		Type:                          res.Type,
		BehindNAT:                     res.BehindNAT,
		MappingVariesByDestination:    res.MappingVariesByDestination,
		PortPreservation:              res.PortPreservation,
		CGNAT:                         res.CGNAT,
		ALG:                           res.ALG,
		Hairpin:                       res.Hairpin,
		MappingChanged:                res.MappingChanged,
		HairpinTested:                 res.HairpinTested,
		RFC5780Server:                 res.RFC5780Server,
		TCP:                           res.TCP,
		TCPMappingEndpointIndependent: res.TCPMappingEndpointIndependent,
		TCPPortPreservation:           res.TCPPortPreservation,
	}
}

func addrStrings(as []netip.AddrPort) []string {
	out := make([]string, 0, len(as))
	for _, a := range as {
		out = append(out, a.String())
	}
	return out
}

func ms(d time.Duration) *float64 {
	v := float64(d.Microseconds()) / 1000
	return &v
}

func str(a netip.AddrPort) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func servers(obs natclass.Observations, res natclass.Result) []Server {
	var out []Server
	for i, s := range obs.Servers {
		sv := Server{Name: s.Name, Family: obs.Family, Address: str(s.Address), Error: s.ResolveError}
		b := s.Binding
		switch {
		case b.Replied():
			sv.Answered = true
			sv.RTTMS = ms(b.PathRTT())
			sv.Mapped = str(b.Mapped)
			sv.OtherAddress = str(b.Other)
			if i < len(res.Servers) {
				sv.RFC5780, sv.ChangeRequest = res.Servers[i].RFC5780, res.Servers[i].ChangeRequest
			}
		case b.Error != "":
			sv.Error = b.Error
		case b.Status == natclass.StatusErrorReply:
			sv.Error = "error response " + strconv.Itoa(b.ErrorCode)
		case b.Status == natclass.StatusNoReply:
			sv.Error = "no reply over UDP after " + strconv.Itoa(b.Sent) + " sends"
		case s.Address.IsValid():
			sv.Error = "not tried: the run ended first"
		}
		out = append(out, sv)
	}
	return out
}

func paths(obs natclass.Observations) []Attempt {
	var out []Attempt
	for _, s := range obs.Servers {
		b := s.Binding
		if !s.Address.IsValid() || (b.Sent == 0 && b.Error == "") {
			continue
		}
		p := Attempt{Transport: natclass.TransportUDP, Server: s.Name, Family: obs.Family, Address: s.Address.String(),
			Port: int(s.Address.Port()), OK: b.Replied(), Reachable: b.Status == natclass.StatusReply || b.Status == natclass.StatusErrorReply,
			Mapped: str(b.Mapped), Error: b.Error}
		if p.Reachable {
			p.TimeMS = ms(b.RTT)
		}
		switch {
		case b.Status == natclass.StatusNoReply:
			p.Error = "no reply after " + strconv.Itoa(b.Sent) + " sends"
		case b.Status == natclass.StatusErrorReply:
			p.Error = "error response " + strconv.Itoa(b.ErrorCode)
		case b.Status == natclass.StatusNotRun && p.Error == "":
			p.Error = "cut short by the timeout"
		}
		out = append(out, p)
	}
	for _, pp := range obs.Paths {
		p := Attempt{Transport: pp.Transport, Server: pp.Server, Family: obs.Family, Address: pp.Dest.String(), Port: int(pp.Dest.Port()),
			OK: pp.OK, Reachable: pp.Connected, Mapped: str(pp.Mapped), CertError: pp.CertError, Error: pp.Error}
		if pp.Total > 0 {
			p.TimeMS = ms(pp.Total)
		}
		if pp.Connected {
			p.ConnectMS = ms(pp.Connect)
		}
		if pp.Handshake > 0 {
			p.HandshakeMS = ms(pp.Handshake)
		}
		if !pp.CertNotAfter.IsZero() {
			t := pp.CertNotAfter
			p.CertNotAfter = &t
		}
		out = append(out, p)
	}
	return out
}

func tests(obs natclass.Observations) []Test {
	out := []Test{}
	add := func(name, server string, p natclass.Transaction) {
		if p.Sent == 0 && p.Error == "" {
			return
		}
		t := Test{
			Name: name, Server: server, Local: str(p.Local), Dest: str(p.Dest), Sent: p.Sent, Status: p.Status,
			From: str(p.From), Mapped: str(p.Mapped), ErrorCode: p.ErrorCode, Error: p.Error,
			ResponsePort: int(p.ResponsePort),
		}
		if p.ChangeIP || p.ChangePort {
			t.ChangeRequest = changeName(p)
		}
		if p.Status == natclass.StatusReply || p.Status == natclass.StatusErrorReply {
			t.RTTMS = ms(p.RTT)
		}
		out = append(out, t)
	}
	for _, s := range obs.Servers {
		add("binding", s.Name, s.Binding)
	}
	for _, t := range obs.RFC5780 {
		name := obs.Servers[t.Server].Name
		add("mapping-II", name, t.MappingII)
		add("mapping-III", name, t.MappingIII)
		add("filtering-I", name, t.FilteringI)
		add("filtering-II", name, t.FilteringII)
		add("filtering-III", name, t.FilteringIII)
		add("mapping-Pa", name, t.MappingPa)
		add("change-request-control", name, t.Control)
		add("change-port-control", name, t.ControlPort)
	}
	for _, p := range obs.Resample {
		add("resample", serverAt(obs, p.Dest), p)
	}
	if obs.Hairpin != nil {
		add("hairpin", "", *obs.Hairpin)
	}
	return out
}

// serverAt names the server a probe to dest went to: the server with that
// address, or the RFC 5780 server whose alternate address or port it is.
func serverAt(obs natclass.Observations, dest netip.AddrPort) string {
	for _, s := range obs.Servers {
		if s.Address == dest {
			return s.Name
		}
	}
	for _, t := range obs.RFC5780 {
		s := obs.Servers[t.Server]
		if o := s.Binding.Other; dest.Addr() == o.Addr() || dest.Port() == o.Port() {
			return s.Name
		}
	}
	return ""
}

func changeName(p natclass.Transaction) string {
	switch {
	case p.ChangeIP && p.ChangePort:
		return "change-ip|change-port"
	case p.ChangeIP:
		return "change-ip"
	}
	return "change-port"
}
