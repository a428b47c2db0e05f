package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/natcheck/natcheck/natclass"
)

// TURNResult is one TURN URL check in the JSON report: each step's timing
// and outcome. Times are milliseconds; a null time means the step did not
// run. It never holds a password, a secret or a credential derived from
// them.
type TURNResult struct {
	// URL is the TURN URL, without credentials.
	URL string `json:"url"`
	// Transport is the transport between client and server.
	//
	// It is natclass.TURNTransportUDP, TURNTransportTCP or
	// TURNTransportTLS.
	Transport string `json:"transport"`
	// Address is the server address connected to.
	Address string `json:"address,omitempty"`
	// Local is our end of the control connection.
	Local string `json:"local,omitempty"`
	// Auth is the kind of credentials: long-term, or rest (time-limited,
	// made from a shared secret).
	Auth string `json:"auth"`
	// User is the configured user name (never a password or a secret).
	User string `json:"user,omitempty"`
	// CredentialExpires is the expiry of REST credentials made from a
	// shared secret.
	CredentialExpires *time.Time `json:"credential_expires,omitempty"`
	// OK is true when data went through the relay and back (and the
	// end-to-end check, when run, connected).
	OK bool `json:"ok"`
	// FailedStep is the step that failed; absent when ok.
	FailedStep string `json:"failed_step,omitempty"`
	// ErrorCode is the STUN error code of the failing response.
	ErrorCode int `json:"error_code,omitempty"`
	// Error is what went wrong.
	Error string `json:"error,omitempty"`
	// Hint is what to do about it.
	Hint string `json:"hint,omitempty"`
	// Warnings are the warnings that never fail a check: a private relayed
	// address, loss, a certificate near expiry, --insecure.
	Warnings []string `json:"warnings"`
	// ConnectMS is the TCP connect time; null for UDP or when not reached.
	ConnectMS *float64 `json:"connect_ms"`
	// TLSHandshakeMS is the TLS handshake time; null unless turns:.
	TLSHandshakeMS *float64 `json:"tls_handshake_ms"`
	// TLS is the TLS session and certificate, for turns:.
	TLS *natclass.TLSInfo `json:"tls,omitempty"`
	// AllocateMS is the time of the whole Allocate exchange, the 401
	// challenge included.
	AllocateMS *float64 `json:"allocate_ms"`
	// AllocateRTTMS is the round trip of the authenticated Allocate
	// request.
	AllocateRTTMS *float64 `json:"allocate_rtt_ms"`
	// Realm is the REALM of the server.
	Realm string `json:"realm,omitempty"`
	// Family is the address family of the transport to the server; absent
	// when the name did not resolve.
	//
	// It is ipv4 or ipv6.
	Family string `json:"family,omitempty"`
	// RelayedAddress is XOR-RELAYED-ADDRESS: the relay's address for peers.
	RelayedAddress string `json:"relayed_address,omitempty"`
	// RelayedFamily is the family of the relayed address (RFC 6156); absent
	// without an allocation.
	//
	// It is ipv4 or ipv6.
	RelayedFamily string `json:"relayed_family,omitempty"`
	// MappedAddress is XOR-MAPPED-ADDRESS of the Allocate response.
	MappedAddress string `json:"mapped_address,omitempty"`
	// LifetimeS is the allocation lifetime granted, in seconds.
	LifetimeS int `json:"lifetime_s,omitempty"`
	// PermissionMS is the CreatePermission round trip.
	PermissionMS *float64 `json:"permission_ms"`
	// Data is the packets sent through the relay to a peer socket and back.
	Data *TURNData `json:"data,omitempty"`
	// Released is true when the server confirmed the release, false when
	// it refused, null when it did not answer or the step did not run.
	Released natclass.Tri `json:"released"`
	// EndToEnd is two relay-only ICE agents connecting through the server,
	// when run.
	EndToEnd *TURNEndToEnd `json:"end_to_end,omitempty"`
	// Soak is the long run of natcheck turn --duration, when run: the
	// allocation kept alive with a steady packet stream through the relay.
	Soak *TURNSoak `json:"soak,omitempty"`
	// DurationMS is the duration of the check.
	DurationMS *float64 `json:"duration_ms"`
}

// TURNData is the data sent through the relay to a peer socket and back.
type TURNData struct {
	// Peer is the peer as the relay saw it.
	Peer string `json:"peer"`
	// Sent is the number of packets sent.
	Sent int `json:"sent"`
	// Received is the number of packets that came back.
	Received int `json:"received"`
	// Loss is the fraction lost, 0 to 1.
	Loss float64 `json:"loss"`
	// RTTMinMS is the minimum round trip through the relay; null when
	// nothing came back.
	RTTMinMS *float64 `json:"rtt_min_ms"`
	// RTTAvgMS is the average round trip; null when nothing came back.
	RTTAvgMS *float64 `json:"rtt_avg_ms"`
	// RTTMaxMS is the maximum round trip; null when nothing came back.
	RTTMaxMS *float64 `json:"rtt_max_ms"`
}

// TURNSoak is an allocation kept alive for natcheck turn --duration, with
// two packet streams through the relay to local peer sockets that echo
// them: ChannelData over a bound channel, and Send indications.
type TURNSoak struct {
	// DurationS is the duration asked for, in seconds.
	DurationS float64 `json:"duration_s"`
	// ElapsedS is how long the soak ran, in seconds.
	ElapsedS float64 `json:"elapsed_s"`
	// Interrupted is true when the soak ended early (Ctrl-C, --timeout).
	Interrupted bool `json:"interrupted"`
	// MaxLoss is the loss above which the soak fails, 0 to 1 (--max-loss).
	MaxLoss float64 `json:"max_loss"`
	// RefreshFailures is the number of refreshes that failed.
	RefreshFailures int `json:"refresh_failures"`
	// Refreshes are the client's refresh transactions during the soak, in
	// order, and refreshes that were due and never succeeded.
	Refreshes []TURNRefresh `json:"refreshes"`
	// Minutes are the packets by minute of sending; the last minute may be
	// shorter.
	Minutes []TURNSoakMinute `json:"minutes"`
	// Total is the packets of the whole soak.
	Total TURNSoakStats `json:"total"`
}

// TURNRefresh is one refresh during a soak.
type TURNRefresh struct {
	// Kind is what was refreshed.
	//
	// It is allocation (Refresh), permission (CreatePermission) or channel
	// (ChannelBind).
	Kind string `json:"kind"`
	// AtS is when the answer came, in seconds from the start of the soak.
	AtS float64 `json:"at_s"`
	// OK is true when the server accepted the refresh.
	OK bool `json:"ok"`
	// Code is the STUN error code of a refusal.
	Code int `json:"code,omitempty"`
	// Error is what went wrong: a refusal, or no successful refresh
	// before the allocation or permission expired.
	Error string `json:"error,omitempty"`
	// RTTMS is the round trip of the request; null without an answer.
	RTTMS *float64 `json:"rtt_ms"`
}

// TURNSoakStats are the packets of a soak over a span of time.
type TURNSoakStats struct {
	// Sent is the number of packets sent, both streams.
	Sent int `json:"sent"`
	// Received is the number of packets that came back.
	Received int `json:"received"`
	// Loss is the fraction lost, 0 to 1.
	Loss float64 `json:"loss"`
	// ChannelSent is the packets sent as ChannelData.
	ChannelSent int `json:"channel_sent"`
	// ChannelReceived is the ChannelData packets that came back.
	ChannelReceived int `json:"channel_received"`
	// IndicationSent is the packets sent as Send indications.
	IndicationSent int `json:"indication_sent"`
	// IndicationReceived is the Send indication packets that came back.
	IndicationReceived int `json:"indication_received"`
	// RTTP50MS is the median round trip; null when nothing came back.
	RTTP50MS *float64 `json:"rtt_p50_ms"`
	// RTTP95MS is the 95th percentile round trip (nearest rank).
	RTTP95MS *float64 `json:"rtt_p95_ms"`
	// RTTP99MS is the 99th percentile round trip (nearest rank).
	RTTP99MS *float64 `json:"rtt_p99_ms"`
	// JitterMS is the mean absolute difference between the round trips of
	// consecutive packets of a stream (RFC 3550's D, not smoothed); null
	// without two consecutive packets back.
	JitterMS *float64 `json:"jitter_ms"`
}

// TURNSoakMinute is one minute of a soak: its number and its packets.
type TURNSoakMinute struct {
	// Minute counts from 0.
	Minute int `json:"minute"`
	TURNSoakStats
}

// TURNEndToEnd is two relay-only ICE agents connecting through the server.
type TURNEndToEnd struct {
	// Connected is true when the two agents connected.
	Connected bool `json:"connected"`
	// TimeMS is the time to connect; null when they did not.
	TimeMS *float64 `json:"time_ms"`
	// Local is the local candidate of the selected pair.
	Local string `json:"local,omitempty"`
	// Remote is the remote candidate of the selected pair.
	Remote string `json:"remote,omitempty"`
	// Sent is the number of packets sent between the agents.
	Sent int `json:"sent"`
	// Received is the number of packets received.
	Received int `json:"received"`
	// Error is why they did not connect.
	Error string `json:"error,omitempty"`
}

// Candidates are the ICE candidates gathered from here, as a browser would
// gather them, and each server's part.
type Candidates struct {
	// Gathered is every candidate gathered.
	Gathered []Candidate `json:"gathered"`
	// Servers is each STUN or TURN server's part in gathering.
	Servers []CandidateServer `json:"servers"`
	// DurationMS is the duration of gathering, in milliseconds.
	DurationMS int64 `json:"duration_ms"`
}

// Candidate is one ICE candidate.
type Candidate struct {
	// Type is the candidate type (RFC 8445 section 5.1.1).
	//
	// It is host, srflx, prflx or relay.
	Type string `json:"type"`
	// Protocol is the candidate transport.
	//
	// It is udp or tcp.
	Protocol string `json:"protocol"`
	// Address is the candidate IP address.
	Address string `json:"address"`
	// Family is the address's family.
	//
	// It is ipv4 or ipv6.
	Family string `json:"family,omitempty"`
	// Port is the candidate port.
	Port int `json:"port"`
	// RelatedAddress is the related address (the base of a srflx or relay
	// candidate).
	RelatedAddress string `json:"related_address,omitempty"`
	// RelatedPort is the related port.
	RelatedPort int `json:"related_port,omitempty"`
	// Priority is the ICE priority.
	Priority uint32 `json:"priority"`
	// Server is the URL (without credentials) that produced the candidate;
	// absent for host candidates.
	Server string `json:"server,omitempty"`
	// RelayProtocol is the transport to the TURN server, for relay
	// candidates.
	//
	// It is udp, tcp or tls.
	RelayProtocol string `json:"relay_protocol,omitempty"`
	// TimeMS is the time from the start of gathering, in milliseconds.
	TimeMS float64 `json:"time_ms"`
}

// CandidateServer says whether a server produced what it should: srflx
// from a STUN server, relay from a TURN server.
type CandidateServer = natclass.CandidateServer

// TURNReport is the result of `natcheck turn` (--json).
//
// It is the JSON schema and the input of its renderers.
type TURNReport struct {
	// SchemaVersion is the version of this schema (shared with the main
	// report).
	SchemaVersion int `json:"schema_version"`
	// Tool is always "natcheck".
	Tool string `json:"tool"`
	// Version is the version of natcheck.
	Version string `json:"version"`
	// StartedAt is when the run started (RFC 3339, UTC).
	StartedAt time.Time `json:"started_at"`
	// DurationMS is the duration of the run in milliseconds.
	DurationMS int64 `json:"duration_ms"`
	// OK is true when there were checks and every one passed.
	OK bool `json:"ok"`
	// RelayVerified are the relay transports proven from here, best first.
	RelayVerified []string `json:"relay_verified"`
	// TURN is one check per TURN URL.
	TURN []TURNResult `json:"turn"`
}

// BuildTURN assembles the report of `natcheck turn` from its checks and
// the relay transports they verified (natclass.VerifiedRelays).
func BuildTURN(version string, started time.Time, duration time.Duration, checks []natclass.TURNCheck, verified []string) TURNReport {
	r := TURNReport{
		SchemaVersion: SchemaVersion, Tool: "natcheck", Version: version,
		StartedAt: started.UTC(), DurationMS: duration.Milliseconds(),
		OK: len(checks) > 0, TURN: TURNResults(checks),
		RelayVerified: verified,
	}
	if r.RelayVerified == nil {
		r.RelayVerified = []string{}
	}
	for _, c := range checks {
		r.OK = r.OK && c.OK
	}
	return r
}

// AddTURN puts TURN checks and gathered candidates into r. The verdict is
// natclass's to change (natclass.FoldTURN, before this).
func (r *Report) AddTURN(checks []natclass.TURNCheck, g *natclass.Gathering) {
	if len(checks) > 0 {
		r.TURN = TURNResults(checks)
	}
	if g != nil {
		r.Candidates = CandidatesOf(*g)
	}
}

// TURNResults converts checks to their JSON shape.
func TURNResults(checks []natclass.TURNCheck) []TURNResult {
	out := make([]TURNResult, 0, len(checks))
	for _, c := range checks {
		t := TURNResult{
			URL: c.URL, Transport: c.Transport, Address: str(c.Server), Local: str(c.Local),
			Auth: c.Auth, User: c.User, OK: c.OK, FailedStep: c.FailedStep, ErrorCode: c.ErrorCode,
			Error: c.Error, Hint: c.Hint, Warnings: c.Warnings, TLS: c.TLS,
			ConnectMS: msIf(c.Connect), TLSHandshakeMS: msIf(c.TLSHandshake),
			AllocateMS: msIf(c.Allocate), AllocateRTTMS: msIf(c.AllocateRTT), Realm: c.Realm,
			RelayedAddress: str(c.Relayed), MappedAddress: str(c.Mapped), LifetimeS: int(c.Lifetime.Seconds()),
			Family: c.Family, RelayedFamily: c.RelayedFamily,
			PermissionMS: msIf(c.Permission), Released: c.Released, DurationMS: msIf(c.Duration),
		}
		if t.Warnings == nil {
			t.Warnings = []string{}
		}
		if !c.CredentialExpires.IsZero() {
			e := c.CredentialExpires.UTC()
			t.CredentialExpires = &e
		}
		if d := c.Data; d != nil {
			t.Data = &TURNData{Peer: str(d.Peer), Sent: d.Sent, Received: d.Received, Loss: d.Loss()}
			if d.Received > 0 {
				t.Data.RTTMinMS, t.Data.RTTAvgMS, t.Data.RTTMaxMS = ms(d.RTTMin), ms(d.RTTAvg), ms(d.RTTMax)
			}
		}
		if sk := c.Soak; sk != nil {
			t.Soak = soakOf(*sk)
		}
		if e := c.EndToEnd; e != nil {
			t.EndToEnd = &TURNEndToEnd{Connected: e.Connected, Local: e.Local, Remote: e.Remote, Sent: e.Sent, Received: e.Received, Error: e.Error}
			if e.Connected {
				t.EndToEnd.TimeMS = ms(e.Time)
			}
		}
		out = append(out, t)
	}
	return out
}

func soakOf(sk natclass.TURNSoak) *TURNSoak {
	s := &TURNSoak{
		DurationS: sk.Planned.Seconds(), ElapsedS: sk.Elapsed.Seconds(), Interrupted: sk.Interrupted,
		MaxLoss: sk.MaxLoss, RefreshFailures: sk.RefreshFailures(),
		Refreshes: []TURNRefresh{}, Minutes: []TURNSoakMinute{}, Total: soakStatsOf(sk.Total),
	}
	for _, r := range sk.Refreshes {
		s.Refreshes = append(s.Refreshes, TURNRefresh{Kind: r.Kind, AtS: r.At.Seconds(), OK: r.OK, Code: r.Code, Error: r.Error, RTTMS: msIf(r.RTT)})
	}
	for _, m := range sk.Minutes {
		s.Minutes = append(s.Minutes, TURNSoakMinute{Minute: m.Minute, TURNSoakStats: soakStatsOf(m.SoakStats)})
	}
	return s
}

func soakStatsOf(st natclass.SoakStats) TURNSoakStats {
	t := TURNSoakStats{
		Sent: st.Sent, Received: st.Received, Loss: st.Loss(),
		ChannelSent: st.ChannelSent, ChannelReceived: st.ChannelReceived,
		IndicationSent: st.IndicationSent, IndicationReceived: st.IndicationReceived,
	}
	if st.Received > 0 {
		t.RTTP50MS, t.RTTP95MS, t.RTTP99MS = ms(st.RTTP50), ms(st.RTTP95), ms(st.RTTP99)
		t.JitterMS = msIf(st.Jitter)
	}
	return t
}

// CandidatesOf converts a gathering to its JSON shape.
func CandidatesOf(g natclass.Gathering) *Candidates {
	c := &Candidates{Gathered: []Candidate{}, Servers: g.Servers, DurationMS: g.Duration.Milliseconds()}
	if c.Servers == nil {
		c.Servers = []CandidateServer{}
	}
	for _, x := range g.Candidates {
		c.Gathered = append(c.Gathered, Candidate{
			Type: x.Type, Protocol: x.Protocol, Address: addrStr(x.Address), Family: x.Family, Port: x.Port,
			RelatedAddress: addrStr(x.RelatedAddr), RelatedPort: x.RelatedPort, Priority: x.Priority,
			Server: x.Server, RelayProtocol: x.RelayProtocol, TimeMS: *ms(x.Time),
		})
	}
	return c
}

func msIf(d time.Duration) *float64 {
	if d <= 0 {
		return nil
	}
	return ms(d)
}

func addrStr(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// WriteTURNJSON writes r as indented JSON, or as one line when line is set.
func WriteTURNJSON(w io.Writer, r TURNReport, line bool) error {
	enc := json.NewEncoder(w)
	if !line {
		enc.SetIndent("", "  ")
	}
	return enc.Encode(r)
}

// WriteTURNText writes the report of `natcheck turn` for a person: one line
// of outcome, the table of checks, and what went wrong with what to do.
func WriteTURNText(w io.Writer, r TURNReport, o TextOptions) error {
	p := newPalette(o.Color)
	var b bytes.Buffer
	switch {
	case r.OK:
		fmt.Fprintln(&b, p.good.Sprint("Every TURN check passed: relay verified over "+transportList(r.RelayVerified)))
	case len(r.RelayVerified) > 0:
		fmt.Fprintln(&b, p.warn.Sprint("Some TURN checks failed; relay verified over "+transportList(r.RelayVerified)))
	default:
		fmt.Fprintln(&b, p.bad.Sprint("No TURN check passed: no relay works from here"))
	}
	if err := writeTURN(&b, p, r.TURN, nil); err != nil {
		return err
	}
	fmt.Fprintln(&b)
	name := "natcheck"
	if r.Version != "" {
		name += " " + r.Version
	}
	fmt.Fprintf(&b, "%s turn · %d ms\n", name, r.DurationMS)
	_, err := w.Write(b.Bytes())
	return err
}

func transportList(ts []string) string {
	if len(ts) == 0 {
		return "none"
	}
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = strings.ToUpper(strings.TrimPrefix(t, "turn-"))
	}
	return strings.Join(out, ", ")
}

// writeTURN renders the TURN checks and the candidates, each section only
// when there is something in it.
func writeTURN(b *bytes.Buffer, p palette, checks []TURNResult, c *Candidates) error {
	if len(checks) > 0 {
		fmt.Fprintln(b)
		fmt.Fprintln(b, "TURN")
		rows := make([][]string, 0, len(checks))
		for _, t := range checks {
			rows = append(rows, turnRow(p, t))
		}
		head := []string{"server", "result", "connect ms", "TLS", "allocate ms", "relayed", "permission ms", "data back", "RTT ms", "end to end"}
		if err := renderTable(b, head, rows); err != nil {
			return err
		}
		for _, t := range checks {
			if t.Error != "" {
				fmt.Fprintf(b, "  %s: %s\n", t.URL, p.bad.Sprint(t.Error))
				if t.Hint != "" {
					fmt.Fprintf(b, "    what to do: %s\n", t.Hint)
				}
			}
			for _, wn := range t.Warnings {
				fmt.Fprintf(b, "  %s: %s\n", t.URL, p.warn.Sprint("warning: "+wn))
			}
			if e := t.EndToEnd; e != nil && e.Connected {
				fmt.Fprintf(b, "  %s: end to end: %s <-> %s\n", t.URL, e.Local, e.Remote)
			}
		}
		for _, t := range checks {
			if t.Soak != nil {
				if err := writeSoak(b, p, t.URL, *t.Soak); err != nil {
					return err
				}
			}
		}
	}
	if c != nil {
		fmt.Fprintln(b)
		fmt.Fprintln(b, "ICE candidates")
		if len(c.Gathered) == 0 {
			fmt.Fprintln(b, "  "+p.bad.Sprint("none gathered"))
		} else {
			rows := make([][]string, 0, len(c.Gathered))
			for _, x := range c.Gathered {
				rel := "-"
				if x.RelatedAddress != "" {
					rel = joinHostPort(x.RelatedAddress, x.RelatedPort)
				}
				rows = append(rows, []string{x.Type, x.Protocol, joinHostPort(x.Address, x.Port), rel,
					strconv.FormatUint(uint64(x.Priority), 10), dash(x.Server), dash(x.RelayProtocol), strconv.FormatFloat(x.TimeMS, 'f', 1, 64)})
			}
			head := []string{"type", "protocol", "address", "related", "priority", "server", "relay over", "ms"}
			if err := renderTable(b, head, rows); err != nil {
				return err
			}
		}
		if len(c.Servers) > 0 {
			rows := make([][]string, 0, len(c.Servers))
			for _, s := range c.Servers {
				res := p.good.Sprintf("%d %s", s.Produced, s.Want)
				if s.Produced == 0 {
					res = p.bad.Sprint("no " + s.Want + ": " + s.Error)
				}
				rows = append(rows, []string{s.URL, res})
			}
			if err := renderTable(b, []string{"server", "produced"}, rows); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeSoak renders one server's soak: a summary line, the refreshes by
// kind (each failure on its own line) and a row per minute.
func writeSoak(b *bytes.Buffer, p palette, url string, s TURNSoak) error {
	fmt.Fprintln(b)
	state := ""
	if s.Interrupted {
		state = p.warn.Sprint(" (interrupted)")
	}
	fmt.Fprintf(b, "TURN soak %s: %s of %s%s\n", url, time.Duration(s.ElapsedS*float64(time.Second)).Round(time.Second),
		time.Duration(s.DurationS*float64(time.Second)).Round(time.Second), state)
	byKind := map[string][2]int{}
	for _, r := range s.Refreshes {
		n := byKind[r.Kind]
		if r.OK {
			n[0]++
		} else {
			n[1]++
		}
		byKind[r.Kind] = n
	}
	var parts []string
	for _, k := range []string{natclass.RefreshAllocation, natclass.RefreshPermission, natclass.RefreshChannel} {
		n := byKind[k]
		part := fmt.Sprintf("%s %d ok", k, n[0])
		if n[1] > 0 {
			part += p.bad.Sprintf(", %d failed", n[1])
		}
		parts = append(parts, part)
	}
	fmt.Fprintf(b, "  refreshes: %s\n", strings.Join(parts, "; "))
	for _, r := range s.Refreshes {
		if !r.OK {
			fmt.Fprintf(b, "  %s at %.1f s: %s\n", r.Kind, r.AtS, p.bad.Sprint(r.Error))
		}
	}
	loss := fmt.Sprintf("%.2f%%", 100*s.Total.Loss)
	if s.Total.Loss > s.MaxLoss {
		loss = p.bad.Sprint(loss)
	}
	fmt.Fprintf(b, "  packets: %d sent (%d ChannelData, %d Send indications), %d back, loss %s (limit %.2f%%)\n",
		s.Total.Sent, s.Total.ChannelSent, s.Total.IndicationSent, s.Total.Received, loss, 100*s.MaxLoss)
	rows := make([][]string, 0, len(s.Minutes)+1)
	row := func(name string, t TURNSoakStats) []string {
		return []string{name, strconv.Itoa(t.Sent), strconv.Itoa(t.Received), fmt.Sprintf("%.2f%%", 100*t.Loss),
			msStr(t.RTTP50MS), msStr(t.RTTP95MS), msStr(t.RTTP99MS), msStr(t.JitterMS)}
	}
	for _, m := range s.Minutes {
		rows = append(rows, row(fmt.Sprintf("%d-%d", m.Minute, m.Minute+1), TURNSoakStats{Sent: m.Sent, Received: m.Received, Loss: m.Loss,
			RTTP50MS: m.RTTP50MS, RTTP95MS: m.RTTP95MS, RTTP99MS: m.RTTP99MS, JitterMS: m.JitterMS}))
	}
	rows = append(rows, row("all", s.Total))
	return renderTable(b, []string{"minute", "sent", "back", "loss", "RTT p50 ms", "p95 ms", "p99 ms", "jitter ms"}, rows)
}

func msStr(v *float64) string {
	if v == nil {
		return "-"
	}
	return strconv.FormatFloat(*v, 'f', 2, 64)
}

func joinHostPort(a string, port int) string {
	if strings.Contains(a, ":") {
		return "[" + a + "]:" + strconv.Itoa(port)
	}
	return a + ":" + strconv.Itoa(port)
}

func turnRow(p palette, t TURNResult) []string {
	result := p.good.Sprint("ok")
	if !t.OK {
		result = p.bad.Sprint("failed: " + dash(t.FailedStep))
		if t.ErrorCode != 0 {
			result = p.bad.Sprintf("failed: %s %d", t.FailedStep, t.ErrorCode)
		}
	}
	tlsCol := "-"
	if t.TLS != nil {
		switch {
		case t.TLS.Verified:
			tlsCol = p.good.Sprintf("%s, verified, expires %s", t.TLS.Version, t.TLS.NotAfter.Format(time.DateOnly))
		case t.TLS.Version != "":
			tlsCol = p.warn.Sprintf("%s, NOT verified, expires %s", t.TLS.Version, t.TLS.NotAfter.Format(time.DateOnly))
		default:
			tlsCol = p.bad.Sprint("failed")
		}
		if t.TLSHandshakeMS != nil {
			tlsCol += " (" + rtt(t.TLSHandshakeMS) + " ms)"
		}
	}
	data := "-"
	if d := t.Data; d != nil {
		data = fmt.Sprintf("%d/%d", d.Received, d.Sent)
		switch {
		case d.Received == 0:
			data = p.bad.Sprint(data)
		case d.Received < d.Sent:
			data = p.warn.Sprint(data)
		default:
			data = p.good.Sprint(data)
		}
	}
	dataRTT := "-"
	if d := t.Data; d != nil && d.RTTAvgMS != nil {
		dataRTT = rtt(d.RTTMinMS) + "/" + rtt(d.RTTAvgMS) + "/" + rtt(d.RTTMaxMS)
	}
	e2e := "-"
	if e := t.EndToEnd; e != nil {
		if e.Connected {
			e2e = p.good.Sprint("connected in " + rtt(e.TimeMS) + " ms")
		} else {
			e2e = p.bad.Sprint("failed")
		}
	}
	return []string{t.URL, result, rtt(t.ConnectMS), tlsCol, rtt(t.AllocateMS), dash(t.RelayedAddress), rtt(t.PermissionMS), data, dataRTT, e2e}
}
