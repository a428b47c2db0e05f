package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// Vocabulary of natcheck's JSON report, used for both tools' answers.
const (
	None                    = "none"
	EndpointIndependent     = "endpoint-independent"
	AddressDependent        = "address-dependent"
	AddressAndPortDependent = "address-and-port-dependent"
	Unknown                 = "unknown"

	TypeOpenInternet       = "open-internet"
	TypeFirewall           = "firewall"
	TypeFullCone           = "full-cone"
	TypeRestrictedCone     = "restricted-cone"
	TypePortRestrictedCone = "port-restricted-cone"
	TypeSymmetric          = "symmetric"
	TypeUDPBlocked         = "udp-blocked"

	WayDirectUDP = "direct-udp"
	WayTURNUDP   = "turn-udp"
	WayTURNTCP   = "turn-tcp"
	WayTURNTLS   = "turn-tls"
	WayNone      = "none"
)

// ClassicType names the NAT type of a mapping and filtering behaviour, by
// the rules natcheck uses: no NAT with no (or endpoint-independent)
// filtering is open-internet, no NAT with any other filtering a firewall,
// address- or port-dependent mapping symmetric, and no UDP at all
// udp-blocked.
func ClassicType(udp bool, mapping, filtering string) string {
	if !udp {
		return TypeUDPBlocked
	}
	switch mapping {
	case None:
		switch filtering {
		case None, EndpointIndependent:
			return TypeOpenInternet
		case AddressDependent, AddressAndPortDependent:
			return TypeFirewall
		}
	case EndpointIndependent:
		switch filtering {
		case EndpointIndependent:
			return TypeFullCone
		case AddressDependent:
			return TypeRestrictedCone
		case AddressAndPortDependent:
			return TypePortRestrictedCone
		}
	case AddressDependent, AddressAndPortDependent:
		return TypeSymmetric
	}
	return Unknown
}

// NatdiscoveryResult is what `turnutils_natdiscovery -m -f` concluded, in
// natcheck's vocabulary.
type NatdiscoveryResult struct {
	UDP       bool   // at least one Binding response arrived
	Mapping   string // "" if it printed no conclusion
	Filtering string // "" if it printed no conclusion
	Type      string // ClassicType of the above
	Responses int    // Binding responses it printed
	Timeouts  int    // "STUN receive timeout" lines
	Duration  time.Duration
	Output    string
}

// ParseNatdiscovery reads the output of `turnutils_natdiscovery -m -f`
// (coturn 4.6).
func ParseNatdiscovery(out string) NatdiscoveryResult {
	r := NatdiscoveryResult{Output: out}
	mapPart, filtPart, _ := strings.Cut(out, "-= Filtering Behavior Discovery =-")
	r.Responses = strings.Count(out, "UDP reflexive addr")
	r.Timeouts = strings.Count(out, "STUN receive timeout")
	r.UDP = r.Responses > 0
	switch {
	case strings.Contains(mapPart, "No NAT!"):
		// It goes on to print a mapping line too; no NAT is the answer.
		r.Mapping = None
	case strings.Contains(mapPart, "NAT with Endpoint Independent Mapping!"):
		r.Mapping = EndpointIndependent
	case strings.Contains(mapPart, "NAT with Address Dependent Mapping!"):
		r.Mapping = AddressDependent
	case strings.Contains(mapPart, "NAT with Address and Port Dependent Mapping!"):
		r.Mapping = AddressAndPortDependent
	}
	switch {
	case strings.Contains(filtPart, "NAT with Endpoint Independent Filtering!"):
		r.Filtering = EndpointIndependent
	case strings.Contains(filtPart, "NAT with Address Dependent Filtering!"):
		r.Filtering = AddressDependent
	case strings.Contains(filtPart, "NAT with Address and Port Dependent Filtering!"):
		r.Filtering = AddressAndPortDependent
	}
	r.Type = ClassicType(r.UDP, r.Mapping, r.Filtering)
	return r
}

// RunNatdiscovery runs `turnutils_natdiscovery -m -f [args] <STUN address>`
// in the client namespace, as a user would.
func (l *Lab) RunNatdiscovery(ctx context.Context, args ...string) (NatdiscoveryResult, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	argv := append([]string{"-m", "-f"}, args...)
	argv = append(argv, l.STUN.Addr().String())
	cmd := l.ClientCommand(ctx, "turnutils_natdiscovery", argv...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	start := time.Now()
	err := cmd.Run()
	r := ParseNatdiscovery(out.String())
	r.Duration = time.Since(start)
	if err != nil {
		return r, fmt.Errorf("turnutils_natdiscovery: %w", err)
	}
	return r, nil
}

// NatcheckResult holds the fields of natcheck's --json report that the lab
// checks, the exit code and the run time.
type NatcheckResult struct {
	SchemaVersion int  `json:"schema_version"`
	UDP           bool `json:"udp"`
	NAT           struct {
		Mapping   string `json:"mapping"`
		Filtering string `json:"filtering"`
		Type      string `json:"type"`
		TCP       *bool  `json:"tcp"`
		Hairpin   *bool  `json:"hairpin"`
	} `json:"nat"`
	Verdict struct {
		DirectUDP string `json:"direct_udp"`
		WayOut    struct {
			Via  string `json:"via"`
			Port int    `json:"port"`
			Cost string `json:"cost"`
		} `json:"way_out"`
		Summary string `json:"summary"`
	} `json:"verdict"`
	Paths      []NatcheckPath `json:"paths"`
	Measured   bool           `json:"measured"`
	DurationMS int64          `json:"duration_ms"`

	ExitCode int           `json:"-"`
	Duration time.Duration `json:"-"` // wall clock, process start to exit
	Stdout   string        `json:"-"`
	Stderr   string        `json:"-"`
}

// NatcheckPath is one attempt in natcheck's paths list.
type NatcheckPath struct {
	Transport   string   `json:"transport"` // udp, tcp or tls
	Server      string   `json:"server"`
	Family      string   `json:"family"`
	Address     string   `json:"address"`
	Port        int      `json:"port"`
	OK          bool     `json:"ok"`
	Reachable   bool     `json:"reachable"`
	TimeMS      *float64 `json:"time_ms"`
	ConnectMS   *float64 `json:"connect_ms"`
	HandshakeMS *float64 `json:"handshake_ms"`
	Mapped      string   `json:"mapped_address"`
	CertError   string   `json:"cert_error"`
	Error       string   `json:"error"`
}

// NatcheckArgs are the arguments the lab gives natcheck: both STUN servers,
// JSON output and a 5 s timeout.
func (l *Lab) NatcheckArgs() []string {
	return []string{"--stun", l.STUN.String(), "--stun", l.PlainSTUN.String(), "--json", "--timeout", "5s"}
}

// RunNatcheck runs `ip netns exec <client> <binary> <NatcheckArgs>` and
// decodes its report. An exit code other than 0 is not an error; a report
// that does not decode is, unless the exit code is 2 or 3 and stdout is
// empty.
func (l *Lab) RunNatcheck(ctx context.Context, binary string) (NatcheckResult, error) {
	return l.RunNatcheckWith(ctx, nil, binary, l.NatcheckArgs()...)
}

// RunNatcheckWith is RunNatcheck with other arguments, and env added to
// natcheck's environment (for instance SSL_CERT_FILE=Lab.TURN.CACertFile,
// with which Go trusts the lab CA instead of the system's roots). A run
// that does not end by itself within 30 s is killed and is an error.
func (l *Lab) RunNatcheckWith(ctx context.Context, env []string, binary string, args ...string) (NatcheckResult, error) {
	return runNatcheckIn(ctx, l.Client, env, binary, args...)
}

// runNatcheckIn is RunNatcheckWith in namespace ns.
func runNatcheckIn(ctx context.Context, ns string, env []string, binary string, args ...string) (NatcheckResult, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := nsCommand(ctx, ns, binary, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	var r NatcheckResult
	r.Duration = time.Since(start)
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.Exited():
		r.ExitCode = ee.ExitCode()
	default:
		return r, fmt.Errorf("natcheck: %w (stderr: %s)", err, stderr.String())
	}
	out := stdout.Bytes()
	if err := json.Unmarshal(out, &r); err != nil {
		if len(bytes.TrimSpace(out)) == 0 && r.ExitCode >= 2 {
			r.Stderr = stderr.String()
			return r, nil
		}
		return r, fmt.Errorf("natcheck: decoding report (exit %d): %w\nstdout: %s\nstderr: %s", r.ExitCode, err, out, stderr.String())
	}
	r.Stdout, r.Stderr = string(out), stderr.String()
	return r, nil
}

// ModuleRoot returns the directory of natcheck's go.mod, looking upwards
// from the working directory.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for i := 0; i < 32; i++ {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module github.com/natcheck/natcheck\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "", errors.New("natcheck's go.mod not found above the working directory")
}

// ErrNoNatcheck means cmd/natcheck does not exist yet.
var ErrNoNatcheck = errors.New("cmd/natcheck/main.go does not exist yet")

// BuildNatcheck builds ./cmd/natcheck of the module at root into dir and
// returns the binary's path.
func BuildNatcheck(ctx context.Context, root, dir string) (string, error) {
	if _, err := os.Stat(filepath.Join(root, "cmd", "natcheck", "main.go")); err != nil {
		return "", ErrNoNatcheck
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(dir, "natcheck")
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", bin, "./cmd/natcheck")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build ./cmd/natcheck: %w\n%s", err, out)
	}
	return bin, nil
}
