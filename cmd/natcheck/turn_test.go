package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/natcheck/natcheck/turncheck/turntest"
)

func envWith(kv map[string]string) env {
	return env{getenv: func(k string) string { return kv[k] }}
}

// assertNoSecrets fails if a test secret shows anywhere in the outputs.
func assertNoSecrets(t *testing.T, outs ...string) {
	t.Helper()
	all := strings.Join(outs, "\n")
	for _, s := range []string{turntest.Password, turntest.Secret} {
		if strings.Contains(all, s) {
			t.Errorf("secret %q appears in the output", s)
		}
	}
	// A derived REST password: base64 of 20 bytes, 28 characters ending in "=".
	for _, f := range strings.FieldsFunc(all, func(r rune) bool { return strings.ContainsRune(" \"\n,:{}[]()", r) }) {
		if len(f) == 28 && strings.HasSuffix(f, "=") {
			t.Errorf("something like a derived REST password appears in the output: %q", f)
		}
	}
}

type turnJSON struct {
	OK            bool     `json:"ok"`
	RelayVerified []string `json:"relay_verified"`
	TURN          []struct {
		URL        string   `json:"url"`
		Transport  string   `json:"transport"`
		OK         bool     `json:"ok"`
		FailedStep string   `json:"failed_step"`
		ErrorCode  int      `json:"error_code"`
		Error      string   `json:"error"`
		Hint       string   `json:"hint"`
		AllocateMS *float64 `json:"allocate_ms"`
		Data       *struct{ Sent, Received int }
		EndToEnd   *struct{ Connected bool } `json:"end_to_end"`
		Released   *bool                     `json:"released"`
	} `json:"turn"`
}

func parseTurnJSON(t *testing.T, out string) turnJSON {
	t.Helper()
	var r turnJSON
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	return r
}

func TestTurnCommandPion(t *testing.T) {
	t.Parallel()
	srv := turntest.NewServer(t, turntest.Options{})
	pw := envWith(map[string]string{envTURNPassword: turntest.Password})
	urls := srv.URLs()

	t.Run("all-pass-json", func(t *testing.T) {
		t.Parallel()
		args := append([]string{"turn", "--turn-user", turntest.User, "--ca-file", srv.CAFile, "--json", "-v", "--require", "udp,tcp,tls"}, urls...)
		code, out, errs := runArgs(t, pw, args...)
		if code != exitOK {
			t.Fatalf("exit %d\n%s\n%s", code, out, errs)
		}
		r := parseTurnJSON(t, out)
		if !r.OK || len(r.TURN) != 3 || strings.Join(r.RelayVerified, ",") != "turn-udp,turn-tcp,turn-tls" {
			t.Errorf("report %+v", r)
		}
		for _, c := range r.TURN {
			if !c.OK || c.Data == nil || c.Data.Received == 0 || c.EndToEnd == nil || !c.EndToEnd.Connected || c.Released == nil || !*c.Released || c.AllocateMS == nil {
				t.Errorf("%s: %+v", c.URL, c)
			}
		}
		if !strings.Contains(errs, "Allocate") {
			t.Errorf("-v traced nothing on stderr: %q", errs)
		}
		assertNoSecrets(t, out, errs)
	})

	t.Run("flags-after-urls-text", func(t *testing.T) {
		t.Parallel()
		code, out, errs := runArgs(t, pw, "turn", urls[0], "--turn-user", turntest.User, urls[1])
		if code != exitOK {
			t.Fatalf("exit %d\n%s\n%s", code, out, errs)
		}
		for _, want := range []string{"Every TURN check passed", urls[0], "5/5", "connected in"} {
			if !strings.Contains(out, want) {
				t.Errorf("text output lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, "\x1b[") {
			t.Errorf("colour codes in output to a buffer")
		}
		assertNoSecrets(t, out, errs)
	})

	t.Run("rest-secret-file", func(t *testing.T) {
		t.Parallel()
		file := filepath.Join(t.TempDir(), "secret")
		os.WriteFile(file, []byte(turntest.Secret+"\n"), 0o600)
		code, out, errs := runArgs(t, env{}, "turn", "--turn-user", "ci", "--turn-secret-file", file, "--turn-credential-lifetime", "10m", "--json", urls[0])
		if code != exitOK {
			t.Fatalf("exit %d\n%s\n%s", code, out, errs)
		}
		assertNoSecrets(t, out, errs)
	})

	t.Run("password-flag-warns", func(t *testing.T) {
		t.Parallel()
		code, out, errs := runArgs(t, env{}, "turn", "--turn-user", turntest.User, "--turn-password", turntest.Password, urls[0])
		if code != exitOK || !strings.Contains(errs, "visible to other users") {
			t.Errorf("exit %d, stderr %q: want 0 and a warning", code, errs)
		}
		assertNoSecrets(t, out, errs)
	})

	t.Run("wrong-password-exit-1", func(t *testing.T) {
		t.Parallel()
		code, out, errs := runArgs(t, envWith(map[string]string{envTURNPassword: "wrong"}), "turn", "--turn-user", turntest.User, urls[0])
		if code != exitRequire || !strings.Contains(out, "rejected the credentials") || !strings.Contains(out, "what to do") {
			t.Errorf("exit %d, want 1 with an explanation\n%s\n%s", code, out, errs)
		}
	})

	t.Run("tls-unknown-ca-then-insecure", func(t *testing.T) {
		t.Parallel()
		code, out, _ := runArgs(t, pw, "turn", "--turn-user", turntest.User, urls[2])
		if code != exitRequire || !strings.Contains(out, "unknown authority") || !strings.Contains(out, "--ca-file") {
			t.Errorf("default verification: exit %d\n%s", code, out)
		}
		code, out, errs := runArgs(t, pw, "turn", "--turn-user", turntest.User, "--insecure", urls[2])
		if code != exitOK || !strings.Contains(out, "NOT verified") || !strings.Contains(errs, "--insecure") {
			t.Errorf("--insecure: exit %d\n%s\n%s", code, out, errs)
		}
	})

	t.Run("require-missing-transport", func(t *testing.T) {
		t.Parallel()
		code, _, errs := runArgs(t, pw, "turn", "--turn-user", turntest.User, "--require", "tls", urls[0])
		if code != exitRequire || !strings.Contains(errs, "--require tls not met: no TURN URL over tls") {
			t.Errorf("exit %d, stderr %q", code, errs)
		}
	})

	t.Run("ice-servers", func(t *testing.T) {
		t.Parallel()
		file := filepath.Join(t.TempDir(), "ice.json")
		js := fmt.Sprintf(`[{"urls":"stun:%s"},{"urls":[%q,%q],"username":%q,"credential":%q}]`, srv.UDP, urls[0], urls[1], turntest.User, turntest.Password)
		os.WriteFile(file, []byte(js), 0o600)
		code, out, errs := runArgs(t, env{}, "turn", "--ice-servers", file, "--json")
		if code != exitOK {
			t.Fatalf("exit %d\n%s\n%s", code, out, errs)
		}
		if r := parseTurnJSON(t, out); len(r.TURN) != 2 {
			t.Errorf("%d checks, want 2", len(r.TURN))
		}
		assertNoSecrets(t, out, errs)
	})
}

func TestTurnCommandMisbehaving(t *testing.T) {
	t.Parallel()
	pw := envWith(map[string]string{envTURNPassword: turntest.Password})
	drop := turntest.NewServer(t, turntest.Options{DropData: true})
	code, out, _ := runArgs(t, pw, "turn", "--turn-user", turntest.User, "--json", drop.URLs()[0])
	r := parseTurnJSON(t, out)
	if code != exitRequire || len(r.TURN) != 1 || r.TURN[0].FailedStep != "data" || r.TURN[0].Data == nil || r.TURN[0].Data.Received != 0 {
		t.Errorf("data dropped: exit %d, %+v", code, r)
	}

	closed := turntest.ClosedPort(t)
	code, out, errs := runArgs(t, pw, "turn", "--turn-user", turntest.User, "turn:"+closed.String()+"?transport=tcp", "turn:"+closed.String())
	if code != exitNotMeasured || !strings.Contains(out, "refused") {
		t.Errorf("unreachable: exit %d, want 3\n%s\n%s", code, out, errs)
	}
}

func TestTurnCommandCoturn(t *testing.T) {
	t.Parallel()
	c := turntest.StartCoturn(t, turntest.CoturnOptions{REST: true})
	secret := envWith(map[string]string{envTURNSecret: turntest.Secret})
	args := append([]string{"turn", "--turn-user", "ci", "--ca-file", c.CAFile, "--json", "--require", "udp,tcp,tls"}, c.URLs()...)
	code, out, errs := runArgs(t, secret, args...)
	if code != exitOK {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	assertNoSecrets(t, out, errs)
	code, out, errs = runArgs(t, envWith(map[string]string{envTURNSecret: "wrong"}), "turn", "--turn-user", "ci", c.URLs()[0])
	if code != exitRequire || !strings.Contains(out, "shared secret") {
		t.Errorf("wrong secret: exit %d\n%s\n%s", code, out, errs)
	}
}

func TestTurnUsageErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)
	pw := envWith(map[string]string{envTURNPassword: "x"})
	for _, tc := range []struct {
		e    env
		args []string
		want string
	}{
		{env{}, []string{"turn"}, "no TURN server"},
		{pw, []string{"turn", "--turn-user", "u", "http://x"}, "must start with turn: or turns:"},
		{pw, []string{"turn", "--turn-user", "u", "turn:x?transport=sctp"}, "use udp or tcp"},
		{pw, []string{"turn", "--turn-user", "u", "turns:x?transport=udp"}, "DTLS"},
		{pw, []string{"turn", "--turn-user", "u", "turn:u:" + turntest.Password + "@x"}, "credentials do not belong"},
		{env{}, []string{"turn", "--turn-user", "u", "turn:x"}, "no TURN password"},
		{pw, []string{"turn", "turn:x"}, "needs a user name"},
		{env{}, []string{"turn", "--turn-user", "u", "--turn-password-file", filepath.Join(dir, "missing"), "turn:x"}, "no such file"},
		{env{}, []string{"turn", "--turn-user", "u", "--turn-password-file", empty, "turn:x"}, "empty"},
		{envWith(map[string]string{envTURNPassword: "x", envTURNSecret: "y"}), []string{"turn", "--turn-user", "u", "turn:x"}, "both a TURN password and a shared secret"},
		{pw, []string{"turn", "--turn-user", "u", "--require", "sctp", "turn:x"}, "use udp, tcp or tls"},
		{pw, []string{"turn", "--turn-user", "u", "--ca-file", empty, "turns:x"}, "no PEM certificate"},
		{env{}, []string{"turn", "--ice-servers", empty}, "not a JSON array"},
		{env{}, []string{"--turn-user", "u"}, "without a TURN server"},
		{env{}, []string{"--turn", "turn:x"}, "no TURN credentials"},
	} {
		code, out, errs := runArgs(t, tc.e, tc.args...)
		if code != exitUsage || !strings.Contains(errs, tc.want) || strings.Count(strings.TrimSpace(errs), "\n") > 0 || out != "" {
			t.Errorf("%q: exit %d, stderr %q, stdout %q; want 2 and one line with %q", tc.args, code, errs, out, tc.want)
		}
		assertNoSecrets(t, out, errs)
	}
}

func TestTurnHelp(t *testing.T) {
	code, out, _ := runArgs(t, env{}, "turn", "--help")
	for _, want := range []string{"Exit codes", "--require", "NATCHECK_TURN_PASSWORD", "-turn-secret-file", "-ice-servers", "-ca-file", "-insecure", "visible to other users"} {
		if code != exitOK || !strings.Contains(out, want) {
			t.Errorf("help lacks %q (exit %d)", want, code)
		}
	}
}

// TestDiagnosisWithTURN runs the main diagnosis with a TURN server: the
// report has the TURN checks, the candidates and the verified relays.
func TestDiagnosisWithTURN(t *testing.T) {
	t.Parallel()
	s := loopbackServer(t)
	srv := turntest.NewServer(t, turntest.Options{})
	pw := envWith(map[string]string{envTURNPassword: turntest.Password})
	args := []string{"--stun", s.Primary().String(), "-4", "--udp-only", "--json", "--turn-user", turntest.User, "--ca-file", srv.CAFile}
	for _, u := range srv.URLs() {
		args = append(args, "--turn", u)
	}
	code, out, errs := runArgs(t, pw, args...)
	if code != exitOK {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	var r struct {
		Verdict struct {
			RelayVerified []string `json:"relay_verified"`
			Summary       string
		}
		TURN       []struct{ OK bool }
		Candidates *struct {
			Gathered []struct {
				Type, Server  string
				RelayProtocol string `json:"relay_protocol"`
			} `json:"gathered"`
			Servers []struct {
				URL      string
				Produced int
				Error    string
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	if strings.Join(r.Verdict.RelayVerified, ",") != "turn-udp,turn-tcp,turn-tls" || !strings.Contains(r.Verdict.Summary, "TURN relay works from here over UDP, TCP, TLS") {
		t.Errorf("verdict %+v", r.Verdict)
	}
	if len(r.TURN) != 3 || r.Candidates == nil {
		t.Fatalf("turn %+v candidates %+v", r.TURN, r.Candidates)
	}
	relays := 0
	for _, c := range r.Candidates.Gathered {
		if c.Type == "relay" && c.Server != "" && c.RelayProtocol != "" {
			relays++
		}
	}
	if relays != 3 || len(r.Candidates.Servers) != 4 {
		t.Errorf("candidates %+v", r.Candidates)
	}
	for _, sv := range r.Candidates.Servers {
		if sv.Produced == 0 {
			t.Errorf("server %s produced nothing: %s", sv.URL, sv.Error)
		}
	}
	assertNoSecrets(t, out, errs)

	// The same in text: the TURN and candidate tables.
	args[4] = "--no-color"
	code, out, _ = runArgs(t, pw, args...)
	for _, want := range []string{"TURN", "ICE candidates", "relay over", "produced"} {
		if code != exitOK || !strings.Contains(out, want) {
			t.Errorf("text lacks %q (exit %d):\n%s", want, code, out)
		}
	}
}
