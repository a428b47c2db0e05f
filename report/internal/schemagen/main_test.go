package main

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/natcheck/natcheck/natclass"
)

// TestFilesUpToDate: docs/report-schema.json and docs/json.md are what the
// generator makes from the current types and comments.
func TestFilesUpToDate(t *testing.T) {
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(root)
	files, err := generate()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		got, err := os.ReadFile(f.path)
		if err != nil {
			t.Errorf("%v: run go generate ./report", err)
			continue
		}
		if !bytes.Equal(got, f.data) {
			t.Errorf("%s is not what the types and their comments say (%s): run go generate ./report", f.path, firstDiff(got, f.data))
		}
	}
}

// firstDiff names the first line where a and b differ.
func firstDiff(a, b []byte) string {
	la, lb := strings.Split(string(a), "\n"), strings.Split(string(b), "\n")
	for i := range max(len(la), len(lb)) {
		if i >= len(la) || i >= len(lb) || la[i] != lb[i] {
			return fmt.Sprintf("from line %d", i+1)
		}
	}
	return "same lines"
}

func TestDescription(t *testing.T) {
	for _, tc := range []struct{ name, comment, want string }{
		{"UDP", "UDP is true when any UDP STUN reply\narrived.\n", "True when any UDP STUN reply arrived."},
		{"Servers", "Servers are the STUN servers.", "The STUN servers."},
		{"BehindNAT", "BehindNAT: the public address differs.", "The public address differs."},
		{"Skipped", "Skipped says why.", "Says why."},
		{"Via", "Via is the way out.\n\nIt is one of the Way constants.\n", "The way out."},
		{"Tool", "Always \"natcheck\".", "Always \"natcheck\"."},
		{"UDP", "UDPLoss is not UDP's.", "UDPLoss is not UDP's."},
		{"X", "", ""},
	} {
		if got := description(tc.name, tc.comment); got != tc.want {
			t.Errorf("description(%q, %q) = %q, want %q", tc.name, tc.comment, got, tc.want)
		}
	}
}

// color is an enumeration as natclass writes them.
type color int

var colorNames = []string{"red", "green"}

func (c color) MarshalText() ([]byte, error) {
	if c < 0 || int(c) >= len(colorNames) {
		return fmt.Appendf(nil, "color(%d)", int(c)), nil
	}
	return []byte(colorNames[c]), nil
}

func (c *color) UnmarshalText(b []byte) error {
	i := slices.Index(colorNames, string(b))
	if i < 0 {
		return errors.New("no such color")
	}
	*c = color(i)
	return nil
}

func TestMapper(t *testing.T) {
	if s := mapper(reflect.TypeFor[color]()); s == nil || s.Type != "string" || !slices.Equal(s.Enum, []any{"red", "green"}) {
		t.Errorf("enumeration: %+v, want a string enum of red and green", s)
	}
	if s := mapper(reflect.TypeFor[natclass.Tri]()); s == nil || len(s.AnyOf) != 2 || s.AnyOf[0].Type != "boolean" || s.AnyOf[1].Type != "null" {
		t.Errorf("Tri: %+v, want boolean or null", s)
	}
	if a, b := mapper(reflect.TypeFor[natclass.Tri]()), mapper(reflect.TypeFor[natclass.Tri]()); a == b {
		t.Error("mapper returned one schema twice: a field's description would land in another's")
	}
	for _, typ := range []reflect.Type{reflect.TypeFor[netip.Addr](), reflect.TypeFor[netip.AddrPort]()} {
		if s := mapper(typ); s == nil || s.Type != "string" {
			t.Errorf("%s: %+v, want a string", typ, s)
		}
	}
	for _, typ := range []reflect.Type{reflect.TypeFor[int](), reflect.TypeFor[natclass.Loss]()} {
		if s := mapper(typ); s != nil {
			t.Errorf("%s mapped to %+v, want the reflector's own schema", typ, s)
		}
	}
}

// undocumented has a field without a comment.
type undocumented struct {
	// A is documented.
	A int `json:"a"`
	B int `json:"b"`
}

// TestMissingDescription: a JSON field without a Go comment fails the
// generator, which names it.
func TestMissingDescription(t *testing.T) {
	r := reflector()
	typ := reflect.TypeFor[undocumented]()
	r.CommentMap = map[string]string{
		typ.PkgPath() + ".undocumented":   "undocumented has a field without a comment.",
		typ.PkgPath() + ".undocumented.A": "A is documented.",
	}
	_, err := build(r, typ)
	if err == nil || !strings.Contains(err.Error(), `main.undocumented.B (JSON "b"): no description`) {
		t.Errorf("err = %v, want one naming field B", err)
	}
	if err != nil && strings.Contains(err.Error(), ".A ") {
		t.Errorf("err = %v names the documented field", err)
	}
}
