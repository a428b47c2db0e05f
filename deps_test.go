package natcheck_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const mod = "github.com/natcheck/natcheck"

// pkg is the part of `go list -json` the rules read.
type pkg struct {
	ImportPath string
	Standard   bool
	Imports    []string
	Deps       []string
}

// listDeps returns every package of the module and everything they
// import, by import path.
func listDeps(t *testing.T) map[string]*pkg {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go command not found")
	}
	out, err := exec.Command("go", "list", "-deps", "-json", "./...").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	pkgs := map[string]*pkg{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		p := new(pkg)
		if err := dec.Decode(p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		pkgs[p.ImportPath] = p
	}
	for _, want := range []string{"natclass", "probe", "report", "cmd/natcheck"} {
		if pkgs[mod+"/"+want] == nil {
			t.Fatalf("go list did not list %s/%s", mod, want)
		}
	}
	return pkgs
}

// inModule reports whether path is a package of this module, or one of
// the given packages of it (path relative to the module) or below them.
func inModule(path string, under ...string) bool {
	if len(under) == 0 {
		return path == mod || strings.HasPrefix(path, mod+"/")
	}
	for _, u := range under {
		if path == mod+"/"+u || strings.HasPrefix(path, mod+"/"+u+"/") {
			return true
		}
	}
	return false
}

// networkPackages are this module's packages that open sockets or start
// programs that do.
var networkPackages = []string{"probe", "portmap", "turncheck", "stunserver", "turnserver", "rendezvous", "pair", "internal/exporter", "internal/lab", "cmd"}

// networkStd are the standard packages that reach the network or other
// programs.
var networkStd = []string{"net", "net/http", "net/rpc", "net/smtp", "crypto/tls", "os/exec"}

// TestDependencyRules holds the direction of the dependencies (design.md,
// "The pipeline"): natclass uses the standard library only; nothing imports
// cmd; probe never imports report; report does no network I/O.
func TestDependencyRules(t *testing.T) {
	pkgs := listDeps(t)
	// check reports the packages in deps for which bad is true.
	check := func(deps []string, bad func(string) bool, format string, args ...any) {
		t.Helper()
		var found []string
		for _, d := range deps {
			if bad(d) {
				found = append(found, d)
			}
		}
		if len(found) > 0 {
			t.Errorf(format+": %s", append(args, strings.Join(found, ", "))...)
		}
	}

	check(pkgs[mod+"/natclass"].Deps, func(d string) bool { return pkgs[d] == nil || !pkgs[d].Standard },
		"natclass must use the standard library only; it depends on")

	for path, p := range pkgs {
		if inModule(path) && !inModule(path, "cmd") {
			check(p.Deps, func(d string) bool { return inModule(d, "cmd") }, "nothing imports cmd; %s depends on", path)
		}
	}

	check(pkgs[mod+"/probe"].Deps, func(d string) bool { return inModule(d, "report") },
		"probe never imports report; it depends on")

	report := pkgs[mod+"/report"]
	check(report.Imports, func(d string) bool { return slices.Contains(networkStd, d) },
		"report does no network I/O; it imports")
	// Through its dependencies: none of the module's network packages, and
	// no pion library. (prometheus/client_golang brings net/http along for
	// its HTTP handler; report only writes the exposition to an io.Writer.)
	check(report.Deps, func(d string) bool {
		return inModule(d, networkPackages...) || strings.HasPrefix(d, "github.com/pion/")
	},
		"report does no network I/O; it depends on")
}

// TestOnePionMajor holds that the binary carries one major version of each
// pion library (pion/ice v4.4.9 needs pion/stun/v4 and pion/transport/v5;
// a stun/v3 or transport/v4 beside them would be a second copy of each).
func TestOnePionMajor(t *testing.T) {
	majors := map[string]map[string]bool{} // github.com/pion/NAME -> majors
	for path := range listDeps(t) {
		parts := strings.Split(path, "/")
		if len(parts) < 3 || parts[0] != "github.com" || parts[1] != "pion" {
			continue
		}
		major := "v0/v1"
		if len(parts) > 3 && len(parts[3]) > 1 && parts[3][0] == 'v' && strings.Trim(parts[3][1:], "0123456789") == "" {
			major = parts[3]
		}
		lib := strings.Join(parts[:3], "/")
		if majors[lib] == nil {
			majors[lib] = map[string]bool{}
		}
		majors[lib][major] = true
	}
	if len(majors) == 0 {
		t.Fatal("go list showed no pion library")
	}
	for lib, m := range majors {
		if len(m) > 1 {
			t.Errorf("%s in %d major versions: %v", lib, len(m), m)
		}
	}
}
