package main

import (
	"strings"
	"testing"
)

// TestTurnCredentialLifetime: a lifetime that is not positive (or below the
// second REST expiries count in) is refused with one line, before any file
// is read or server contacted, by natcheck turn and by the main command.
func TestTurnCredentialLifetime(t *testing.T) {
	t.Parallel()
	secret := envWith(map[string]string{envTURNSecret: "s3cret-lifetime"})
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"turn", "--turn-user", "u", "--turn-credential-lifetime", "-1h", "turn:127.0.0.1:1"}, "--turn-credential-lifetime -1h0m0s: give a positive duration"},
		{[]string{"turn", "--turn-user", "u", "--turn-credential-lifetime", "0", "turn:127.0.0.1:1"}, "--turn-credential-lifetime 0s: give a positive duration"},
		{[]string{"turn", "--turn-user", "u", "--turn-credential-lifetime", "500ms", "turn:127.0.0.1:1"}, "--turn-credential-lifetime 500ms: give a positive duration"},
		{[]string{"--turn", "turn:127.0.0.1:1", "--turn-user", "u", "--turn-credential-lifetime", "-1m"}, "--turn-credential-lifetime -1m0s: give a positive duration"},
	} {
		code, out, errs := runArgs(t, secret, tc.args...)
		if code != exitUsage || !strings.Contains(errs, tc.want) || strings.Count(strings.TrimSpace(errs), "\n") > 0 || out != "" {
			t.Errorf("%q: exit %d, stderr %q, stdout %q; want 2 and one line with %q", tc.args, code, errs, out, tc.want)
		}
		assertNoSecrets(t, out, errs)
	}
}
