package report

import (
	"bytes"
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// TestJSONGolden writes every golden case as JSON, compares it with its
// golden file, and reads the golden file back into a Report: the schema
// must survive the round trip.
func TestJSONGolden(t *testing.T) {
	for _, c := range goldenCases() {
		t.Run(c.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := WriteJSON(&b, c.r); err != nil {
				t.Fatal(err)
			}
			checkGolden(t, c.name+".json", b.Bytes())

			golden, err := os.ReadFile(goldenPath(c.name + ".json"))
			if err != nil {
				t.Fatal(err)
			}
			var back Report
			dec := json.NewDecoder(bytes.NewReader(golden))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&back); err != nil {
				t.Fatalf("golden JSON does not decode into a Report: %v", err)
			}
			compareKeyFields(t, back, c.r)
			if !reflect.DeepEqual(back, c.r) {
				t.Errorf("round trip changed the report:\n got %+v\nwant %+v", back, c.r)
			}
		})
	}
}

// compareKeyFields names the first key field that differs, so a schema
// break reads as one, not as a wall of %+v.
func compareKeyFields(t *testing.T, got, want Report) {
	t.Helper()
	check := func(field string, g, w any) {
		t.Helper()
		if !reflect.DeepEqual(g, w) {
			t.Errorf("%s = %v, want %v", field, g, w)
		}
	}
	check("schema_version", got.SchemaVersion, SchemaVersion)
	check("version", got.Version, want.Version)
	check("started_at", got.StartedAt.Equal(want.StartedAt), true)
	check("duration_ms", got.DurationMS, want.DurationMS)
	check("udp", got.UDP, want.UDP)
	check("measured", got.Measured, want.Measured)
	check("family", got.Family, want.Family)
	check("nat", got.NAT, want.NAT)
	check("public_addresses", got.PublicAddresses, want.PublicAddresses)
	check("verdict.direct_udp", got.Verdict.DirectUDP, want.Verdict.DirectUDP)
	check("verdict.peers", got.Verdict.Peers, want.Verdict.Peers)
	check("verdict.relay", got.Verdict.Relay, want.Verdict.Relay)
	check("verdict.summary", got.Verdict.Summary, want.Verdict.Summary)
	check("reasons", got.Reasons, want.Reasons)
	check("len(servers)", len(got.Servers), len(want.Servers))
	for i := range min(len(got.Servers), len(want.Servers)) {
		g, w := got.Servers[i], want.Servers[i]
		check("servers.name", g.Name, w.Name)
		check("servers.address", g.Address, w.Address)
		check("servers.answered", g.Answered, w.Answered)
		check("servers.rtt_ms", deref(g.RTTMS), deref(w.RTTMS))
		check("servers.rfc5780", g.RFC5780, w.RFC5780)
		check("servers.error", g.Error, w.Error)
	}
	check("len(families)", len(got.Families), len(want.Families))
	for i := range min(len(got.Families), len(want.Families)) {
		g, w := got.Families[i], want.Families[i]
		check("families.family", g.Family, w.Family)
		check("families.skipped", g.Skipped, w.Skipped)
		check("families.nat.type", g.NAT.Type, w.NAT.Type)
		check("len(families.tests)", len(g.Tests), len(w.Tests))
	}
}

func TestJSONLine(t *testing.T) {
	r := build(in(portRestricted()), in(ipv6Open()))
	var line, indented bytes.Buffer
	if err := WriteJSONLine(&line, r); err != nil {
		t.Fatal(err)
	}
	if err := WriteJSON(&indented, r); err != nil {
		t.Fatal(err)
	}
	s := line.String()
	if !strings.HasSuffix(s, "}\n") || strings.Count(s, "\n") != 1 {
		t.Errorf("not one line: %q", s)
	}
	var a, b Report
	if err := json.Unmarshal(line.Bytes(), &a); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(indented.Bytes(), &b); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, b) || !slices.Equal(a.PublicAddresses, r.PublicAddresses) {
		t.Error("WriteJSONLine and WriteJSON disagree")
	}
}
