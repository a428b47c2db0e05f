package main

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/natcheck/natcheck/internal/testcert"
	"github.com/natcheck/natcheck/stunserver"
	"github.com/natcheck/natcheck/stunserver/stuntest"
)

// wantUsage checks that a run exited 2 with one line on stderr that
// contains want, and nothing on stdout.
func wantUsage(t *testing.T, args []string, code int, out, errs, want string) {
	t.Helper()
	if code != exitUsage || out != "" || !strings.Contains(errs, want) || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
		t.Errorf("%.200q: exit %d, stdout %q, stderr %q; want exit 2 and one line with %q", args, code, out, errs, want)
	}
}

// TestSecretsInServerAddresses gives server addresses with a secret in
// their userinfo or query, well-formed and malformed, to every flag and
// argument that takes one, and to a flag that takes none: each is a usage
// error, and the secret shows in neither stdout nor stderr.
func TestSecretsInServerAddresses(t *testing.T) {
	t.Parallel()
	inputs := []string{
		"stun:user:SECRET@host",
		"stun:user:SECRET@",
		"stun:SECRET@[::1",
		"turn:u:SECRET@host?transport=udp&password=SECRET2",
		"turns:u:SECRET@host:443",
		"stuns:SECRET@host",
		"stun://user:SECRET@host",
		"user:SECRET@host:3478",
		"SECRET@host",
		"stun:host?password=SECRET",
		"stun:host?SECRET",
		"stun:host?transport=SECRET",
		"turn:host?SECRET",
		"turn:host?transport=udp&transport=SECRET",
		"turns:host?credential=SECRET",
		"stun:host?transport=udp&x=a@SECRET",
		"https://u:SECRET@host/?token=SECRET",
		"SECRET9:x@host", // the secret in the place of a scheme
	}
	pw := envWith(map[string]string{envTURNPassword: "pw"})
	dir := t.TempDir()
	for i, in := range inputs {
		ice := filepath.Join(dir, fmt.Sprintf("ice%d.json", i))
		list, _ := json.Marshal([]map[string]string{{"urls": in, "username": "u", "credential": "c"}})
		if err := os.WriteFile(ice, list, 0o600); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{
			{"--stun", in},
			{in},
			{"--turn-user", "u", "--turn", in},
			{"turn", "--turn-user", "u", in},
			{"turn", "--ice-servers", ice},
			{"--ice-servers", ice, "--stun", "127.0.0.1"},
			{"--timeout", in},
			{"turn", "--packets", in, "turn:x"},
		} {
			code, out, errs := runArgs(t, pw, args...)
			if code != exitUsage {
				t.Errorf("%q: exit %d, want 2; stderr %q", args, code, errs)
			}
			if strings.Contains(out+errs, "SECRET") {
				t.Errorf("%q: the secret shows:\nstdout %q\nstderr %q", args, out, errs)
			}
		}
	}
}

// TestFileSizeLimits: every file the commands read is read with a limit;
// /dev/zero ends in a one-line error, not in memory exhaustion.
func TestFileSizeLimits(t *testing.T) {
	t.Parallel()
	pw := envWith(map[string]string{envTURNPassword: "pw"})
	for _, args := range [][]string{
		{"turn", "--ice-servers", "/dev/zero"},
		{"--ice-servers", "/dev/zero"},
		{"turn", "--turn-user", "u", "--turn-password-file", "/dev/zero", "turn:x"},
		{"turn", "--turn-user", "u", "--turn-secret-file", "/dev/zero", "turn:x"},
		{"--turn-user", "u", "--turn-secret-file", "/dev/zero", "--turn", "turn:x"},
		{"turn", "--turn-user", "u", "--ca-file", "/dev/zero", "turns:x"},
		{"--ca-file", "/dev/zero"},
		{"--ca-file", "/dev/zero", "--stun", "stuns:127.0.0.1"},
		{"serve", "--primary", "127.0.0.1", "--tls-cert", "/dev/zero", "--tls-key", "/dev/zero"},
	} {
		code, out, errs := runArgs(t, pw, args...)
		wantUsage(t, args, code, out, errs, "/dev/zero: file too large")
	}
}

// TestCAFileWithoutTURN: --ca-file is read whatever other flags are given.
func TestCAFileWithoutTURN(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.pem")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--ca-file", filepath.Join(dir, "missing.pem"), "--stun", "127.0.0.1"}, "--ca-file: open " + filepath.Join(dir, "missing.pem") + ": no such file"},
		{[]string{"--ca-file", empty}, "--ca-file: " + empty + ": no PEM certificate"},
		{[]string{"--ca-file", empty, "--udp-only"}, "no PEM certificate"},
	} {
		code, out, errs := runArgs(t, env{}, c.args...)
		wantUsage(t, c.args, code, out, errs, c.want)
	}
}

// TestSTUNOverTLSPrivateCA: STUN over TLS to a server whose certificate a
// private CA signed works with --ca-file naming the CA and fails without,
// both for a stuns: target and for the TLS path probes of a plain target
// (--tcp-ports). No TURN flag is given.
func TestSTUNOverTLSPrivateCA(t *testing.T) {
	t.Parallel()
	ca, err := testcert.NewCA("natcheck test CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue("stun server", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, ca.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	s := stuntest.Start(t, stunserver.Config{
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{leaf.TLS()}},
		TLSAddrs:  []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")},
	})
	tlsPort := strconv.Itoa(int(s.TLSAddrs()[0].Port()))

	type path struct {
		Transport string `json:"transport"`
		Port      int    `json:"port"`
		OK        bool   `json:"ok"`
		CertError string `json:"cert_error"`
		Error     string `json:"error"`
	}
	// tlsPath runs natcheck and returns its exit code and its one TLS path.
	tlsPath := func(args ...string) (int, path) {
		t.Helper()
		args = append([]string{"-4", "--json", "--timeout", "5s"}, args...)
		code, out, errs := runArgs(t, env{}, args...)
		var r struct{ Paths []path }
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("%q: exit %d, not JSON: %v\n%s\n%s", args, code, err, out, errs)
		}
		var found []path
		for _, p := range r.Paths {
			if p.Transport == "tls" {
				found = append(found, p)
			}
		}
		if len(found) != 1 {
			t.Fatalf("%q: TLS paths %+v, want one", args, found)
		}
		return code, found[0]
	}

	stuns := "stuns:127.0.0.1:" + tlsPort
	code, p := tlsPath("--stun", stuns, "--ca-file", caFile)
	if code != exitOK || !p.OK || p.CertError != "" {
		t.Errorf("%s with --ca-file: exit %d, path %+v", stuns, code, p)
	}
	code, p = tlsPath("--stun", stuns)
	if p.OK || !strings.Contains(p.CertError, "unknown authority") {
		t.Errorf("%s without --ca-file: exit %d, path %+v; want an unknown authority", stuns, code, p)
	}

	// A plain target: UDP, TCP on its port, and TLS on --tcp-ports.
	plain := s.Primary().String()
	_, p = tlsPath("--stun", plain, "--tcp-ports", tlsPort, "--ca-file", caFile)
	if !p.OK || p.Port != int(s.TLSAddrs()[0].Port()) {
		t.Errorf("%s --tcp-ports %s with --ca-file: path %+v", plain, tlsPort, p)
	}
	_, p = tlsPath("--stun", plain, "--tcp-ports", tlsPort)
	if p.OK || !strings.Contains(p.CertError, "unknown authority") {
		t.Errorf("%s --tcp-ports %s without --ca-file: path %+v", plain, tlsPort, p)
	}
}

// TestFlagContradictions: flags that cannot hold together, and values out
// of range, are usage errors that say so, not silent choices.
func TestFlagContradictions(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 300)
	label := strings.Repeat("b", 64) + ".example.com"
	dir := t.TempDir()
	ice := filepath.Join(dir, "ice.json")
	if err := os.WriteFile(ice, []byte(`[{"urls": "turn:127.0.0.1", "username": "u", "credential": "c"}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	stunOnly := filepath.Join(dir, "stun.json")
	if err := os.WriteFile(stunOnly, []byte(`[{"urls": "stun:127.0.0.1"}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte("pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pw := envWith(map[string]string{envTURNPassword: "pw"})
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-4", "-6"}, "give -4 or -6, not both"},
		{[]string{"-4", "-6", "--stun", "127.0.0.1"}, "give -4 or -6, not both"},
		{[]string{"--stun", long}, "300 characters long; DNS allows at most 253"},
		{[]string{"--stun", long + ":3478"}, "300 characters long"},
		{[]string{"--stun", "stun:" + long}, "300 characters long"},
		{[]string{"--stun", label}, "64 characters long; DNS allows at most 63"},
		{[]string{"--stun", "stun.exa mple.com"}, "not allowed in a host name"},
		{[]string{"--stun", "stun..example.com"}, "empty label"},
		{[]string{"--stun", "300.1.2.3"}, "neither an IP address nor a host name"},
		{[]string{"--turn-user", "u", "--turn", "turn:" + long}, "300 characters long"},
		{[]string{"turn", "--turn-user", "u", "turns:" + label}, "at most 63"},
		{[]string{"--json", "--format", "text"}, `--json and --format "text": give one`},
		{[]string{"turn", "--turn-user", "u", "--json", "--format", "prometheus", "turn:x"}, `--json and --format "prometheus": give one`},
		{[]string{"--udp-only", "--tcp-ports", "443"}, "--tcp-ports with --udp-only"},
		{[]string{"--every", "-1m"}, "give a positive duration"},
		{[]string{"--every", "1m", "--count", "-1"}, "give a positive number"},
		{[]string{"--timeout", "-5s"}, "give a positive duration"},
		{[]string{"turn", "--turn-user", "u", "--timeout", "-5s", "turn:x"}, "give a positive duration"},
		{[]string{"turn", "--turn-user", "u", "--packets", "0", "turn:x"}, "give 1 to 100"},
		{[]string{"turn", "--turn-user", "u", "--packets", "-3", "turn:x"}, "give 1 to 100"},
		{[]string{"turn", "--ice-servers", ice, "--turn-user", "u"}, "apply to --turn URLs only"},
		{[]string{"turn", "--turn-user", "u", "--turn-password", "pw", "--turn-password-file", pwFile, "turn:x"}, "--turn-password and --turn-password-file: give one"},
		{[]string{"--insecure"}, "without a TURN server"},
		{[]string{"--ice-servers", stunOnly}, "no turn: or turns: URL in it"},
	} {
		code, out, errs := runArgs(t, pw, c.args...)
		wantUsage(t, c.args, code, out, errs, c.want)
	}
	// Still allowed: --json with --format json; a name of exactly 253
	// characters, with labels of 63, and a trailing dot.
	if o, err := parseArgs([]string{"--json", "--format", "json"}, nil, noEnv); err != nil || o.format != "json" {
		t.Errorf("--json --format json: %v", err)
	}
	l63 := strings.Repeat("c", 63)
	name := strings.Join([]string{l63, l63, l63, strings.Repeat("d", 61)}, ".") + "."
	if o, err := parseArgs([]string{"--stun", name}, nil, noEnv); err != nil || len(o.servers) != 1 || o.servers[0].Host != name {
		t.Errorf("a 253-character name: %v", err)
	}
	if o, err := parseArgs([]string{"-6"}, nil, noEnv); err != nil || len(o.families) != 1 {
		t.Errorf("-6: %+v %v", o.families, err)
	}
}
