package turnserver

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pion/turn/v5"

	"github.com/natcheck/natcheck/internal/safefile"
)

func writeFile(t *testing.T, content string, mode os.FileMode) string {
	t.Helper()
	name := filepath.Join(t.TempDir(), "creds")
	if err := os.WriteFile(name, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	return name
}

func TestReadUsersFile(t *testing.T) {
	key := turn.GenerateAuthKey("erin", "r", "pw")
	users := writeFile(t, fmt.Sprintf("alice:pa:ss\n\n# comment\nerin:0x%x\n", key), 0o600)
	keys, err := ReadUsersFile(users, "r", nil)
	if err != nil {
		t.Fatal(err)
	}
	a := &authenticator{realm: "r", keys: keys, now: time.Now}
	if _, k, ok := a.auth(&turn.RequestAttributes{Username: "alice", Realm: "r"}); !ok || string(k) != string(turn.GenerateAuthKey("alice", "r", "pa:ss")) {
		t.Error("alice: password with a colon")
	}
	if _, k, ok := a.auth(&turn.RequestAttributes{Username: "erin", Realm: "r"}); !ok || string(k) != string(key) {
		t.Error("erin: 0x key")
	}
	for _, ra := range []turn.RequestAttributes{{Username: "alice", Realm: "other"}, {Username: "mallory", Realm: "r"}, {Username: "99999999999:x", Realm: "r"}} {
		if _, _, ok := a.auth(&ra); ok {
			t.Errorf("%+v accepted", ra)
		}
	}
	for content, want := range map[string]string{
		"alice:x\nalice:y\n": `line 2: user "alice" listed twice`,
		"# nobody\n":         ": no users",
		"alice\n":            "line 1: want USER:PASSWORD",
		"bob:0x" + strings.Repeat("zz", 16) + "\n": "line 1: bad 0x key",
	} {
		_, err := ReadUsersFile(writeFile(t, content, 0o600), "r", nil)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", content, err, want)
		}
		// Errors name the line, never its contents.
		if err != nil && (strings.Contains(err.Error(), ":y") || strings.Contains(err.Error(), "zz")) {
			t.Errorf("%q: error shows the file: %v", content, err)
		}
	}
	if _, err := ReadUsersFile(filepath.Join(t.TempDir(), "missing"), "r", nil); err == nil {
		t.Error("missing file accepted")
	}
}

func TestCredentialFileWarning(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	if _, err := ReadSecretFile(writeFile(t, "s\n", 0o600), log); err != nil || buf.Len() != 0 {
		t.Errorf("private file: %v, log %q", err, buf.String())
	}
	if _, err := ReadUsersFile(writeFile(t, "a:b\n", 0o644), "r", log); err != nil || !strings.Contains(buf.String(), "credential file is readable by group or others; chmod 600 it") {
		t.Errorf("world-readable file: %v, log %q", err, buf.String())
	}
}

func TestReadSecretFile(t *testing.T) {
	got, err := ReadSecretFile(writeFile(t, "# the secret\n\n  s3cret  \nother\n", 0o600), nil)
	if err != nil || got != "s3cret" {
		t.Errorf("secret %q, %v", got, err)
	}
	if _, err := ReadSecretFile(writeFile(t, "# none\n", 0o600), nil); err == nil || !strings.Contains(err.Error(), "no secret in it") {
		t.Errorf("no secret: %v", err)
	}
}

// TestCredentialFileLimits: a device such as /dev/zero, or a file over the
// limit, ends in a clear error instead of filling memory.
func TestCredentialFileLimits(t *testing.T) {
	if _, err := ReadSecretFile("/dev/zero", nil); !errors.Is(err, safefile.ErrTooLarge) || !strings.Contains(err.Error(), "/dev/zero") {
		t.Errorf("secret file /dev/zero: %v", err)
	}
	if _, err := ReadUsersFile("/dev/zero", "r", nil); !errors.Is(err, safefile.ErrTooLarge) || !strings.Contains(err.Error(), "4 MiB") {
		t.Errorf("users file /dev/zero: %v", err)
	}
	big := writeFile(t, strings.Repeat("s", safefile.MaxSecret+1), 0o600)
	if _, err := ReadSecretFile(big, nil); !errors.Is(err, safefile.ErrTooLarge) || strings.Contains(err.Error(), "sss") {
		t.Errorf("secret file of MaxSecret+1 bytes: %v", err)
	}
	ok := writeFile(t, strings.Repeat("s", safefile.MaxSecret), 0o600)
	if got, err := ReadSecretFile(ok, nil); err != nil || len(got) != safefile.MaxSecret {
		t.Errorf("secret file of MaxSecret bytes: %d bytes, %v", len(got), err)
	}
}

// TestAuthREST checks REST API credentials against independently computed
// passwords: printf %s NAME | openssl sha1 -hmac s3cret -binary | base64.
func TestAuthREST(t *testing.T) {
	var refusals []string
	a := &authenticator{realm: "r", secret: "s3cret", keys: map[string][]byte{"1700003600:alice": []byte("static")},
		now:     func() time.Time { return time.Unix(1700000000, 0) },
		refused: func(user, why string) { refusals = append(refusals, user+": "+why) }}
	for _, tc := range []struct {
		name, user, password string
	}{
		{"1700003600:bob", "bob", "RGKPE3zp8IhG9zbQbkEsYyLkilA="},
		{"1700003600", "1700003600", "hkHv/K58ZdACCJ9F4MWT46M317I="},
	} {
		user, key, ok := a.auth(&turn.RequestAttributes{Username: tc.name, Realm: "r"})
		if !ok || user != tc.user || string(key) != string(turn.GenerateAuthKey(tc.name, "r", tc.password)) {
			t.Errorf("%s: user %q, ok %v, key matches %v", tc.name, user, ok, string(key) == string(turn.GenerateAuthKey(tc.name, "r", tc.password)))
		}
	}
	// A static user of the same name wins.
	if user, key, ok := a.auth(&turn.RequestAttributes{Username: "1700003600:alice", Realm: "r"}); !ok || user != "1700003600:alice" || string(key) != "static" {
		t.Errorf("static user: %q %q %v", user, key, ok)
	}
	for _, name := range []string{"1699999999:carol", "carol", "carol:1800000000"} {
		if _, _, ok := a.auth(&turn.RequestAttributes{Username: name, Realm: "r"}); ok {
			t.Errorf("%s accepted", name)
		}
	}
	if _, _, ok := a.auth(&turn.RequestAttributes{Username: "1700003600:bob", Realm: "x"}); ok {
		t.Error("wrong realm accepted")
	}
	want := []string{"1699999999:carol: expired REST credential", "carol: unknown user", "carol:1800000000: unknown user", "1700003600:bob: wrong realm"}
	if fmt.Sprint(refusals) != fmt.Sprint(want) {
		t.Errorf("refusals %q, want %q", refusals, want)
	}
}
