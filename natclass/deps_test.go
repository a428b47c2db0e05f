package natclass

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLayering holds the dependency direction of the pipeline: natclass uses
// the standard library only; probe and report both sit above natclass and
// never import each other; no library package imports cmd.
func TestLayering(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go command not found")
	}
	deps := func(pkg string) []string {
		out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", pkg).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", pkg, err)
		}
		return strings.Fields(string(out))
	}
	const mod = "github.com/natcheck/natcheck/"
	for _, d := range deps(".") {
		if d != mod+"natclass" {
			t.Errorf("natclass imports %s; it must use the standard library only", d)
		}
	}
	forbidden := map[string][]string{
		"../probe":  {mod + "report", mod + "cmd/"},
		"../report": {mod + "probe", mod + "cmd/"},
	}
	for pkg, bad := range forbidden {
		for _, d := range deps(pkg) {
			for _, b := range bad {
				if strings.HasPrefix(d, b) {
					t.Errorf("%s imports %s", pkg, d)
				}
			}
		}
	}
}
