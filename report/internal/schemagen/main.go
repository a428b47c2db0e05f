// Command schemagen writes natcheck's JSON contract, docs/report-schema.json
// (JSON Schema, draft 2020-12) and docs/json.md, from the report types and
// their Go comments. go generate ./report runs it; a test fails when the
// files are not what it makes.
//
// The schema is github.com/invopop/jsonschema's reflection of report.Report
// and report.TURNReport. Descriptions are Go comments: a field's or a type's
// description is the first paragraph of its doc comment, with the leading
// Go name dropped ("UDP is true when ..." becomes "True when ..."); later
// paragraphs are for Go readers only. A JSON field or object without one is
// an error that names it.
//
// natclass imports only the standard library, so its types get their
// schemas here (see mapper): an integer type with MarshalText and
// UnmarshalText is a string enum of its names, natclass.Tri is true, false
// or null, netip addresses are strings. A pointer field without omitempty
// or omitzero, or a field tagged jsonschema:"nullable", may be null. String
// fields with a fixed vocabulary get it from vocabularies.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/invopop/jsonschema"

	"github.com/natcheck/natcheck/report"
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("schemagen: ")
	root, err := moduleRoot()
	if err != nil {
		log.Fatal(err)
	}
	// AddGoComments names packages by their directory relative to the
	// working directory.
	if err := os.Chdir(root); err != nil {
		log.Fatal(err)
	}
	files, err := generate()
	if err != nil {
		log.Fatal(err)
	}
	for _, f := range files {
		if err := os.WriteFile(f.path, f.data, 0o644); err != nil {
			log.Fatal(err)
		}
	}
}

// moduleRoot returns the directory of go.mod, from the working directory up.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// file is one generated file, its path relative to the module root.
type file struct {
	path string
	data []byte
}

// roots are the JSON documents natcheck writes: Report is the schema's
// root, TURNReport one of its $defs.
var roots = []reflect.Type{reflect.TypeFor[report.Report](), reflect.TypeFor[report.TURNReport]()}

// generate returns docs/report-schema.json and docs/json.md. The working
// directory must be the module root.
func generate() ([]file, error) {
	module := strings.TrimSuffix(roots[0].PkgPath(), "/report")
	r := reflector()
	for _, pkg := range packages(roots) {
		dir, ok := strings.CutPrefix(pkg, module+"/")
		if !ok {
			return nil, fmt.Errorf("%s is outside module %s: its comments cannot be read", pkg, module)
		}
		if err := r.AddGoComments(module, dir, jsonschema.WithFullComment()); err != nil {
			return nil, err
		}
	}
	s, err := build(r, roots...)
	if err != nil {
		return nil, err
	}
	s.ID = "https://github.com/natcheck/natcheck/docs/report-schema.json"
	s.Title = "natcheck report"
	s.Description = fmt.Sprintf("The JSON report of natcheck (schema_version %d): natcheck --json and --format json-line write one Report; natcheck turn --json writes a TURNReport ($defs). Fields are only ever added. docs/json.md explains every field.", report.SchemaVersion)
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	if err := enc.Encode(s); err != nil {
		return nil, err
	}
	return []file{
		{filepath.Join("docs", "report-schema.json"), b.Bytes()},
		{filepath.Join("docs", "json.md"), markdown(s)},
	}, nil
}

// reflector returns a Reflector with natcheck's mapping and descriptions;
// its CommentMap is to be filled with AddGoComments.
func reflector() *jsonschema.Reflector {
	r := &jsonschema.Reflector{Mapper: mapper}
	// Only structs become $defs. Other named types get a qualified name
	// so that, say, natclass.Route never matches the $defs entry of
	// report.Attempt.
	r.Namer = func(t reflect.Type) string {
		if t.Name() != "" && t.Kind() != reflect.Struct {
			return t.String()
		}
		return ""
	}
	r.LookupComment = func(t reflect.Type, field string) string {
		if t.Name() == "" {
			return ""
		}
		key, name := t.PkgPath()+"."+t.Name(), t.Name()
		if field != "" {
			key, name = key+"."+field, field
		}
		return description(name, r.CommentMap[key])
	}
	return r
}

// description turns the Go comment of name into a JSON description: its
// first paragraph on one line, without the leading name and the "is",
// "are" or colon after it, starting with a capital letter.
func description(name, comment string) string {
	para, _, _ := strings.Cut(strings.TrimSpace(comment), "\n\n")
	text := strings.Join(strings.Fields(para), " ")
	rest, ok := strings.CutPrefix(text, name+" ")
	if !ok {
		rest, ok = strings.CutPrefix(text, name+": ")
	}
	if !ok {
		return text
	}
	for _, verb := range []string{"is ", "are "} {
		if r, ok := strings.CutPrefix(rest, verb); ok {
			rest = r
			break
		}
	}
	c, size := utf8.DecodeRuneInString(rest)
	return string(unicode.ToUpper(c)) + rest[size:]
}

// packages returns the import paths of the structs reachable from roots,
// roots first.
func packages(roots []reflect.Type) []string {
	var out []string
	walk(roots, func(t reflect.Type) {
		if !slices.Contains(out, t.PkgPath()) {
			out = append(out, t.PkgPath())
		}
	})
	return out
}

// walk calls f once for each struct type of the JSON reachable from roots,
// depth first, in field order. time.Time is a string, not a struct, and
// so is every type mapper maps (netip's).
func walk(roots []reflect.Type, f func(reflect.Type)) {
	seen := map[reflect.Type]bool{}
	var visit func(t reflect.Type)
	visit = func(t reflect.Type) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || t == timeType || seen[t] || mapper(t) != nil {
			return
		}
		seen[t] = true
		f(t)
		for _, sf := range jsonFields(t) {
			visit(sf.Type)
		}
	}
	for _, t := range roots {
		visit(t)
	}
}

// jsonFields returns the fields of t that encoding/json writes.
func jsonFields(t reflect.Type) []reflect.StructField {
	var out []reflect.StructField
	for sf := range t.Fields() {
		switch {
		case sf.Anonymous && sf.Tag.Get("json") == "" && sf.Type.Kind() == reflect.Struct:
			// encoding/json puts an untagged embedded struct's fields in
			// the outer object.
			out = append(out, jsonFields(sf.Type)...)
		case sf.IsExported() && sf.Tag.Get("json") != "-":
			out = append(out, sf)
		}
	}
	return out
}

// jsonName returns the JSON name of a field and whether it is left out
// when zero.
func jsonName(sf reflect.StructField) (string, bool) {
	name, opts, _ := strings.Cut(sf.Tag.Get("json"), ",")
	if name == "" {
		name = sf.Name
	}
	optional := false
	for _, o := range strings.Split(opts, ",") {
		optional = optional || o == "omitempty" || o == "omitzero"
	}
	return name, optional
}
