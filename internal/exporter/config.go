package exporter

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/natcheck/natcheck/internal/safefile"
	"github.com/natcheck/natcheck/probe"
	"github.com/natcheck/natcheck/turncheck"
)

// Check kinds a module can run.
const (
	// KindSTUN sends STUN Binding requests to the target (a STUN server)
	// over the module's transports, and runs the RFC 5780 NAT behaviour
	// tests when the target supports them.
	KindSTUN = "stun"
	// KindTURN runs a TURN check (turncheck.Check) against the target: connect,
	// Allocate, CreatePermission, data through the relay and back, release.
	KindTURN = "turn"
)

// DefaultModuleTimeout is a module's timeout when it sets none: the
// default scrape_timeout of Prometheus.
const DefaultModuleTimeout = 10 * time.Second

// Config is the exporter's module file, in YAML:
//
//	modules:
//	  stun_udp:
//	    kind: stun
//	    timeout: 5s
//	    stun:
//	      transports: [udp]
//	  turn_udp:
//	    kind: turn
//	    turn:
//	      user: monitor
//	      password_file: /etc/natcheck/turn-password
//
// docs/prometheus.md describes every field.
type Config struct {
	Modules map[string]*Module `yaml:"modules"`
}

// Module is one way of probing a target, chosen by /probe?module=NAME.
type Module struct {
	// Kind is KindSTUN or KindTURN.
	Kind string `yaml:"kind"`
	// Timeout caps a probe; the scrape timeout Prometheus sends, less the
	// exporter's offset, caps it further. Zero means DefaultModuleTimeout.
	Timeout time.Duration `yaml:"timeout"`
	STUN    STUNModule    `yaml:"stun"`
	TURN    TURNModule    `yaml:"turn"`
	// AllowedTargets, when set, lists the only targets this module probes;
	// others get 403 Forbidden before any packet is sent. Each entry is
	// [SCHEME:]HOST[:PORT] (see targetPattern): a whole host name, a
	// *.NAME wildcard of whole labels, an IP address or CIDR prefix, and
	// a port, a range or *. Every endpoint the check would contact at the
	// target (for a HOST[:PORT] target, each transport's port) must match
	// an entry. A turn module must set it: its credentials go to whatever
	// server the target names.
	AllowedTargets []string `yaml:"allowed_targets"`
	// PublicOnly (stun modules) refuses targets that resolve to an
	// address that is not public (loopback, private, link-local, CGNAT,
	// multicast and every other special-purpose range), checking every
	// address the lookup returned, and keeps the probe from sending to any
	// such address afterwards (for instance one a STUN server names in
	// OTHER-ADDRESS).
	PublicOnly bool `yaml:"public_only"`

	patterns []targetPattern
	// Set by LoadConfig: the line of the module in its file.
	line int
}

// STUNModule configures a stun check. The target is a STUN server:
// HOST[:PORT] or a stun:/stuns: URI (RFC 7064).
type STUNModule struct {
	// Transports are checked on the target: "udp", "tcp", "tls"; empty
	// means udp. A URI target that names its transport
	// (stun:...?transport=tcp, stuns:) is checked over that transport only.
	Transports []string `yaml:"transports"`
	// TLSPorts are the ports tried with STUN over TLS when Transports has
	// tls; empty means 5349.
	TLSPorts []uint16 `yaml:"tls_ports"`
	// Family is "ipv4", "ipv6", or empty for both (the probe succeeds when
	// the target works in either).
	Family string `yaml:"family"`
	// Servers are further STUN servers (HOST[:PORT]) probed alongside the
	// target, so that mapping can be compared across destinations. They
	// never decide probe_success.
	Servers []string `yaml:"servers"`
	// Hairpin also tests hairpinning.
	Hairpin bool `yaml:"hairpin"`
	// CAFile holds PEM CA certificates trusted for TLS, besides the system's.
	CAFile string `yaml:"ca_file"`

	servers []probe.Target
	tls     *tls.Config
}

// TURNModule configures a turn check. The target is a turn: or turns: URL
// (RFC 7065), checked alone, or HOST[:PORT], checked over each of the
// module's transports.
type TURNModule struct {
	// Transports are checked on a HOST[:PORT] target: "udp", "tcp",
	// "tls"; empty means udp. The target's port (3478 if omitted) serves
	// udp and tcp; tls goes to TLSPort.
	Transports []string `yaml:"transports"`
	// TLSPort is the port of turns: for a HOST[:PORT] target; zero means
	// 5349.
	TLSPort uint16 `yaml:"tls_port"`
	// User is the TURN user name (long-term credentials), or the user part
	// of REST credentials made from a shared secret.
	User string `yaml:"user"`
	// The password, or a REST shared secret (coturn static-auth-secret),
	// comes from a file or an environment variable, read when the
	// configuration is loaded: never from the module file itself.
	PasswordFile string `yaml:"password_file"`
	PasswordEnv  string `yaml:"password_env"`
	SecretFile   string `yaml:"secret_file"`
	SecretEnv    string `yaml:"secret_env"`
	// CredentialLifetime is the lifetime of REST credentials; zero means
	// turncheck.DefaultRESTLifetime.
	CredentialLifetime time.Duration `yaml:"credential_lifetime"`
	// Packets sent through the relay, 1 to 100; zero means 5.
	Packets int `yaml:"packets"`
	// EndToEnd also connects two relay-only ICE agents through the server.
	EndToEnd bool `yaml:"end_to_end"`
	// CAFile holds PEM CA certificates trusted for turns:, besides the
	// system's.
	CAFile string `yaml:"ca_file"`
	// Insecure skips certificate verification (the TLS metrics still say
	// the certificate was not verified).
	Insecure bool `yaml:"insecure"`

	// Inline credentials are refused with a line number; these fields only
	// catch them.
	Password yaml.Node `yaml:"password"`
	Secret   yaml.Node `yaml:"secret"`

	creds   turncheck.Credentials
	rootCAs *x509.CertPool
}

// LoadConfig reads and checks the module file at path. Environment
// references are resolved with getenv (os.Getenv when nil), and credential
// and CA files are read now. An error names the file and the line.
func LoadConfig(path string, getenv func(string) string) (*Config, error) {
	data, err := safefile.Read(path, safefile.MaxConfig)
	if err != nil {
		return nil, fmt.Errorf("read module file: %w", err)
	}
	return ParseConfig(path, data, getenv)
}

// ParseConfig is LoadConfig on the contents of a file; name is used in
// errors only.
func ParseConfig(name string, data []byte, getenv func(string) string) (*Config, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlError(name, err)
	}
	var cfg Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: the file is empty: define modules (see docs/prometheus.md)", name)
		}
		return nil, yamlError(name, err)
	}
	if len(cfg.Modules) == 0 {
		return nil, fmt.Errorf("%s:%d: no modules: define at least one under modules:", name, lineOf(&root, "modules"))
	}
	names := make([]string, 0, len(cfg.Modules))
	for n := range cfg.Modules {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		m := cfg.Modules[n]
		at := func(path ...string) string {
			return fmt.Sprintf("%s:%d: module %q", name, lineOf(&root, append([]string{"modules", n}, path...)...), n)
		}
		if m == nil {
			return nil, fmt.Errorf("%s: is empty: give at least kind: stun or kind: turn", at())
		}
		m.line = lineOf(&root, "modules", n)
		if err := m.check(at, getenv); err != nil {
			return nil, err
		}
	}
	return &cfg, nil
}

// restricted reports whether the module limits its targets.
func (m *Module) restricted() bool { return len(m.patterns) > 0 || m.PublicOnly }

// permits reports whether every endpoint in eps matches one of the
// module's allowed_targets (true when it has none), and otherwise the
// first endpoint that matches none.
func (m *Module) permits(eps []endpoint) (endpoint, bool) {
	if len(m.patterns) == 0 {
		return endpoint{}, true
	}
	for _, e := range eps {
		if !slices.ContainsFunc(m.patterns, func(p targetPattern) bool { return p.matches(e) }) {
			return e, false
		}
	}
	return endpoint{}, len(eps) > 0
}

// check validates m and resolves its credentials; at locates a field.
func (m *Module) check(at func(...string) string, getenv func(string) string) error {
	for i, raw := range m.AllowedTargets {
		p, err := parsePattern(raw)
		if err != nil {
			return fmt.Errorf("%s: %w", at("allowed_targets", strconv.Itoa(i)), err)
		}
		m.patterns = append(m.patterns, p)
	}
	switch {
	case m.Timeout < 0:
		return fmt.Errorf("%s: timeout %v: give a positive duration such as 5s", at("timeout"), m.Timeout)
	case m.Timeout > 0 && m.Timeout < time.Millisecond:
		return fmt.Errorf("%s: timeout %v: give a unit, as in 5s", at("timeout"), m.Timeout)
	case m.Timeout == 0:
		m.Timeout = DefaultModuleTimeout
	}
	hasSTUN := !isZeroSTUN(m.STUN)
	hasTURN := !isZeroTURN(m.TURN)
	switch m.Kind {
	case KindSTUN:
		if hasTURN {
			return fmt.Errorf("%s: a stun module has no turn: section", at("turn"))
		}
		return m.STUN.check(at, m.PublicOnly)
	case KindTURN:
		if hasSTUN {
			return fmt.Errorf("%s: a turn module has no stun: section", at("stun"))
		}
		if err := m.TURN.check(at, getenv); err != nil {
			return err
		}
		return m.checkTURNTargets(at)
	case "":
		return fmt.Errorf("%s: no kind: give kind: stun or kind: turn", at())
	}
	return fmt.Errorf("%s: kind %q: use stun or turn", at("kind"), m.Kind)
}

// checkTURNTargets holds a turn module, which always has credentials, to
// an allowlist of whole host names: otherwise a scrape could send its
// credentials to a server of the scraper's choosing.
func (m *Module) checkTURNTargets(at func(...string) string) error {
	if m.PublicOnly {
		return fmt.Errorf("%s: public_only is for stun modules: a turn module probes only its allowed_targets; list them there", at("public_only"))
	}
	if len(m.patterns) == 0 {
		return fmt.Errorf("%s: a turn module with credentials needs allowed_targets, or any scrape could send the credentials to a server of its choosing: add allowed_targets: [\"turn:turn.example.com:3478\", \"turns:turn.example.com:5349\"] with your servers", at())
	}
	for i, p := range m.patterns {
		if p.anyHost {
			return fmt.Errorf("%s: allowed target %q: a turn module's targets are whole host names, *.NAME or IP prefixes, not any host", at("allowed_targets", strconv.Itoa(i)), redactTarget(p.raw))
		}
	}
	return nil
}

func isZeroSTUN(s STUNModule) bool {
	return s.Transports == nil && s.TLSPorts == nil && s.Family == "" && s.Servers == nil && !s.Hairpin && s.CAFile == ""
}

func isZeroTURN(t TURNModule) bool {
	return t.Transports == nil && t.TLSPort == 0 && t.User == "" && t.PasswordFile == "" && t.PasswordEnv == "" &&
		t.SecretFile == "" && t.SecretEnv == "" && t.CredentialLifetime == 0 && t.Packets == 0 && !t.EndToEnd &&
		t.CAFile == "" && !t.Insecure && t.Password.Kind == 0 && t.Secret.Kind == 0
}

func checkTransports(at func(...string) string, section string, ts []string) ([]string, error) {
	if len(ts) == 0 {
		return []string{probe.TransportUDP}, nil
	}
	seen := map[string]bool{}
	for i, t := range ts {
		switch t {
		case probe.TransportUDP, probe.TransportTCP, probe.TransportTLS:
		default:
			return nil, fmt.Errorf("%s: transports: %q: use udp, tcp or tls", at(section, "transports", strconv.Itoa(i)), t)
		}
		if seen[t] {
			return nil, fmt.Errorf("%s: transports: %q twice", at(section, "transports", strconv.Itoa(i)), t)
		}
		seen[t] = true
	}
	return ts, nil
}

func (s *STUNModule) check(at func(...string) string, publicOnly bool) error {
	var err error
	if s.Transports, err = checkTransports(at, "stun", s.Transports); err != nil {
		return err
	}
	for i, p := range s.TLSPorts {
		if p == 0 {
			return fmt.Errorf("%s: tls_ports: 0 is not a port", at("stun", "tls_ports", strconv.Itoa(i)))
		}
	}
	if len(s.TLSPorts) == 0 {
		s.TLSPorts = []uint16{probe.DefaultTLSPort}
	}
	switch s.Family {
	case "", string(probe.IPv4), string(probe.IPv6):
	default:
		return fmt.Errorf("%s: family %q: use ipv4 or ipv6, or leave it out for both", at("stun", "family"), s.Family)
	}
	for i, raw := range s.Servers {
		t, err := probe.ParseTarget(raw)
		if err != nil {
			// The parser quotes the address: hide any user part or query value.
			return fmt.Errorf("%s: servers: %w", at("stun", "servers", strconv.Itoa(i)), scrub(raw, err))
		}
		if a, err := netip.ParseAddr(t.Host); err == nil && publicOnly && !isPublic(a) {
			return fmt.Errorf("%s: servers: %s is not a public address, and the module has public_only", at("stun", "servers", strconv.Itoa(i)), a)
		}
		s.servers = append(s.servers, t)
	}
	if s.CAFile != "" {
		pool, err := turncheck.LoadCAFile(s.CAFile)
		if err != nil {
			return fmt.Errorf("%s: ca_file: %w", at("stun", "ca_file"), err)
		}
		s.tls = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return nil
}

func (t *TURNModule) check(at func(...string) string, getenv func(string) string) error {
	for _, f := range []struct {
		name string
		n    *yaml.Node
		use  string
	}{{"password", &t.Password, "password_file or password_env"}, {"secret", &t.Secret, "secret_file or secret_env"}} {
		if f.n.Kind != 0 {
			// The value is never quoted back: it is a credential.
			return fmt.Errorf("%s: %s: credentials do not belong in the module file: use %s", at("turn", f.name), f.name, f.use)
		}
	}
	var err error
	if t.Transports, err = checkTransports(at, "turn", t.Transports); err != nil {
		return err
	}
	if t.TLSPort == 0 {
		t.TLSPort = probe.DefaultTLSPort
	}
	if t.Packets < 0 || t.Packets > 100 {
		return fmt.Errorf("%s: packets %d: give 1 to 100", at("turn", "packets"), t.Packets)
	}
	if t.CredentialLifetime < 0 || (t.CredentialLifetime > 0 && t.CredentialLifetime < time.Second) {
		return fmt.Errorf("%s: credential_lifetime %v: give a duration such as 1h", at("turn", "credential_lifetime"), t.CredentialLifetime)
	}
	password, err := secretFrom(at, getenv, "password", t.PasswordFile, t.PasswordEnv)
	if err != nil {
		return err
	}
	secret, err := secretFrom(at, getenv, "secret", t.SecretFile, t.SecretEnv)
	if err != nil {
		return err
	}
	t.creds = turncheck.Credentials{User: t.User, Lifetime: t.CredentialLifetime}
	switch {
	case password != "" && secret != "":
		return fmt.Errorf("%s: both a password and a shared secret: give one", at("turn"))
	case secret != "":
		t.creds.SharedSecret = turncheck.NewSecret(secret)
	case password != "":
		t.creds.Password = turncheck.NewSecret(password)
	}
	switch {
	case t.creds.SharedSecret.IsZero() && t.creds.Password.IsZero():
		return fmt.Errorf("%s: no credentials: give user with password_file or password_env, or secret_file or secret_env", at("turn"))
	case t.creds.SharedSecret.IsZero() && t.User == "":
		return fmt.Errorf("%s: a password needs a user name: add user", at("turn"))
	}
	if t.CAFile != "" {
		if t.rootCAs, err = turncheck.LoadCAFile(t.CAFile); err != nil {
			return fmt.Errorf("%s: ca_file: %w", at("turn", "ca_file"), err)
		}
	}
	return nil
}

// secretFrom reads a credential from file or from the environment
// variable env; at most one may be given.
func secretFrom(at func(...string) string, getenv func(string) string, what, file, env string) (string, error) {
	switch {
	case file != "" && env != "":
		return "", fmt.Errorf("%s: both %s_file and %s_env: give one", at("turn", what+"_env"), what, what)
	case file != "":
		b, err := safefile.Read(file, safefile.MaxSecret)
		if err != nil {
			return "", fmt.Errorf("%s: %s_file: %w", at("turn", what+"_file"), what, err)
		}
		s := strings.TrimRight(string(b), "\r\n")
		if s == "" {
			return "", fmt.Errorf("%s: %s_file %s is empty", at("turn", what+"_file"), what, file)
		}
		return s, nil
	case env != "":
		s := getenv(env)
		if s == "" {
			return "", fmt.Errorf("%s: %s_env: the environment variable %s is not set or empty", at("turn", what+"_env"), what, env)
		}
		return s, nil
	}
	return "", nil
}

// lineOf returns the line of the node at path in a YAML document: mapping
// keys, or indexes into sequences. When the path goes further than the
// document, it returns the line of the deepest node found.
func lineOf(root *yaml.Node, path ...string) int {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	for _, p := range path {
		var next *yaml.Node
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == p {
					line = n.Content[i].Line
					next = n.Content[i+1]
					break
				}
			}
		case yaml.SequenceNode:
			if i, err := strconv.Atoi(p); err == nil && i >= 0 && i < len(n.Content) {
				next = n.Content[i]
				line = next.Line
			}
		}
		if next == nil {
			break
		}
		n = next
	}
	return line
}

// yamlLine matches the "line N: " of yaml.v3's messages.
var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): `)

// yamlError puts the file name before the line numbers of a yaml.v3 error,
// one error per line: "FILE:LINE: message".
func yamlError(name string, err error) error {
	var msgs []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{err.Error()}
	}
	out := make([]string, 0, len(msgs))
	for _, m := range msgs {
		if s := yamlLine.FindStringSubmatch(m); s != nil {
			m = name + ":" + s[1] + ": " + strings.TrimPrefix(m, s[0])
		} else {
			m = name + ": " + strings.TrimPrefix(m, "yaml: ")
		}
		out = append(out, m)
	}
	return &fileError{msg: strings.Join(out, "\n"), err: err}
}

// fileError is a YAML error restated with the file name; it unwraps to
// yaml.v3's error.
type fileError struct {
	msg string
	err error
}

func (e *fileError) Error() string { return e.msg }
func (e *fileError) Unwrap() error { return e.err }
