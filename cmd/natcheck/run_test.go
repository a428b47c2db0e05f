package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/pion/transport/v5/vnet"

	"github.com/natcheck/natcheck/internal/vnettest"
	"github.com/natcheck/natcheck/stunserver"
)

func noEnv(string) string { return "" }

func runArgs(t *testing.T, e env, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	if e.getenv == nil {
		e.getenv = noEnv
	}
	code := run(context.Background(), args, &out, &errb, e)
	return code, out.String(), errb.String()
}

func loopbackServer(t *testing.T) *stunserver.Server {
	t.Helper()
	s, err := stunserver.Start(context.Background(), stunserver.Config{
		Primary: netip.MustParseAddrPort("127.0.0.1:0"), Alternate: netip.MustParseAddrPort("127.0.0.2:0"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestUsageErrors(t *testing.T) {
	cases := map[string][]string{
		"flag provided but not defined": {"--bogus"},
		"port":                          {"--stun", "host:99999"},
		"brackets":                      {"--stun", "2001:db8::1:3478x"},
		"use text, json or json-line":   {"--format", "xml"},
		"unknown condition":             {"--require", "udp,teleport"},
		"positive duration":             {"--timeout", "0s"},
		"invalid value":                 {"--timeout", "soon"},
		"unexpected argument":           {"stun.example.com"},
		"is not a port":                 {"--tcp-ports", "443,x"},
		"unknown scheme":                {"--stun", "turn:turn.example.com"},
	}
	for want, args := range cases {
		code, out, errs := runArgs(t, env{}, args...)
		if code != exitUsage {
			t.Errorf("%v: exit %d, want %d", args, code, exitUsage)
		}
		if out != "" {
			t.Errorf("%v: wrote to stdout: %q", args, out)
		}
		if !strings.Contains(errs, want) || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
			t.Errorf("%v: stderr %q, want one line mentioning %q", args, errs, want)
		}
	}
}

func TestHelpAndVersion(t *testing.T) {
	code, out, _ := runArgs(t, env{}, "--help")
	if code != exitOK || !strings.Contains(out, "Exit codes") || !strings.Contains(out, "--require") {
		t.Errorf("--help: exit %d, output %q", code, out)
	}
	code, out, _ = runArgs(t, env{}, "--version")
	if code != exitOK || !strings.HasPrefix(out, "natcheck ") {
		t.Errorf("--version: exit %d, output %q", code, out)
	}
}

func TestJSONAgainstLoopbackServer(t *testing.T) {
	s := loopbackServer(t)
	code, out, errs := runArgs(t, env{}, "--stun", s.Primary().String(), "--json", "-4", "--require", "udp,direct-udp")
	if code != exitOK {
		t.Fatalf("exit %d; stderr %q", code, errs)
	}
	var r struct {
		SchemaVersion int  `json:"schema_version"`
		UDP           bool `json:"udp"`
		NAT           struct{ Mapping, Filtering, Type string }
		Verdict       struct {
			DirectUDP string `json:"direct_udp"`
		}
		Servers []struct {
			Address string
			RTTMS   *float64 `json:"rtt_ms"`
			RFC5780 *bool    `json:"rfc5780"`
		}
		DurationMS *int64 `json:"duration_ms"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	if r.SchemaVersion != 2 || !r.UDP || r.NAT.Mapping != "none" || r.NAT.Filtering != "none" || r.NAT.Type != "open-internet" || r.Verdict.DirectUDP != "likely" {
		t.Errorf("report %+v", r)
	}
	if len(r.Servers) != 1 || r.Servers[0].RTTMS == nil || r.Servers[0].RFC5780 == nil || !*r.Servers[0].RFC5780 || r.DurationMS == nil {
		t.Errorf("servers %+v duration %v", r.Servers, r.DurationMS)
	}
}

func TestJSONLineAndText(t *testing.T) {
	s := loopbackServer(t)
	_, out, _ := runArgs(t, env{}, "--stun", s.Primary().String(), "--format", "json-line", "-4")
	if strings.Count(out, "\n") != 1 || !json.Valid([]byte(out)) {
		t.Errorf("json-line output is not one JSON line: %q", out)
	}
	code, out, errs := runArgs(t, env{getenv: func(k string) string { return "" }}, "--stun", s.Primary().String(), "-4", "-v")
	first, _, _ := strings.Cut(out, "\n")
	if code != exitOK || !strings.HasPrefix(first, "Direct UDP likely") {
		t.Errorf("text output does not lead with the answer: %q", first)
	}
	if strings.Contains(out, "\x1b[") {
		t.Error("colour codes written to a non-terminal")
	}
	for _, want := range []string{"send", "reply", "filtering-II", "CHANGE-REQUEST"} {
		if !strings.Contains(errs, want) {
			t.Errorf("-v trace lacks %q:\n%s", want, errs)
		}
	}
}

func TestNothingMeasuredExitsThree(t *testing.T) {
	// Closed ports on loopback: the requests go unanswered.
	code, out, _ := runArgs(t, env{}, "--stun", "127.0.0.3:9", "--stun", "127.0.0.4:9", "--require", "udp", "--json", "--timeout", "1500ms")
	if code != exitNotMeasured {
		t.Errorf("exit %d, want %d", code, exitNotMeasured)
	}
	if !strings.Contains(out, `"udp": false`) || !strings.Contains(out, `"type": "udp-blocked"`) {
		t.Errorf("output %s", out)
	}
}

// TestRequireDirectUDPBehindSymmetricNAT runs the command through a
// simulated symmetric NAT: measured, but direct UDP is unlikely, so
// --require direct-udp exits 1 while --require udp passes.
func TestRequireDirectUDPBehindSymmetricNAT(t *testing.T) {
	wan := vnettest.NewWAN(t)
	srv := wan.Host("1.2.3.4", "1.2.3.5")
	client := wan.NAT("10.0.0.0/24", "27.1.1.1",
		&vnet.NATType{MappingBehavior: vnet.EndpointAddrPortDependent, FilteringBehavior: vnet.EndpointAddrPortDependent}).Host("10.0.0.2")
	wan.Start()
	s, err := stunserver.Start(context.Background(), stunserver.Config{Net: srv,
		Primary: netip.MustParseAddrPort("1.2.3.4:3478"), Alternate: netip.MustParseAddrPort("1.2.3.5:3479")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	code, out, errs := runArgs(t, env{net: client}, "--stun", "1.2.3.4", "-4", "--json", "--require", "udp")
	if code != exitOK || !strings.Contains(out, `"type": "symmetric"`) {
		t.Fatalf("--require udp: exit %d, stderr %q\n%s", code, errs, out)
	}
	code, _, errs = runArgs(t, env{net: client}, "--stun", "1.2.3.4", "-4", "--json", "--require", "direct-udp")
	if code != exitRequire || !strings.Contains(errs, "direct UDP is unlikely") {
		t.Errorf("--require direct-udp: exit %d, stderr %q", code, errs)
	}
}
