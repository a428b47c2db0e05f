package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/invopop/jsonschema"

	"github.com/natcheck/natcheck/report"
)

const docHead = "# natcheck's JSON report\n\n" +
	"`natcheck --json` writes one report as indented JSON; `--format json-line` writes it as one\n" +
	"compact line, and with `--every DURATION` one line per run, for logs and for watching a network\n" +
	"change. `natcheck turn --json` writes a TURN report. The JSON Schema (draft 2020-12) is\n" +
	"[report-schema.json](report-schema.json); this page and the schema are generated from the Go\n" +
	"types and their comments (`go generate ./report`), and a test validates the golden reports in\n" +
	"`testdata/golden` against the schema.\n" + `
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

### Changes

- **2**: the top-level ` + "`verdict`" + ` is the verdict over both address families, no longer the
  leading family's. When IPv4 and IPv6 were both tested and their verdicts differ, each entry of
  ` + "`verdict.peers`" + ` is the best path to that kind of peer over either family and names it in
  ` + "`family`" + ` (a path over IPv6 holds for peers that have IPv6 too; between equal paths the
  leading family is named); ` + "`verdict.way_out`" + `, ` + "`direct_udp`" + ` and ` + "`relay`" + ` are those of the family with
  the best answer, ` + "`way_out.family`" + ` naming it; and the summary gives that family's answer first,
  then the other's. With one family tested, with families that agree, or with a family that
  measured nothing, the verdict is the leading family's, unchanged and without ` + "`family`" + ` fields,
  as in version 1. Version 1's verdict is the ` + "`families[]`" + ` entry whose ` + "`family`" + ` is the
  top-level ` + "`family`" + `; the families' own verdicts never carry ` + "`family`" + `. ` + "`nat64`" + ` was added
  (an IPv6-only network with NAT64).
`

// markdown returns docs/json.md: a table of fields for each object of the
// schema, in the order the root's fields first lead to them.
func markdown(s *jsonschema.Schema) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, docHead, report.SchemaVersion)
	for _, name := range defOrder(s) {
		d := s.Definitions[name]
		fmt.Fprintf(&b, "\n## %s\n\n%s\n\n| Field | Type | Description |\n|---|---|---|\n", name, d.Description)
		for p := d.Properties.Oldest(); p != nil; p = p.Next() {
			typ := docType(p.Value)
			if !slices.Contains(d.Required, p.Key) {
				typ += ", optional"
			}
			fmt.Fprintf(&b, "| `%s` | %s | %s |\n", p.Key, cell(typ), cell(p.Value.Description))
		}
	}
	return []byte(b.String())
}

// cell escapes the pipes of a table cell, in code spans too (GitHub
// Flavored Markdown).
func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// defOrder returns the names of the $defs: the root's, then depth first in
// the order of the fields that refer to them; then any left.
func defOrder(s *jsonschema.Schema) []string {
	var out []string
	var visit func(ref string)
	var refs func(p *jsonschema.Schema)
	visit = func(ref string) {
		name := strings.TrimPrefix(ref, "#/$defs/")
		d, ok := s.Definitions[name]
		if !ok || slices.Contains(out, name) {
			return
		}
		out = append(out, name)
		for p := d.Properties.Oldest(); p != nil; p = p.Next() {
			refs(p.Value)
		}
	}
	refs = func(p *jsonschema.Schema) {
		if p == nil {
			return
		}
		if p.Ref != "" {
			visit(p.Ref)
		}
		refs(p.Items)
		for _, a := range p.AnyOf {
			refs(a)
		}
	}
	visit(s.Ref)
	for _, name := range slices.Sorted(maps.Keys(s.Definitions)) {
		visit(name)
	}
	return out
}

// docType is the type column: a link to an object, "array of" its items,
// the values of an enumeration, "| null" when null is allowed.
func docType(p *jsonschema.Schema) string {
	switch {
	case p.Ref != "":
		name := strings.TrimPrefix(p.Ref, "#/$defs/")
		return "[" + name + "](#" + strings.ToLower(name) + ")"
	case len(p.AnyOf) == 2 && p.AnyOf[1].Type == "null":
		return docType(p.AnyOf[0]) + " | null"
	case p.Type == "array":
		return "array of " + docType(p.Items)
	case len(p.Enum) > 0:
		values := make([]string, len(p.Enum))
		for i, v := range p.Enum {
			values[i] = fmt.Sprintf("`%q`", v)
		}
		return strings.Join(values, " | ")
	case p.Format != "":
		return p.Type + " (" + p.Format + ")"
	}
	return p.Type
}
