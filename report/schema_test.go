package report

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/natcheck/natcheck/natclass"
)

// docs/report-schema.json and docs/json.md are generated from the report
// types and their comments by go generate ./report (internal/schemagen,
// whose test fails when they are stale). Here the schema file is taken as
// the contract that natcheck's output must meet.

var schemaPath = filepath.Join("..", "docs", "report-schema.json")

// compileSchema compiles docs/report-schema.json, or the $defs entry def of
// it when def is not empty.
func compileSchema(t *testing.T, def string) *jsonschema.Schema {
	t.Helper()
	path, err := filepath.Abs(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	loc := path
	if def != "" {
		loc += "#/$defs/" + def
	}
	s, err := c.Compile(loc)
	if err != nil {
		t.Fatalf("%s: %v", loc, err)
	}
	return s
}

func validate(s *jsonschema.Schema, doc []byte) error {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return err
	}
	return s.Validate(v)
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

// reportWithResample is a report whose family has a fresh socket's
// resample transactions.
func reportWithResample() Report {
	obs := symmetric()
	obs.Resample = append(obs.Resample, obs.Servers[0].Binding)
	return build(in(obs))
}

// TestSchemaValidatesGolden: the golden reports, a report with TURN
// checks and candidates, one with resample transactions and a natcheck
// turn report validate against docs/report-schema.json; broken ones do
// not.
func TestSchemaValidatesGolden(t *testing.T) {
	report, turnReport := compileSchema(t, ""), compileSchema(t, "TURNReport")
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
	for name, r := range map[string]Report{"report with TURN": reportWithTURN(), "report with resample": reportWithResample(),
		"report with port mapping": reportWithPortMapping()} {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		docs[name] = b
	}
	for name, doc := range docs {
		s := report
		if !bytes.Contains(doc, []byte(`"families"`)) {
			s = turnReport
		}
		if err := validate(s, doc); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	turn, err := json.Marshal(BuildTURN("v0.1.0", started, duration, promTURNChecks(), natclass.VerifiedRelays(promTURNChecks())))
	if err != nil {
		t.Fatal(err)
	}
	if err := validate(turnReport, turn); err != nil {
		t.Errorf("TURN report: %v", err)
	}

	// The schema is not vacuous.
	good := string(docs["symmetric.json"])
	for what, bad := range map[string]string{
		"unknown enum value":      strings.Replace(good, `"mapping": "address-and-port-dependent"`, `"mapping": "sticky"`, 1),
		"missing required":        strings.Replace(good, `"measured": true`, `"measuredx": true`, 1),
		"wrong type":              strings.Replace(good, `"udp": true`, `"udp": "yes"`, 1),
		"null where not nullable": strings.Replace(good, `"schema_version": 2`, `"schema_version": null`, 1),
		"not a date-time":         strings.Replace(good, `"started_at": "2025-03-14T09:26:53Z"`, `"started_at": "yesterday"`, 1),
		"a TURN report":           string(turn),
	} {
		if bad == good {
			t.Fatalf("%s: the replacement did not apply", what)
		}
		if err := validate(report, []byte(bad)); err == nil {
			t.Errorf("%s: validates", what)
		}
	}
}
