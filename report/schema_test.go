package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/natcheck/natcheck/natclass"
)

// docs/report-schema.json and docs/json.md are generated from the report
// types and their comments by go generate ./report (internal/schemagen,
// whose test fails when they are stale). Here the schema file is taken as
// the contract that natcheck's output must meet.

var schemaPath = filepath.Join("..", "docs", "report-schema.json")

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
	for name, r := range map[string]Report{"report with TURN": reportWithTURN(), "report with resample": reportWithResample()} {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		docs[name] = b
	}
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
