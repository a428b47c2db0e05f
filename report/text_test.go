package report

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/natcheck/natcheck/natclass"
)

var update = flag.Bool("update", false, "rewrite golden files")

// goldenCase is one report rendered to golden files under testdata/golden.
type goldenCase struct {
	name string
	r    Report
}

// goldenCases are the reports the golden files hold; see testdata/README.md.
func goldenCases() []goldenCase {
	return []goldenCase{
		{"port-restricted", build(in(portRestricted()))},
		{"symmetric", build(in(symmetric()))},
		{"udp-blocked", build(in(udpBlocked()))},
		{"udp-blocked-tls443", build(in(udpBlockedTLS443()))},
		{"dns-failure", build(in(dnsFailure()))},
		{"ipv6-skipped", build(in(fullConeCGNAT()), skipped("ipv6", "no global IPv6 address on this host"))},
		{"dual-stack", build(in(symmetric()), in(ipv6Open()))},
		{"send-error", build(skipped("ipv4", "no server has an ipv4 address"), in(sendError()))},
	}
}

func goldenPath(name string) string { return filepath.Join("..", "testdata", "golden", name) }

// checkGolden compares got with the golden file name, or rewrites the file
// under -update.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := goldenPath(name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./report -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the output (- golden, + got; go test ./report -update rewrites it):\n%s",
			path, lineDiff(string(want), string(got)))
	}
}

func TestTextGolden(t *testing.T) {
	for _, c := range goldenCases() {
		t.Run(c.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := WriteText(&b, c.r, TextOptions{}); err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(b.Bytes(), []byte("\x1b")) {
				t.Error("output without Color holds an escape code")
			}
			checkGolden(t, c.name+".txt", b.Bytes())
		})
	}
}

func TestTextVerboseGolden(t *testing.T) {
	for _, c := range goldenCases() {
		if c.name != "port-restricted" && c.name != "dual-stack" {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := WriteText(&b, c.r, TextOptions{Verbose: true}); err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(b.Bytes(), []byte("\x1b")) {
				t.Error("output without Color holds an escape code")
			}
			for _, x := range c.r.Families[0].Tests {
				if !strings.Contains(b.String(), "| "+x.Name+" ") {
					t.Errorf("test %s not listed", x.Name)
				}
			}
			checkGolden(t, c.name+".verbose.txt", b.Bytes())
		})
	}
}

var ansi = regexp.MustCompile("\x1b\\[[0-9;]*m")

func TestTextColorGolden(t *testing.T) {
	for _, c := range goldenCases() {
		if c.name != "port-restricted" && c.name != "udp-blocked" {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			var col, plain bytes.Buffer
			if err := WriteText(&col, c.r, TextOptions{Color: true}); err != nil {
				t.Fatal(err)
			}
			if err := WriteText(&plain, c.r, TextOptions{}); err != nil {
				t.Fatal(err)
			}
			// go test's stdout is not a terminal, so fatih/color's global
			// NoColor is set: escape codes here prove the renderer decides
			// colour per call, not from the global.
			if !bytes.Contains(col.Bytes(), []byte("\x1b[")) {
				t.Fatal("Color output holds no escape codes")
			}
			// Colour must not change the layout: table widths ignore the
			// escape codes.
			if stripped := ansi.ReplaceAllString(col.String(), ""); stripped != plain.String() {
				t.Errorf("colour changed the layout (- plain, + colour stripped):\n%s", lineDiff(plain.String(), stripped))
			}
			checkGolden(t, c.name+".color.txt", col.Bytes())
		})
	}
}

// TestTextColors checks the colour of the answer and of key values.
func TestTextColors(t *testing.T) {
	const green, yellow, red = "\x1b[32m", "\x1b[33m", "\x1b[31m"
	for _, tc := range []struct {
		name  string
		r     Report
		first string   // colour of the first line
		cells []string // coloured values that must appear
	}{
		{"likely", build(in(portRestricted())), green,
			[]string{yellow + "port-restricted-cone", green + "endpoint-independent", green + "probably-direct", red + "relay"}},
		{"unlikely", build(in(symmetric())), red,
			[]string{red + "symmetric", red + "address-and-port-dependent", yellow + "no\x1b"}},
		{"impossible", build(in(udpBlocked())), red,
			[]string{red + "udp-blocked", red + "no\x1b", red + "no reply over UDP after 7 sends"}},
		{"not measured", build(in(dnsFailure())), red,
			[]string{yellow + "unknown (no server answered)", red + "lookup stun.example.net: no such host"}},
		{"full cone", build(in(fullConeCGNAT())), green,
			[]string{green + "full-cone", yellow + "yes\x1b"}},
		{"no NAT", build(in(ipv6Open())), green, []string{green + "none", "does not apply (no NAT)"}},
		{"possible", build(in(onePlainServer())), yellow, []string{yellow + "unknown\x1b", yellow + "none (filtering not tested)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := WriteText(&b, tc.r, TextOptions{Color: true}); err != nil {
				t.Fatal(err)
			}
			out := b.String()
			first, _, _ := strings.Cut(out, "\n")
			if want := tc.first + tc.r.Verdict.Summary + "\x1b[0m"; first != want {
				t.Errorf("first line %q, want %q", first, want)
			}
			for _, c := range tc.cells {
				if !strings.Contains(out, c) {
					t.Errorf("no %q in\n%s", c, out)
				}
			}
		})
	}
}

func TestTextLayout(t *testing.T) {
	r := build(in(symmetric()), in(ipv6Open()))
	var b bytes.Buffer
	if err := WriteText(&b, r, TextOptions{}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if lines[0] != r.Verdict.Summary {
		t.Errorf("first line %q, want the summary %q", lines[0], r.Verdict.Summary)
	}
	if lines[1] != "" {
		t.Errorf("second line %q, want it blank", lines[1])
	}
	if last, want := lines[len(lines)-1], "natcheck v0.1.0 · 1234 ms"; last != want {
		t.Errorf("last line %q, want %q", last, want)
	}
	// The sections come in order.
	at := 0
	for _, s := range []string{"\nIPv4\n", "\nIPv6\n", "| peer behind", "If direct fails: TURN over udp, tcp, tls (not verified",
		"\nWhy:\n  - ", "\nWhy (IPv6):\n  - ", "\nServers\n", "| server "} {
		i := strings.Index(out[at:], s)
		if i < 0 {
			t.Fatalf("%q missing after offset %d in\n%s", s, at, out)
		}
		at += i
	}
	if strings.Contains(out, "Tests (") {
		t.Error("transactions listed without Verbose")
	}
	for _, reason := range r.Reasons {
		if !strings.Contains(out, "  - "+reason+"\n") {
			t.Errorf("reason %q missing", reason)
		}
	}
}

func TestTextSkippedFamily(t *testing.T) {
	var b bytes.Buffer
	if err := WriteText(&b, build(in(portRestricted()), skipped("ipv6", "no IPv6 route")), TextOptions{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "\nIPv6: skipped (no IPv6 route)\n") {
		t.Errorf("no skipped line in\n%s", b.String())
	}
}

func TestTextNothingTested(t *testing.T) {
	var b bytes.Buffer
	if err := WriteText(&b, build(), TextOptions{Verbose: true}); err != nil {
		t.Fatal(err)
	}
	if first, _, _ := strings.Cut(b.String(), "\n"); first != "Nothing could be measured: no STUN server answered" {
		t.Errorf("first line %q", first)
	}
}

// onePlainServer is a NAT seen by one plain server only: mapping cannot be
// told.
func onePlainServer() natclass.Observations {
	o := portRestricted()
	o.Servers = o.Servers[1:]
	o.RFC5780 = nil
	return o
}

type failWriter struct{}

var errWrite = errors.New("disk full")

func (failWriter) Write([]byte) (int, error) { return 0, errWrite }

func TestTextWriteError(t *testing.T) {
	if err := WriteText(failWriter{}, build(in(portRestricted())), TextOptions{}); !errors.Is(err, errWrite) {
		t.Errorf("err = %v, want %v", err, errWrite)
	}
}

// lineDiff returns a minimal line diff of want and got: "-" lines only in
// want, "+" lines only in got, and up to two lines of context around each
// change.
func lineDiff(want, got string) string {
	a, b := strings.Split(want, "\n"), strings.Split(got, "\n")
	// lcs[i][j] is the length of the longest common subsequence of a[i:]
	// and b[j:].
	lcs := make([][]int, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	type line struct {
		op   byte
		text string
	}
	var ls []line
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			ls = append(ls, line{' ', a[i]})
			i, j = i+1, j+1
		case i < len(a) && (j == len(b) || lcs[i+1][j] >= lcs[i][j+1]):
			ls = append(ls, line{'-', a[i]})
			i++
		default:
			ls = append(ls, line{'+', b[j]})
			j++
		}
	}
	const context = 2
	var sb strings.Builder
	last := -1
	for k, l := range ls {
		near := false
		for d := -context; d <= context; d++ {
			if k+d >= 0 && k+d < len(ls) && ls[k+d].op != ' ' {
				near = true
			}
		}
		if !near {
			continue
		}
		if last >= 0 && k > last+1 {
			sb.WriteString("  ...\n")
		}
		fmt.Fprintf(&sb, "%c %q\n", l.op, l.text)
		last = k
	}
	return sb.String()
}

func TestLineDiff(t *testing.T) {
	got := lineDiff("a\nb\nc\nd\ne\nf\ng\nh", "a\nb\nc\nD\ne\nf\ng\nh")
	want := "  \"b\"\n  \"c\"\n- \"d\"\n+ \"D\"\n  \"e\"\n  \"f\"\n"
	if got != want {
		t.Errorf("lineDiff:\n%s\nwant\n%s", got, want)
	}
}

// TestTextConcurrent renders from several goroutines: WriteText keeps no
// state between calls (run with -race), and its output does not depend on
// what else is rendering.
func TestTextConcurrent(t *testing.T) {
	r := build(in(symmetric()), in(ipv6Open()))
	var want bytes.Buffer
	if err := WriteText(&want, r, TextOptions{Verbose: true}); err != nil {
		t.Fatal(err)
	}
	outs := make([]bytes.Buffer, 8)
	errs := make(chan error, len(outs))
	for i := range outs {
		go func() { errs <- WriteText(&outs[i], r, TextOptions{Verbose: true, Color: i%2 == 1}) }()
	}
	for range outs {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for i := range outs {
		if got := ansi.ReplaceAllString(outs[i].String(), ""); got != want.String() {
			t.Errorf("goroutine %d:\n%s", i, lineDiff(want.String(), got))
		}
	}
}

// TestTextRelayLine: the fallback line says what TURN checks proved, and
// marks the theory as such when none ran.
func TestTextRelayLine(t *testing.T) {
	for _, c := range []struct {
		verified []string
		want     string
	}{
		{nil, "If direct fails: TURN over udp, tcp, tls (not verified: give --turn to check a server)"},
		{[]string{"turn-udp", "turn-tls"}, "If direct fails: TURN over udp, tls, verified by data through the relay"},
		{[]string{}, "If direct fails: no verified relay (TURN over udp, tcp, tls would be the way, but no TURN server given relayed data from here)"},
	} {
		r := build(in(portRestricted()))
		r.Verdict.RelayVerified = c.verified
		var b bytes.Buffer
		if err := WriteText(&b, r, TextOptions{}); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(b.String(), c.want+"\n") {
			t.Errorf("verified %v: no line %q in\n%s", c.verified, c.want, b.String())
		}
	}
}
