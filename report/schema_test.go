package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/natcheck/natcheck/natclass"
)

// The JSON contract: docs/report-schema.json (JSON Schema, draft 2020-12)
// and docs/json.md are generated from the Report type by walking it with
// reflection, with the descriptions and vocabularies below; go test
// ./report -run Schema -update rewrites them. Without -update the test
// fails when a field of the JSON has no description here, when the files
// differ from what the types say, or when a golden report does not
// validate against the schema file.

// fieldDocs describes every JSON field, keyed "Type.json_name".
var fieldDocs = map[string]string{
	"Report.schema_version":   "Version of this schema. Fields are only ever added; a removal or a change of meaning bumps it.",
	"Report.tool":             `Always "natcheck".`,
	"Report.version":          "Version of natcheck that wrote the report.",
	"Report.started_at":       "When the run started (RFC 3339, UTC).",
	"Report.duration_ms":      "Duration of the whole run, TURN checks included, in milliseconds.",
	"Report.udp":              "True when any UDP STUN reply arrived, in any family.",
	"Report.udp_loss":         "UDP loss measured in the leading family's run; null when nothing was measured (UDP did not get out, or only plain servers answered).",
	"Report.family":           "The family that nat, public_addresses, verdict and reasons describe: ipv4 when it was tested, else ipv6; empty when no family was tested.",
	"Report.nat":              "NAT behaviour of the leading family.",
	"Report.public_addresses": "Distinct public addresses (IP:port) of the leading family's mapping socket: one under an endpoint-independent NAT, several under a symmetric one.",
	"Report.verdict":          "How real-time traffic gets through from here, for the leading family.",
	"Report.reasons":          "The diagnosis explained in plain words, tied to observations.",
	"Report.servers":          "Every STUN server of every family tested.",
	"Report.paths":            "Every attempt to get a STUN request out, per transport: UDP from the UDP tests, TCP and TLS from the path probes.",
	"Report.families":         "The whole diagnosis of each address family, tested or skipped.",
	"Report.measured":         "False when nothing answered at all (exit code 3).",
	"Report.turn":             "One check per TURN URL given (--turn, --ice-servers); absent without TURN servers.",
	"Report.candidates":       "ICE candidates gathered when TURN servers were given; absent otherwise.",

	"NAT.mapping":                          "Mapping behaviour (RFC 4787 section 4.1).",
	"NAT.filtering":                        "Filtering behaviour (RFC 4787 section 5).",
	"NAT.type":                             "Classic (RFC 3489) NAT type name.",
	"NAT.behind_nat":                       "The public address differs from the local one; null when unknown.",
	"NAT.mapping_varies_by_destination":    "One socket got different public addresses from servers on different IP addresses.",
	"NAT.port_preservation":                "The NAT kept the local port as the public port.",
	"NAT.cgnat":                            "The public address seen by a public server is itself private or in 100.64.0.0/10: another NAT lies beyond the first.",
	"NAT.alg":                              "MAPPED-ADDRESS differed from XOR-MAPPED-ADDRESS: something on the path rewrites addresses inside packets; null when no server sent MAPPED-ADDRESS.",
	"NAT.hairpin":                          "A packet sent to our own public address came back; null when not tested (--hairpin).",
	"NAT.tcp":                              "A TCP connection to some server got out; null when none was tried.",
	"NAT.tcp_mapping_endpoint_independent": "Connections from one local port to servers on different IP addresses got the same public address.",
	"NAT.tcp_port_preservation":            "The NAT kept the local TCP port.",
	"NAT.rfc5780_server":                   "The server whose RFC 5780 behaviour tests decided filtering.",
	"NAT.hairpin_tested":                   "The hairpinning test was sent (--hairpin), whether or not it finished: with hairpin null, true means the test did not finish, false that it was not asked for.",
	"NAT.mapping_changed":                  "One socket's public address changed during the test in a way no mapping behaviour explains, and so did a second, fresh socket's: mapping and type are unknown.",
	"Loss.sends":                           "Requests of answered transactions (Test I left out), retransmissions included, and single-send loss probes.",
	"Loss.lost":                            "Of those sends, how many went unanswered (the request or its reply was lost).",
	"Loss.fraction":                        "lost / sends: the measured chance that one request or its reply is lost.",
	"Loss.bound":                           "One-sided 95% upper confidence bound on that chance (Wilson score): silence is read as a result only when every send going unanswered at this loss is less likely than 1 in 1000.",

	"Verdict.direct_udp":     "Overall answer for direct UDP to typical peers.",
	"Verdict.peers":          "For each kind of peer, direct or relay; null when nothing could be said.",
	"Verdict.relay":          "TURN transports to use when direct fails, best first; null when nothing could be said.",
	"Verdict.relay_verified": "Relay transports proven by data through a TURN relay from here, best first; absent when no TURN server was checked, empty when none worked.",
	"Verdict.way_out":        "The first way out that works, in ICE's order: direct UDP, TURN over UDP, TCP, TLS.",
	"Verdict.summary":        "The one-line answer for a person.",
	"PeerPath.peer":          "Kind of peer, named like the NAT type it stands for.",
	"PeerPath.path":          "How traffic to that kind of peer flows.",
	"WayOut.via":             "The way out; empty in the verdict of a skipped family.",
	"WayOut.port":            "The server port that got through, for TCP and TLS.",
	"WayOut.cost":            "What taking this way costs, in plain words.",

	"FamilyResult.family":           "Address family.",
	"FamilyResult.skipped":          "Why the family was not tested; absent when it was.",
	"FamilyResult.udp":              "A UDP STUN reply arrived in this family.",
	"FamilyResult.udp_loss":         "UDP loss measured in this family's run; null when nothing was measured (UDP did not get out, or only plain servers answered).",
	"FamilyResult.nat":              "NAT behaviour in this family.",
	"FamilyResult.public_addresses": "Distinct public addresses of the mapping socket.",
	"FamilyResult.verdict":          "Verdict for this family.",
	"FamilyResult.reasons":          "The diagnosis of this family in plain words.",
	"FamilyResult.tests":            "Every STUN transaction of this family's diagnosis.",

	"Server.name":           "The server as given (HOST:PORT, or a stun:/stuns: URI).",
	"Server.family":         "Address family it was tested in.",
	"Server.address":        "Resolved address; absent when resolution failed.",
	"Server.answered":       "The server replied to a plain Binding request.",
	"Server.rtt_ms":         "Round-trip time of that request in milliseconds; null without a reply.",
	"Server.rfc5780":        "The server advertised a usable OTHER-ADDRESS (another IP and port); null without a reply.",
	"Server.other_address":  "OTHER-ADDRESS as advertised.",
	"Server.change_request": "How the server treated CHANGE-REQUEST; absent when not tried.",
	"Server.mapped_address": "XOR-MAPPED-ADDRESS: our address as the server saw it.",
	"Server.error":          "Why the server did not answer: resolution failure, error response, no reply.",

	"Path.transport":      "Transport of the attempt.",
	"Path.server":         "The server as given.",
	"Path.family":         "Address family.",
	"Path.address":        "Destination IP:port.",
	"Path.port":           "Destination port.",
	"Path.ok":             "A Binding response came back.",
	"Path.reachable":      "Packets got through: a UDP reply, or a completed TCP handshake (even if TLS or STUN then failed).",
	"Path.time_ms":        "Time to the response, or until the attempt gave up, in milliseconds; null when the attempt did not run.",
	"Path.connect_ms":     "TCP handshake time (TCP and TLS).",
	"Path.handshake_ms":   "TLS handshake time.",
	"Path.mapped_address": "XOR-MAPPED-ADDRESS of the response.",
	"Path.cert_error":     "Why the TLS certificate failed verification.",
	"Path.cert_not_after": "Expiry of the server's leaf TLS certificate (RFC 3339).",
	"Path.error":          "Why the attempt failed.",

	"Test.name":           "Which test: the plain Binding request (Test I), the RFC 5780 mapping and filtering tests, the CHANGE-REQUEST control, or hairpin.",
	"Test.server":         "The server as given; empty for hairpin.",
	"Test.local":          "Local socket address.",
	"Test.dest":           "Destination address.",
	"Test.change_request": "CHANGE-REQUEST flags sent; absent for none.",
	"Test.response_port":  "RESPONSE-PORT sent (RFC 5780 section 7.5): the reply was asked for at this port of the request's public IP; absent for none.",
	"Test.sent":           "Transmissions, retransmissions included.",
	"Test.status":         "Outcome: not-run means unknown (never sent, or the run ended first), never no reply.",
	"Test.from":           "Source address of the reply.",
	"Test.mapped":         "XOR-MAPPED-ADDRESS of the reply.",
	"Test.rtt_ms":         "First transmission to reply, in milliseconds; null without a reply.",
	"Test.error_code":     "STUN error code of an error response.",
	"Test.error":          "Why the request could not be sent.",

	"TURNResult.url":                "The TURN URL, without credentials.",
	"TURNResult.transport":          "Transport between client and server.",
	"TURNResult.address":            "Server address connected to.",
	"TURNResult.local":              "Our end of the control connection.",
	"TURNResult.auth":               "Kind of credentials.",
	"TURNResult.user":               "The configured user name (never a password or a secret).",
	"TURNResult.credential_expires": "Expiry of REST credentials made from a shared secret.",
	"TURNResult.ok":                 "Data went through the relay and back (and the end-to-end check, when run, connected).",
	"TURNResult.failed_step":        "The step that failed; absent when ok.",
	"TURNResult.error_code":         "STUN error code of the failing response.",
	"TURNResult.error":              "What went wrong.",
	"TURNResult.hint":               "What to do about it.",
	"TURNResult.warnings":           "Warnings that never fail a check: a private relayed address, loss, a certificate near expiry, --insecure.",
	"TURNResult.connect_ms":         "TCP connect time; null for UDP or when not reached.",
	"TURNResult.tls_handshake_ms":   "TLS handshake time; null unless turns:.",
	"TURNResult.tls":                "The TLS session and certificate, for turns:.",
	"TURNResult.allocate_ms":        "The whole Allocate exchange, the 401 challenge included.",
	"TURNResult.allocate_rtt_ms":    "Round trip of the authenticated Allocate request.",
	"TURNResult.realm":              "REALM of the server.",
	"TURNResult.relayed_address":    "XOR-RELAYED-ADDRESS: the relay's address for peers.",
	"TURNResult.mapped_address":     "XOR-MAPPED-ADDRESS of the Allocate response.",
	"TURNResult.lifetime_s":         "Allocation lifetime granted, in seconds.",
	"TURNResult.permission_ms":      "CreatePermission round trip.",
	"TURNResult.data":               "Packets sent through the relay to a peer socket and back.",
	"TURNResult.released":           "The server confirmed the release; false when it refused; null when it did not answer or the step did not run.",
	"TURNResult.end_to_end":         "Two relay-only ICE agents connecting through the server, when run.",
	"TURNResult.duration_ms":        "Duration of the check.",

	"TLSInfo.version":      `TLS version, e.g. "TLS 1.3".`,
	"TLSInfo.server_name":  "The name verified.",
	"TLSInfo.subject":      "Leaf certificate subject common name.",
	"TLSInfo.issuer":       "Leaf certificate issuer common name.",
	"TLSInfo.dns_names":    "DNS names of the leaf certificate.",
	"TLSInfo.not_after":    "Expiry of the leaf certificate.",
	"TLSInfo.verified":     "Chain and name were verified; false with --insecure.",
	"TLSInfo.verify_error": "What verification said, when it failed or was skipped.",

	"TURNData.peer":       "The peer as the relay saw it.",
	"TURNData.sent":       "Packets sent.",
	"TURNData.received":   "Packets that came back.",
	"TURNData.loss":       "Fraction lost, 0 to 1.",
	"TURNData.rtt_min_ms": "Minimum round trip through the relay; null when nothing came back.",
	"TURNData.rtt_avg_ms": "Average round trip; null when nothing came back.",
	"TURNData.rtt_max_ms": "Maximum round trip; null when nothing came back.",

	"TURNEndToEnd.connected": "The two agents connected.",
	"TURNEndToEnd.time_ms":   "Time to connect; null when they did not.",
	"TURNEndToEnd.local":     "Local candidate of the selected pair.",
	"TURNEndToEnd.remote":    "Remote candidate of the selected pair.",
	"TURNEndToEnd.sent":      "Packets sent between the agents.",
	"TURNEndToEnd.received":  "Packets received.",
	"TURNEndToEnd.error":     "Why they did not connect.",

	"Candidates.gathered":    "Every candidate gathered.",
	"Candidates.servers":     "Each STUN or TURN server's part in gathering.",
	"Candidates.duration_ms": "Duration of gathering.",

	"Candidate.type":            "Candidate type (RFC 8445 section 5.1.1).",
	"Candidate.protocol":        "Candidate transport.",
	"Candidate.address":         "Candidate IP address.",
	"Candidate.port":            "Candidate port.",
	"Candidate.related_address": "Related address (the base of a srflx or relay candidate).",
	"Candidate.related_port":    "Related port.",
	"Candidate.priority":        "ICE priority.",
	"Candidate.server":          "The URL (without credentials) that produced it; absent for host candidates.",
	"Candidate.relay_protocol":  "Transport to the TURN server, for relay candidates.",
	"Candidate.time_ms":         "From the start of gathering, in milliseconds.",

	"CandidateServer.url":      "The server URL, without credentials.",
	"CandidateServer.want":     "The candidate type it should produce.",
	"CandidateServer.produced": "How many it produced.",
	"CandidateServer.error":    "Why it produced none, in plain words.",

	"TURNReport.schema_version": "Version of this schema (shared with the main report).",
	"TURNReport.tool":           `Always "natcheck".`,
	"TURNReport.version":        "Version of natcheck.",
	"TURNReport.started_at":     "When the run started.",
	"TURNReport.duration_ms":    "Duration of the run in milliseconds.",
	"TURNReport.ok":             "Every check passed.",
	"TURNReport.relay_verified": "Relay transports proven from here.",
	"TURNReport.turn":           "One check per TURN URL.",
}

// typeDocs describes each object type.
var typeDocs = map[string]string{
	"Report":          "The result of one natcheck run (natcheck --json, --format json-line).",
	"NAT":             "NAT behaviour of one address family.",
	"Verdict":         "How real-time traffic will get through.",
	"PeerPath":        "How traffic to one kind of peer flows.",
	"WayOut":          "How real-time media will leave this network.",
	"FamilyResult":    "The whole diagnosis of one address family.",
	"Server":          "One STUN server as seen from one family.",
	"Path":            "One attempt to get a STUN Binding request out.",
	"Test":            "One STUN transaction of the diagnosis.",
	"Loss":            "UDP loss measured in one run, from the sends that answered transactions needed and from single-send loss probes.",
	"TURNResult":      "One TURN URL check: each step's timing and outcome. Never holds a password, a secret or a credential derived from them.",
	"TLSInfo":         "A TURN server's TLS session and certificate.",
	"TURNData":        "Data sent through the relay to a peer socket and back.",
	"TURNEndToEnd":    "Two relay-only ICE agents connecting through the server.",
	"Candidates":      "ICE candidates gathered from here, and each server's part.",
	"Candidate":       "One ICE candidate.",
	"CandidateServer": "Whether a server produced what it should: srflx from STUN, relay from TURN.",
	"TURNReport":      "The result of natcheck turn (--json).",
}

// enumNames lists the values of a natclass enumeration by its String
// method, from zero until the first unnamed value.
func enumNames[T ~int](v func(int) T) []any {
	var out []any
	for i := 0; i < 100; i++ {
		s := fmt.Sprint(v(i))
		if strings.Contains(s, "(") {
			break
		}
		out = append(out, s)
	}
	return out
}

// typeEnums are the vocabularies of natclass's enumerated types.
var typeEnums = map[reflect.Type][]any{
	reflect.TypeFor[natclass.Behavior]():   enumNames(func(i int) natclass.Behavior { return natclass.Behavior(i) }),
	reflect.TypeFor[natclass.Type]():       enumNames(func(i int) natclass.Type { return natclass.Type(i) }),
	reflect.TypeFor[natclass.Likelihood](): enumNames(func(i int) natclass.Likelihood { return natclass.Likelihood(i) }),
	reflect.TypeFor[natclass.Path]():       enumNames(func(i int) natclass.Path { return natclass.Path(i) }),
	reflect.TypeFor[natclass.Status]():     enumNames(func(i int) natclass.Status { return natclass.Status(i) }),
}

func strs(s ...string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

var (
	families   = strs("ipv4", "ipv6")
	transports = strs(natclass.TransportUDP, natclass.TransportTCP, natclass.TransportTLS)
	relays     = strs(natclass.RelayTURNUDP, natclass.RelayTURNTCP, natclass.RelayTURNTLS)
)

// fieldEnums are the vocabularies of string fields, keyed like fieldDocs.
var fieldEnums = map[string][]any{
	"Report.family":             strs("ipv4", "ipv6", ""),
	"FamilyResult.family":       families,
	"Server.family":             families,
	"Path.family":               families,
	"Path.transport":            transports,
	"Server.change_request":     strs(natclass.ChangeRequestHonoured, natclass.ChangeRequestIgnored, natclass.ChangeRequestRejected, natclass.ChangeRequestUnconfirmed),
	"Test.name":                 strs("binding", "mapping-II", "mapping-III", "filtering-I", "filtering-II", "filtering-III", "mapping-Pa", "change-request-control", "change-port-control", "hairpin"),
	"Test.change_request":       strs("change-ip|change-port", "change-ip", "change-port"),
	"PeerPath.peer":             strs(natclass.PeerOpen, natclass.PeerFullCone, natclass.PeerRestrictedCone, natclass.PeerPortRestrictedCone, natclass.PeerSymmetric, natclass.PeerUDPBlocked),
	"Verdict.relay":             relays,
	"Verdict.relay_verified":    relays,
	"TURNReport.relay_verified": relays,
	"WayOut.via":                strs(natclass.WayDirectUDP, natclass.WayTURNUDP, natclass.WayTURNTCP, natclass.WayTURNTLS, natclass.WayNone, natclass.WayUnknown, ""),
	"TURNResult.transport":      strs(natclass.TURNTransportUDP, natclass.TURNTransportTCP, natclass.TURNTransportTLS),
	"TURNResult.auth":           strs("long-term", "rest"),
	"TURNResult.failed_step":    strs(natclass.TURNStepResolve, natclass.TURNStepConnect, natclass.TURNStepTLS, natclass.TURNStepAllocate, natclass.TURNStepPermission, natclass.TURNStepData, natclass.TURNStepEndToEnd),
	"Candidate.type":            strs("host", "srflx", "prflx", "relay"),
	"Candidate.protocol":        strs("udp", "tcp"),
	"Candidate.relay_protocol":  strs("udp", "tcp", "tls"),
	"CandidateServer.want":      strs("srflx", "relay"),
}

// nullableArrays are slices that may be null in the JSON.
var nullableArrays = map[string]bool{"Verdict.peers": true, "Verdict.relay": true}

type jsonField struct {
	name     string
	optional bool // omitempty or omitzero: absent when zero
	t        reflect.Type
}

func jsonFields(t reflect.Type) []jsonField {
	var out []jsonField
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "" {
			name = f.Name
		}
		out = append(out, jsonField{name: name, t: f.Type,
			optional: strings.Contains(opts, "omitempty") || strings.Contains(opts, "omitzero")})
	}
	return out
}

var (
	timeType = reflect.TypeFor[time.Time]()
	triType  = reflect.TypeFor[natclass.Tri]()
)

// schemaGen builds the $defs of the schema from Go types.
type schemaGen struct {
	defs    map[string]any
	missing []string
}

func (g *schemaGen) object(t reflect.Type) string {
	name := t.Name()
	if _, done := g.defs[name]; done {
		return name
	}
	g.defs[name] = nil // being built
	props := map[string]any{}
	required := []string{}
	for _, f := range jsonFields(t) {
		key := name + "." + f.name
		s := g.value(key, f.t, f.optional)
		doc, ok := fieldDocs[key]
		if !ok {
			g.missing = append(g.missing, key)
		}
		s["description"] = doc
		if e, ok := fieldEnums[key]; ok {
			if s["type"] == "array" || slices.Equal(toStrings(s["type"]), []string{"array", "null"}) {
				s["items"] = map[string]any{"enum": e}
			} else {
				s["enum"] = e
			}
		}
		props[f.name] = s
		if !f.optional {
			required = append(required, f.name)
		}
	}
	g.defs[name] = map[string]any{
		"type": "object", "description": typeDocs[name], "properties": props,
		"required": required, "additionalProperties": false,
	}
	if typeDocs[name] == "" {
		g.missing = append(g.missing, name)
	}
	return name
}

func toStrings(v any) []string {
	switch x := v.(type) {
	case []any:
		var out []string
		for _, s := range x {
			out = append(out, fmt.Sprint(s))
		}
		return out
	case string:
		return []string{x}
	}
	return nil
}

func (g *schemaGen) value(key string, t reflect.Type, optional bool) map[string]any {
	if e, ok := typeEnums[t]; ok {
		return map[string]any{"type": "string", "enum": e}
	}
	switch {
	case t == triType:
		return map[string]any{"type": []any{"boolean", "null"}}
	case t == timeType:
		return map[string]any{"type": "string", "format": "date-time"}
	}
	switch t.Kind() {
	case reflect.Pointer:
		inner := g.value(key, t.Elem(), optional)
		if optional {
			return inner // absent when nil
		}
		if ty, ok := inner["type"].(string); ok {
			inner["type"] = []any{ty, "null"}
			return inner
		}
		return map[string]any{"anyOf": []any{inner, map[string]any{"type": "null"}}}
	case reflect.Slice:
		s := map[string]any{"type": "array", "items": g.value(key, t.Elem(), false)}
		if nullableArrays[key] {
			s["type"] = []any{"array", "null"}
		}
		return s
	case reflect.Struct:
		return map[string]any{"$ref": "#/$defs/" + g.object(t)}
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Uint32, reflect.Uint16, reflect.Uint64:
		return map[string]any{"type": "integer"}
	case reflect.Float64, reflect.Float32:
		return map[string]any{"type": "number"}
	}
	panic("schema: no JSON type for " + t.String())
}

// generateSchema returns docs/report-schema.json as the types say, and
// the field keys that lack a description.
func generateSchema() ([]byte, []string) {
	g := &schemaGen{defs: map[string]any{}}
	g.object(reflect.TypeFor[Report]())
	g.object(reflect.TypeFor[TURNReport]())
	schema := map[string]any{
		"$schema":     "https://json-schema.org/draft/2020-12/schema",
		"$id":         "https://github.com/natcheck/natcheck/docs/report-schema.json",
		"title":       "natcheck report",
		"description": fmt.Sprintf("The JSON report of natcheck (schema_version %d): natcheck --json and --format json-line write one Report; natcheck turn --json writes a TURNReport ($defs). Fields are only ever added. docs/json.md explains every field.", SchemaVersion),
		"$ref":        "#/$defs/Report",
		"$defs":       g.defs,
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(schema); err != nil {
		panic(err)
	}
	return b.Bytes(), g.missing
}

const jsonDocHead = `# natcheck's JSON report

` + "`natcheck --json`" + ` writes one report as indented JSON; ` + "`--format json-line`" + ` writes it as one
compact line, and with ` + "`--every DURATION`" + ` one line per run, for logs and for watching a network
change. ` + "`natcheck turn --json`" + ` writes a TURN report. The JSON Schema (draft 2020-12) is
[report-schema.json](report-schema.json); this page and the schema are generated from the Go
types (` + "`go test ./report -run Schema -update`" + `), and a test validates the golden reports in
` + "`testdata/golden`" + ` against the schema.

## Stability: ` + "`schema_version`" + `

` + "`schema_version`" + ` is %d. Fields are only ever added, never renamed or removed, and a field
never changes meaning; an addition does not bump the version. Anything else would bump it, and
the old version's fields would keep their meaning in it. So:

- ignore fields you do not know;
- treat an enumeration value you do not know as "unknown" (new values may be added);
- a field marked *optional* below is absent when it does not apply; *null* is a value of
  its own, listed in the type column.

Yes/no answers that may be unknown (` + "`true | false | null`" + `) use ` + "`null`" + ` for "not tested" or "could not
tell", never for "no". Times are milliseconds (` + "`_ms`" + `) unless named otherwise; addresses are
` + "`IP:port`" + ` with IPv6 in brackets.
`

// generateDoc returns docs/json.md from the schema.
func generateDoc(schemaJSON []byte) []byte {
	var schema struct {
		Defs map[string]struct {
			Description string                    `json:"description"`
			Properties  map[string]map[string]any `json:"properties"`
			Required    []string                  `json:"required"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(schemaJSON, &schema); err != nil {
		panic(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, jsonDocHead, SchemaVersion)
	order := []string{"Report", "NAT", "Verdict", "PeerPath", "WayOut", "FamilyResult", "Server", "Path", "Test",
		"TURNResult", "TLSInfo", "TURNData", "TURNEndToEnd", "Candidates", "Candidate", "CandidateServer", "TURNReport"}
	var defs []string
	for name := range schema.Defs {
		defs = append(defs, name)
	}
	sort.Slice(defs, func(i, j int) bool {
		a, b := slices.Index(order, defs[i]), slices.Index(order, defs[j])
		if a < 0 {
			a = math.MaxInt
		}
		if b < 0 {
			b = math.MaxInt
		}
		return a < b || (a == b && defs[i] < defs[j])
	})
	for _, name := range defs {
		d := schema.Defs[name]
		fmt.Fprintf(&b, "\n## %s\n\n%s\n\n| Field | Type | Description |\n|---|---|---|\n", name, d.Description)
		// Fields in the order of the Go struct.
		var t reflect.Type
		for _, root := range []reflect.Type{reflect.TypeFor[Report](), reflect.TypeFor[TURNReport]()} {
			if t = findType(root, name, map[reflect.Type]bool{}); t != nil {
				break
			}
		}
		for _, f := range jsonFields(t) {
			p := d.Properties[f.name]
			typ := docType(p)
			if !slices.Contains(d.Required, f.name) {
				typ += ", optional"
			}
			fmt.Fprintf(&b, "| `%s` | %s | %s |\n", f.name, typ, p["description"])
		}
	}
	return []byte(b.String())
}

func findType(t reflect.Type, name string, seen map[reflect.Type]bool) reflect.Type {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || t == timeType || seen[t] {
		return nil
	}
	seen[t] = true
	if t.Name() == name {
		return t
	}
	for _, f := range jsonFields(t) {
		if r := findType(f.t, name, seen); r != nil {
			return r
		}
	}
	return nil
}

func docType(p map[string]any) string {
	if ref, ok := p["$ref"].(string); ok {
		n := strings.TrimPrefix(ref, "#/$defs/")
		return "[" + n + "](#" + strings.ToLower(n) + ")"
	}
	if alts, ok := p["anyOf"].([]any); ok {
		return docType(alts[0].(map[string]any)) + " \\| null"
	}
	types := toStrings(p["type"])
	var parts []string
	for _, ty := range types {
		switch ty {
		case "array":
			items, _ := p["items"].(map[string]any)
			parts = append(parts, "array of "+docType(items))
		case "string":
			if e, ok := p["enum"].([]any); ok {
				var vs []string
				for _, v := range e {
					vs = append(vs, fmt.Sprintf("`%q`", v))
				}
				parts = append(parts, strings.Join(vs, " \\| "))
			} else if p["format"] == "date-time" {
				parts = append(parts, "string (date-time)")
			} else {
				parts = append(parts, "string")
			}
		default:
			parts = append(parts, ty)
		}
	}
	if e, ok := p["enum"].([]any); ok && len(types) == 0 {
		var vs []string
		for _, v := range e {
			vs = append(vs, fmt.Sprintf("`%q`", v))
		}
		return strings.Join(vs, " \\| ")
	}
	return strings.Join(parts, " \\| ")
}

var (
	schemaPath = filepath.Join("..", "docs", "report-schema.json")
	docPath    = filepath.Join("..", "docs", "json.md")
)

// TestSchemaFiles: every field of the JSON report is described, and
// docs/report-schema.json and docs/json.md say what the types say.
func TestSchemaFiles(t *testing.T) {
	schema, missing := generateSchema()
	for _, m := range missing {
		t.Errorf("no description for %s: add one to fieldDocs (or typeDocs) in report/schema_test.go, then go test ./report -run Schema -update", m)
	}
	doc := generateDoc(schema)
	for path, want := range map[string][]byte{schemaPath: schema, docPath: doc} {
		if *update {
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (go test ./report -run Schema -update writes it)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is not what the types say (- file, + types; go test ./report -run Schema -update rewrites it; fields are only ever added):\n%s",
				path, lineDiff(string(got), string(want)))
		}
	}
}

// validator checks JSON values against the subset of JSON Schema that
// docs/report-schema.json uses: $ref into $defs, type (one or a list),
// properties, required, additionalProperties false, items, enum, anyOf.
type validator struct {
	defs map[string]map[string]any
	errs []string
}

func (v *validator) fail(path, format string, args ...any) {
	v.errs = append(v.errs, path+": "+fmt.Sprintf(format, args...))
}

func jsonType(x any) string {
	switch n := x.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case float64:
		if n == math.Trunc(n) {
			return "integer"
		}
		return "number"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return "unknown"
}

func (v *validator) check(path string, s map[string]any, x any) {
	if ref, ok := s["$ref"].(string); ok {
		def, ok := v.defs[strings.TrimPrefix(ref, "#/$defs/")]
		if !ok {
			v.fail(path, "unknown $ref %s", ref)
			return
		}
		v.check(path, def, x)
		return
	}
	if anyOf, ok := s["anyOf"].([]any); ok {
		for _, alt := range anyOf {
			sub := &validator{defs: v.defs}
			sub.check(path, alt.(map[string]any), x)
			if len(sub.errs) == 0 {
				return
			}
		}
		v.fail(path, "matches no alternative of anyOf")
		return
	}
	if types := toStrings(s["type"]); len(types) > 0 {
		jt := jsonType(x)
		if !slices.Contains(types, jt) && !(jt == "integer" && slices.Contains(types, "number")) {
			v.fail(path, "%s, want %v", jt, types)
			return
		}
	}
	if e, ok := s["enum"].([]any); ok && !slices.Contains(e, x) {
		v.fail(path, "%v is not one of %v", x, e)
	}
	switch val := x.(type) {
	case map[string]any:
		props, _ := s["properties"].(map[string]any)
		for _, r := range toStrings(s["required"]) {
			if _, ok := val[r]; !ok {
				v.fail(path, "required field %q missing", r)
			}
		}
		for k, sub := range val {
			ps, ok := props[k].(map[string]any)
			if !ok {
				if s["additionalProperties"] == false {
					v.fail(path, "field %q not in the schema", k)
				}
				continue
			}
			v.check(path+"."+k, ps, sub)
		}
	case []any:
		if items, ok := s["items"].(map[string]any); ok {
			for i, it := range val {
				v.check(fmt.Sprintf("%s[%d]", path, i), items, it)
			}
		}
	}
}

func loadValidator(t *testing.T) (*validator, map[string]any) {
	t.Helper()
	b, err := os.ReadFile(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	if err := json.Unmarshal(b, &schema); err != nil {
		t.Fatalf("%s: %v", schemaPath, err)
	}
	if schema["$schema"] != "https://json-schema.org/draft/2020-12/schema" {
		t.Errorf("$schema = %v", schema["$schema"])
	}
	v := &validator{defs: map[string]map[string]any{}}
	for name, d := range schema["$defs"].(map[string]any) {
		v.defs[name] = d.(map[string]any)
	}
	return v, schema
}

func validate(t *testing.T, v *validator, root map[string]any, doc []byte) []string {
	t.Helper()
	var x any
	if err := json.Unmarshal(doc, &x); err != nil {
		t.Fatal(err)
	}
	v.errs = nil
	v.check("$", root, x)
	return v.errs
}

// reportWithTURN is a report with every optional part: TURN checks of
// each kind and gathered candidates.
func reportWithTURN() Report {
	r := build(in(portRestricted()))
	addTURN(&r, promTURNChecks(), &natclass.Gathering{
		Candidates: []natclass.Candidate{{Type: "relay", Protocol: "udp", Port: 50000, RelatedPort: 40000, Priority: 5,
			Server: "turn:turn.example.com:3478", RelayProtocol: "udp", Time: 30 * time.Millisecond}},
		Servers: []natclass.CandidateServer{{URL: "turn:turn.example.com:3478", Want: "relay", Produced: 1}},
	})
	return r
}

// TestSchemaValidatesGolden: the golden reports, a report with TURN
// checks and candidates, and a natcheck turn report validate against
// docs/report-schema.json; broken ones do not.
func TestSchemaValidatesGolden(t *testing.T) {
	v, schema := loadValidator(t)
	files, err := filepath.Glob(filepath.Join("..", "testdata", "golden", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden JSON: %v", err)
	}
	docs := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		docs[filepath.Base(f)] = b
	}
	withTURN, err := json.Marshal(reportWithTURN())
	if err != nil {
		t.Fatal(err)
	}
	docs["report with TURN"] = withTURN
	for name, doc := range docs {
		root := schema
		if !bytes.Contains(doc, []byte(`"families"`)) {
			root = map[string]any{"$ref": "#/$defs/TURNReport"}
		}
		for _, e := range validate(t, v, root, doc) {
			t.Errorf("%s: %s", name, e)
		}
	}
	turnReport, err := json.Marshal(BuildTURN("v0.1.0", started, duration, promTURNChecks(), natclass.VerifiedRelays(promTURNChecks())))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range validate(t, v, map[string]any{"$ref": "#/$defs/TURNReport"}, turnReport) {
		t.Errorf("TURN report: %s", e)
	}

	// The validator is not vacuous.
	good := string(docs["symmetric.json"])
	for what, bad := range map[string]string{
		"unknown enum value":      strings.Replace(good, `"mapping": "address-and-port-dependent"`, `"mapping": "sticky"`, 1),
		"missing required":        strings.Replace(good, `"measured": true`, `"measuredx": true`, 1),
		"wrong type":              strings.Replace(good, `"udp": true`, `"udp": "yes"`, 1),
		"null where not nullable": strings.Replace(good, `"schema_version": 1`, `"schema_version": null`, 1),
	} {
		if bad == good {
			t.Fatalf("%s: the replacement did not apply", what)
		}
		if errs := validate(t, v, schema, []byte(bad)); len(errs) == 0 {
			t.Errorf("%s: validates", what)
		}
	}
}
