package exporter

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// TestConfigErrors: every mistake in a module file is reported with the
// file name and the line it is on, and never quotes a credential.
func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	getenv := env(map[string]string{"PW": "hunter2"})
	for _, c := range []struct {
		name, yaml, want string
	}{
		{"duplicate key", "modules:\n  stun:\n    kind: stun\n    kind: turn\n", `m.yml:4: mapping key "kind" already defined at line 3`},
		{"missing colon", "modules:\n  stun:\n    kind: stun\n    timeout: 5s\n  bad\n", "m.yml:5: could not find expected ':'"},
		{"tab", "modules:\n\tstun:\n", "m.yml:2: found character that cannot start any token"},
		{"unknown field", "modules:\n  stun:\n    kind: stun\n    timout: 5s\n", "m.yml:4: field timout not found"},
		{"unknown top-level field", "modulez:\n  stun:\n    kind: stun\n", "m.yml:1: field modulez not found"},
		{"bad duration", "modules:\n  stun:\n    kind: stun\n    timeout: soon\n", "m.yml:4: cannot unmarshal"},
		{"duration without unit", "modules:\n  a:\n    kind: stun\n  b:\n    kind: stun\n    timeout: 5\n", "m.yml:6: cannot unmarshal !!int `5` into time.Duration"},
		{"no modules", "modules: {}\n", "m.yml:1: no modules"},
		{"empty module", "modules:\n  x:\n", `m.yml:2: module "x": is empty`},
		{"no kind", "modules:\n  x:\n    timeout: 5s\n", `m.yml:2: module "x": no kind`},
		{"bad kind", "modules:\n  x:\n    kind: http\n", `m.yml:3: module "x": kind "http": use stun or turn`},
		{"bad transport", "modules:\n  x:\n    kind: stun\n    stun:\n      transports:\n        - udp\n        - quic\n", `m.yml:7: module "x": transports: "quic": use udp, tcp or tls`},
		{"twice transport", "modules:\n  x:\n    kind: stun\n    stun:\n      transports: [udp, udp]\n", `m.yml:5: module "x": transports: "udp" twice`},
		{"bad family", "modules:\n  x:\n    kind: stun\n    stun:\n      family: ip4\n", `m.yml:5: module "x": family "ip4"`},
		{"bad server", "modules:\n  x:\n    kind: stun\n    stun:\n      servers:\n        - stun.example.com:3478\n        - http://x\n", `m.yml:7: module "x": servers: `},
		{"bad tls port", "modules:\n  x:\n    kind: stun\n    stun:\n      tls_ports: [70000]\n", "m.yml:5: cannot unmarshal"},
		{"stun with turn section", "modules:\n  x:\n    kind: stun\n    turn:\n      user: a\n", `m.yml:4: module "x": a stun module has no turn: section`},
		{"inline password", "modules:\n  x:\n    kind: turn\n    turn:\n      user: a\n      password: hunter2\n", `m.yml:6: module "x": password: credentials do not belong in the module file: use password_file or password_env`},
		{"inline secret", "modules:\n  x:\n    kind: turn\n    turn:\n      secret:\n        - hunter2\n", `m.yml:5: module "x": secret: credentials do not belong`},
		{"no credentials", "modules:\n  x:\n    kind: turn\n    turn:\n      user: a\n", `m.yml:4: module "x": no credentials`},
		{"env unset", "modules:\n  x:\n    kind: turn\n    turn:\n      user: a\n      password_env: NOPE\n", `m.yml:6: module "x": password_env: the environment variable NOPE is not set or empty`},
		{"file missing", "modules:\n  x:\n    kind: turn\n    turn:\n      user: a\n      password_file: /nonexistent/pw\n", `m.yml:6: module "x": password_file: open /nonexistent/pw: no such file`},
		{"file empty", "modules:\n  x:\n    kind: turn\n    turn:\n      user: a\n      password_file: " + empty + "\n", `m.yml:6: module "x": password_file ` + empty + ` is empty`},
		{"file and env", "modules:\n  x:\n    kind: turn\n    turn:\n      user: a\n      password_file: /x\n      password_env: PW\n", `m.yml:7: module "x": both password_file and password_env`},
		{"password and secret", "modules:\n  x:\n    kind: turn\n    turn:\n      user: a\n      password_env: PW\n      secret_env: PW\n", `m.yml:4: module "x": both a password and a shared secret`},
		{"password without user", "modules:\n  x:\n    kind: turn\n    turn:\n      password_env: PW\n", `m.yml:4: module "x": a password needs a user name`},
		{"packets", "modules:\n  x:\n    kind: turn\n    turn:\n      user: a\n      password_env: PW\n      packets: 1000\n", `m.yml:7: module "x": packets 1000: give 1 to 100`},
		{"ca file", "modules:\n  x:\n    kind: turn\n    turn:\n      user: a\n      password_env: PW\n      ca_file: /nonexistent/ca.pem\n", `m.yml:7: module "x": ca_file: open /nonexistent/ca.pem`},
		{"turn without allowed_targets", "modules:\n  x:\n    kind: turn\n    turn:\n      user: a\n      password_env: PW\n", `m.yml:2: module "x": a turn module with credentials needs allowed_targets, or any scrape could send the credentials to a server of its choosing: add allowed_targets: [`},
		{"turn with empty allowed_targets", "modules:\n  x:\n    kind: turn\n    allowed_targets: []\n    turn:\n      secret_env: PW\n", `m.yml:2: module "x": a turn module with credentials needs allowed_targets`},
		{"turn with any host", "modules:\n  x:\n    kind: turn\n    allowed_targets:\n      - turn:t.example\n      - \"*:3478\"\n    turn:\n      secret_env: PW\n", `m.yml:6: module "x": allowed target "*:3478": a turn module's targets are whole host names`},
		{"turn with public_only", "modules:\n  x:\n    kind: turn\n    public_only: true\n    allowed_targets: [turn:t.example]\n    turn:\n      secret_env: PW\n", `m.yml:4: module "x": public_only is for stun modules`},
		{"path.Match pattern", "modules:\n  x:\n    kind: stun\n    allowed_targets:\n      - stun.example.com:3478\n      - turn:turn.example.com*\n", `m.yml:6: module "x": allowed target "turn:turn.example.com*": * stands for a whole host`},
		{"pattern without port", "modules:\n  x:\n    kind: stun\n    allowed_targets: [stun.example.com]\n", `m.yml:4: module "x": allowed target "stun.example.com": give a port`},
		{"pattern with user", "modules:\n  x:\n    kind: stun\n    allowed_targets: [\"turn:u:hunter2@t.example\"]\n", `allowed target "turn:REDACTED@t.example": give [SCHEME:]HOST[:PORT]`},
		{"server with user", "modules:\n  x:\n    kind: stun\n    stun:\n      servers: [\"stun:u:hunter2@stun.example.com:3478\"]\n", `m.yml:5: module "x": servers: `},
		{"server with query", "modules:\n  x:\n    kind: stun\n    stun:\n      servers: [\"stun:stun.example.com?key=hunter2\"]\n", `m.yml:5: module "x": servers: `},
		{"server with bad host", "modules:\n  x:\n    kind: stun\n    stun:\n      servers: [\"hunter2@stun.example.com\"]\n", `m.yml:5: module "x": servers: `},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseConfig("m.yml", []byte(c.yaml), getenv)
			if err == nil {
				t.Fatalf("no error for:\n%s", c.yaml)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q\ndoes not say %q", err, c.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("the error quotes a credential: %q", err)
			}
		})
	}
	if _, err := ParseConfig("m.yml", nil, getenv); err == nil || !strings.Contains(err.Error(), "m.yml: the file is empty") {
		t.Errorf("empty file: %v", err)
	}
	if _, err := LoadConfig(filepath.Join(dir, "missing.yml"), getenv); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	var te *yaml.TypeError
	if _, err := ParseConfig("m.yml", []byte("modules:\n  x:\n    kind: stun\n    timeout: soon\n"), getenv); !errors.As(err, &te) {
		t.Errorf("a YAML type error does not unwrap to *yaml.TypeError: %v", err)
	}
}

// TestConfigDefaults checks what an empty section means.
func TestConfigDefaults(t *testing.T) {
	cfg, err := ParseConfig("m.yml", []byte("modules:\n  s:\n    kind: stun\n  t:\n    kind: turn\n    allowed_targets: [turn:t.example]\n    turn:\n      secret_env: S\n"), env(map[string]string{"S": "x"}))
	if err != nil {
		t.Fatal(err)
	}
	s, tm := cfg.Modules["s"], cfg.Modules["t"]
	if s.Timeout != DefaultModuleTimeout || len(s.STUN.Transports) != 1 || s.STUN.Transports[0] != "udp" || s.STUN.TLSPorts[0] != 5349 {
		t.Errorf("stun defaults: %+v", s)
	}
	if tm.TURN.TLSPort != 5349 || tm.TURN.creds.Auth() != "rest" || tm.TURN.Transports[0] != "udp" {
		t.Errorf("turn defaults: %+v", tm.TURN)
	}
}

// TestExampleConfig loads the module file of docs/examples.
func TestExampleConfig(t *testing.T) {
	cfg, err := LoadConfig(filepath.Join("..", "..", "docs", "examples", "natcheck-exporter.yml"),
		env(map[string]string{"NATCHECK_TURN_PASSWORD": "x"}))
	if err != nil {
		t.Fatal(err)
	}
	if m := cfg.Modules["stun"]; m == nil || m.Kind != KindSTUN || m.Timeout != 5*time.Second {
		t.Errorf("module stun: %+v", m)
	}
	if m := cfg.Modules["turn"]; m == nil || m.Kind != KindTURN {
		t.Errorf("module turn: %+v", m)
	}
}

// TestConfigFileLimits: the module file, credential files and CA files are
// read with a size limit: /dev/zero ends in a clear error, not in memory
// exhaustion.
func TestConfigFileLimits(t *testing.T) {
	if _, err := os.Stat("/dev/zero"); err != nil {
		t.Skip("no /dev/zero")
	}
	if _, err := LoadConfig("/dev/zero", nil); err == nil || !strings.Contains(err.Error(), "/dev/zero: file too large: more than 1 MiB") {
		t.Errorf("module file /dev/zero: %v", err)
	}
	turn := "modules:\n  x:\n    kind: turn\n    allowed_targets: [turn:t.example]\n    turn:\n      user: a\n"
	for _, c := range []struct{ yaml, want string }{
		{turn + "      password_file: /dev/zero\n", `m.yml:7: module "x": password_file: /dev/zero: file too large: more than 64 KiB`},
		{turn + "      secret_file: /dev/zero\n", `m.yml:7: module "x": secret_file: /dev/zero: file too large: more than 64 KiB`},
		{turn + "      password_env: PW\n      ca_file: /dev/zero\n", `m.yml:8: module "x": ca_file: /dev/zero: file too large: more than 4 MiB`},
		{"modules:\n  x:\n    kind: stun\n    stun:\n      ca_file: /dev/zero\n", `m.yml:5: module "x": ca_file: /dev/zero: file too large: more than 4 MiB`},
	} {
		_, err := ParseConfig("m.yml", []byte(c.yaml), env(map[string]string{"PW": "hunter2"}))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("error %v\ndoes not say %q", err, c.want)
		}
	}
}
