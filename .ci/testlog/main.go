// Command testlog reads `go test -json` on stdin and prints what a reader
// of a CI log needs: each package's result line, the whole output of every
// failed test, build errors, and one line per skipped test with its
// reason. test.sh pipes the tests through it; it always exits 0, leaving
// the verdict to go test's own exit status.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

// event is the part of a test2json event that testlog reads.
type event struct {
	Action     string
	Package    string
	ImportPath string // build-output events
	Test       string
	Output     string
}

// maxReason bounds a skip line.
const maxReason = 200

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "testlog:", err)
	}
}

func run(r io.Reader, w io.Writer) error {
	out := bufio.NewWriter(w)
	defer out.Flush()
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 16<<20)
	buffered := map[string][]string{} // package + " " + test -> output lines
	skips := 0
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if err := json.Unmarshal(line, &e); err != nil || e.Action == "" {
			fmt.Fprintf(out, "%s\n", line) // not an event: pass it through
			continue
		}
		key := e.Package + " " + e.Test
		switch {
		case e.Action == "build-output":
			fmt.Fprint(out, e.Output)
		case e.Test == "" && e.Action == "output":
			if s := strings.TrimSpace(e.Output); s != "PASS" && s != "FAIL" && !strings.HasPrefix(s, "=== ") {
				fmt.Fprint(out, e.Output)
			}
		case e.Test == "":
		case e.Action == "output":
			buffered[key] = append(buffered[key], e.Output)
		case e.Action == "fail":
			for _, l := range buffered[key] {
				fmt.Fprint(out, l)
			}
			delete(buffered, key)
		case e.Action == "skip":
			skips++
			fmt.Fprintf(out, "SKIP %s %s: %s\n", e.Package, e.Test, reason(buffered[key]))
			delete(buffered, key)
		case e.Action == "pass":
			delete(buffered, key)
		}
		out.Flush()
	}
	if skips > 0 {
		fmt.Fprintf(out, "%d tests skipped\n", skips)
	}
	return sc.Err()
}

// reason is what a skipped test logged, on one line: its log lines without
// the file:line prefix and without go test's own "===" and "---" lines.
func reason(lines []string) string {
	var parts []string
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "=== ") || strings.HasPrefix(l, "--- ") {
			continue
		}
		if i := strings.Index(l, ".go:"); i >= 0 {
			if j := strings.Index(l[i:], ": "); j >= 0 {
				l = l[i+j+2:]
			}
		}
		parts = append(parts, l)
	}
	s := strings.Join(parts, " | ")
	if s == "" {
		s = "(no reason given)"
	}
	if len(s) > maxReason {
		s = s[:maxReason] + "..."
	}
	return s
}
