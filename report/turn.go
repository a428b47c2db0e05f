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
	URL       string `json:"url"`
	Transport string `json:"transport"` // udp, tcp or tls
	Address   string `json:"address,omitempty"`
	Local     string `json:"local,omitempty"`
	// Auth is "long-term" or "rest"; User the configured user name.
	Auth              string     `json:"auth"`
	User              string     `json:"user,omitempty"`
	CredentialExpires *time.Time `json:"credential_expires,omitempty"`
	// OK is true when data came back through the relay (and the end-to-end
	// check, when run, connected).
	OK         bool   `json:"ok"`
	FailedStep string `json:"failed_step,omitempty"`
	ErrorCode  int    `json:"error_code,omitempty"`
	Error      string `json:"error,omitempty"`
	Hint       string `json:"hint,omitempty"`
	// Warnings never fail a check: a private relayed address, loss, a
	// certificate near expiry, --insecure.
	Warnings       []string          `json:"warnings"`
	ConnectMS      *float64          `json:"connect_ms"`
	TLSHandshakeMS *float64          `json:"tls_handshake_ms"`
	TLS            *natclass.TLSInfo `json:"tls,omitempty"`
	// AllocateMS is the whole Allocate exchange, the 401 challenge
	// included; AllocateRTTMS the authenticated request's round trip.
	AllocateMS     *float64  `json:"allocate_ms"`
	AllocateRTTMS  *float64  `json:"allocate_rtt_ms"`
	Realm          string    `json:"realm,omitempty"`
	RelayedAddress string    `json:"relayed_address,omitempty"`
	MappedAddress  string    `json:"mapped_address,omitempty"`
	LifetimeS      int       `json:"lifetime_s,omitempty"`
	PermissionMS   *float64  `json:"permission_ms"`
	Data           *TURNData `json:"data,omitempty"`
	// Released is true when the server confirmed the release, false when
	// it refused, null when it did not answer or the step did not run.
	Released   natclass.Tri  `json:"released"`
	EndToEnd   *TURNEndToEnd `json:"end_to_end,omitempty"`
	DurationMS *float64      `json:"duration_ms"`
}

// TURNData is the data sent through the relay to a peer socket and back.
type TURNData struct {
	Peer     string   `json:"peer"`
	Sent     int      `json:"sent"`
	Received int      `json:"received"`
	Loss     float64  `json:"loss"` // 0 to 1
	RTTMinMS *float64 `json:"rtt_min_ms"`
	RTTAvgMS *float64 `json:"rtt_avg_ms"`
	RTTMaxMS *float64 `json:"rtt_max_ms"`
}

// TURNEndToEnd is two relay-only ICE agents connecting through the server.
type TURNEndToEnd struct {
	Connected bool     `json:"connected"`
	TimeMS    *float64 `json:"time_ms"`
	Local     string   `json:"local,omitempty"` // the selected pair
	Remote    string   `json:"remote,omitempty"`
	Sent      int      `json:"sent"`
	Received  int      `json:"received"`
	Error     string   `json:"error,omitempty"`
}

// Candidates are the ICE candidates gathered from here, as a browser would
// gather them, and each server's part.
type Candidates struct {
	Gathered   []Candidate       `json:"gathered"`
	Servers    []CandidateServer `json:"servers"`
	DurationMS int64             `json:"duration_ms"`
}

// Candidate is one ICE candidate.
type Candidate struct {
	Type           string  `json:"type"`     // host, srflx, prflx, relay
	Protocol       string  `json:"protocol"` // udp or tcp
	Address        string  `json:"address"`
	Port           int     `json:"port"`
	RelatedAddress string  `json:"related_address,omitempty"`
	RelatedPort    int     `json:"related_port,omitempty"`
	Priority       uint32  `json:"priority"`
	Server         string  `json:"server,omitempty"`         // the URL that produced it
	RelayProtocol  string  `json:"relay_protocol,omitempty"` // udp, tcp or tls
	TimeMS         float64 `json:"time_ms"`                  // from the start of gathering
}

// CandidateServer says whether a server produced what it should: srflx
// from a STUN server, relay from a TURN server.
type CandidateServer = natclass.CandidateServer

// TURNReport is the result of `natcheck turn`: the JSON schema and the
// input of its renderers.
type TURNReport struct {
	SchemaVersion int       `json:"schema_version"`
	Tool          string    `json:"tool"`
	Version       string    `json:"version"`
	StartedAt     time.Time `json:"started_at"`
	DurationMS    int64     `json:"duration_ms"`
	// OK is true when every check passed.
	OK bool `json:"ok"`
	// RelayVerified lists the relay transports proven from here.
	RelayVerified []string     `json:"relay_verified"`
	TURN          []TURNResult `json:"turn"`
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

// CandidatesOf converts a gathering to its JSON shape.
func CandidatesOf(g natclass.Gathering) *Candidates {
	c := &Candidates{Gathered: []Candidate{}, Servers: g.Servers, DurationMS: g.Duration.Milliseconds()}
	if c.Servers == nil {
		c.Servers = []CandidateServer{}
	}
	for _, x := range g.Candidates {
		c.Gathered = append(c.Gathered, Candidate{
			Type: x.Type, Protocol: x.Protocol, Address: addrStr(x.Address), Port: x.Port,
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
