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
const SchemaVersion = 1

// Report is the result of one natcheck run. It is the JSON schema and the
// input of every renderer.
type Report struct {
	SchemaVersion int       `json:"schema_version"`
	Tool          string    `json:"tool"`
	Version       string    `json:"version"`
	StartedAt     time.Time `json:"started_at"`
	DurationMS    int64     `json:"duration_ms"`
	// UDP is true when any UDP STUN reply arrived, in any family.
	UDP bool `json:"udp"`
	// UDPLoss is the UDP loss measured in the leading family's run (see
	// Family); null when nothing was measured.
	UDPLoss *natclass.Loss `json:"udp_loss"`
	// Family names the address family that NAT, PublicAddresses, Verdict and
	// Reasons describe: IPv4 when it was tested, else IPv6. Every family's
	// own result is in Families.
	Family          string           `json:"family"`
	NAT             NAT              `json:"nat"`
	PublicAddresses []string         `json:"public_addresses"`
	Verdict         natclass.Verdict `json:"verdict"`
	Reasons         []string         `json:"reasons"`
	// Servers lists every server of every family tested.
	Servers []Server `json:"servers"`
	// Paths lists every attempt to get a STUN request out, per transport:
	// UDP from the UDP tests, TCP and TLS from the path probes.
	Paths    []Path         `json:"paths"`
	Families []FamilyResult `json:"families"`
	// Measured is false when no server answered at all, over UDP, TCP or
	// TLS (exit code 3).
	Measured bool `json:"measured"`
	// TURN holds one check per TURN URL given; see AddTURN.
	TURN []TURNResult `json:"turn,omitempty"`
	// Candidates are the ICE candidates gathered when TURN servers were
	// given.
	Candidates *Candidates `json:"candidates,omitempty"`
}

// NAT is the NAT behaviour of one family.
type NAT struct {
	Mapping                    natclass.Behavior `json:"mapping"`
	Filtering                  natclass.Behavior `json:"filtering"`
	Type                       natclass.Type     `json:"type"`
	BehindNAT                  natclass.Tri      `json:"behind_nat"`
	MappingVariesByDestination natclass.Tri      `json:"mapping_varies_by_destination"`
	PortPreservation           natclass.Tri      `json:"port_preservation"`
	CGNAT                      natclass.Tri      `json:"cgnat"`
	ALG                        natclass.Tri      `json:"alg"`
	Hairpin                    natclass.Tri      `json:"hairpin"`
	// TCP is true when a TCP connection to some server got out.
	TCP                           natclass.Tri `json:"tcp"`
	TCPMappingEndpointIndependent natclass.Tri `json:"tcp_mapping_endpoint_independent"`
	TCPPortPreservation           natclass.Tri `json:"tcp_port_preservation"`
	// HairpinTested is true when the hairpinning test was sent
	// (--hairpin), whether or not it finished.
	HairpinTested bool `json:"hairpin_tested"`
	// MappingChanged is true when one socket's public address changed
	// during the test in a way no mapping behaviour explains, on a second,
	// fresh socket too: mapping and type are then unknown.
	MappingChanged bool `json:"mapping_changed"`
	// RFC5780Server names the server whose behaviour tests decided filtering.
	RFC5780Server string `json:"rfc5780_server,omitempty"`
}

// FamilyResult is the whole diagnosis of one address family.
type FamilyResult struct {
	Family string `json:"family"`
	// Skipped says why the family was not tested; empty when it was.
	Skipped string `json:"skipped,omitempty"`
	UDP     bool   `json:"udp"`
	// UDPLoss is the UDP loss measured in this family's run: of the sends
	// of answered transactions (Test I left out), how many went
	// unanswered, and how many loss probes went unanswered; null when
	// nothing was measured (UDP did not get out, or only plain servers
	// answered).
	UDPLoss         *natclass.Loss   `json:"udp_loss"`
	NAT             NAT              `json:"nat"`
	PublicAddresses []string         `json:"public_addresses"`
	Verdict         natclass.Verdict `json:"verdict"`
	Reasons         []string         `json:"reasons"`
	Tests           []Test           `json:"tests"`
}

// Server is one STUN server as seen from one family.
type Server struct {
	Name    string `json:"name"`
	Family  string `json:"family"`
	Address string `json:"address,omitempty"`
	// Answered is true when the server replied to a plain Binding request.
	Answered bool `json:"answered"`
	// RTTMS is the round-trip time of that request; null without a reply.
	RTTMS *float64 `json:"rtt_ms"`
	// RFC5780 is true when the server advertised a usable OTHER-ADDRESS
	// (different IP and port), false when it did not, null without reply.
	RFC5780      natclass.Tri `json:"rfc5780"`
	OtherAddress string       `json:"other_address,omitempty"`
	// ChangeRequest says how the server treated CHANGE-REQUEST: honoured,
	// ignored (answered from the wrong address), rejected (error reply),
	// unconfirmed, or empty when not tried.
	ChangeRequest string `json:"change_request,omitempty"`
	Mapped        string `json:"mapped_address,omitempty"`
	Error         string `json:"error,omitempty"`
}

// Path is one attempt to get a STUN Binding request out of this network.
type Path struct {
	Transport string `json:"transport"` // udp, tcp or tls
	Server    string `json:"server"`
	Family    string `json:"family"`
	Address   string `json:"address"`
	Port      int    `json:"port"`
	// OK is true when a Binding response came back.
	OK bool `json:"ok"`
	// Reachable is true when packets got through: a UDP reply, or a
	// completed TCP handshake (even if TLS or STUN then failed).
	Reachable bool `json:"reachable"`
	// TimeMS is the time to the response, or until the attempt gave up.
	TimeMS      *float64 `json:"time_ms"`
	ConnectMS   *float64 `json:"connect_ms,omitempty"`
	HandshakeMS *float64 `json:"handshake_ms,omitempty"`
	Mapped      string   `json:"mapped_address,omitempty"`
	// CertError is set when the TLS certificate failed verification.
	CertError    string     `json:"cert_error,omitempty"`
	CertNotAfter *time.Time `json:"cert_not_after,omitempty"`
	Error        string     `json:"error,omitempty"`
}

// Test is one STUN transaction of the diagnosis.
type Test struct {
	Name          string          `json:"name"`
	Server        string          `json:"server"`
	Local         string          `json:"local,omitempty"`
	Dest          string          `json:"dest"`
	ChangeRequest string          `json:"change_request,omitempty"`
	ResponsePort  int             `json:"response_port,omitempty"`
	Sent          int             `json:"sent"`
	Status        natclass.Status `json:"status"`
	From          string          `json:"from,omitempty"`
	Mapped        string          `json:"mapped,omitempty"`
	RTTMS         *float64        `json:"rtt_ms"`
	ErrorCode     int             `json:"error_code,omitempty"`
	Error         string          `json:"error,omitempty"`
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
		Paths:         []Path{},
		Families:      []FamilyResult{},
		UDP:           all.UDP,
		Measured:      all.Measured,
		Verdict:       all.Verdict,
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
			sv.RTTMS = ms(b.RTT)
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

func paths(obs natclass.Observations) []Path {
	var out []Path
	for _, s := range obs.Servers {
		b := s.Binding
		if !s.Address.IsValid() || (b.Sent == 0 && b.Error == "") {
			continue
		}
		p := Path{Transport: natclass.TransportUDP, Server: s.Name, Family: obs.Family, Address: s.Address.String(),
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
		p := Path{Transport: pp.Transport, Server: pp.Server, Family: obs.Family, Address: pp.Dest.String(), Port: int(pp.Dest.Port()),
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
	add := func(name, server string, p natclass.Probe) {
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

func changeName(p natclass.Probe) string {
	switch {
	case p.ChangeIP && p.ChangePort:
		return "change-ip|change-port"
	case p.ChangeIP:
		return "change-ip"
	}
	return "change-port"
}
