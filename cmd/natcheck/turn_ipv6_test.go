package main

import (
	"strings"
	"testing"

	"github.com/natcheck/natcheck/turncheck/turntest"
)

// TestTurnCommandIPv6: natcheck turn checks a server on [::1] over UDP,
// TCP and TLS end to end, with IPv6 relayed addresses.
func TestTurnCommandIPv6(t *testing.T) {
	t.Parallel()
	srv := turntest.NewServer(t, turntest.Options{IPv6: true})
	pw := envWith(map[string]string{envTURNPassword: turntest.Password})
	urls := srv.URLs()
	urls[0] += "?transport=udp"
	for _, u := range urls {
		if !strings.Contains(u, "[::1]:") {
			t.Fatalf("URL %q is not on [::1]", u)
		}
	}
	args := append([]string{"turn", "--turn-user", turntest.User, "--ca-file", srv.CAFile, "--json", "--require", "udp,tcp,tls"}, urls...)
	code, out, errs := runArgs(t, pw, args...)
	if code != exitOK {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	r := parseTurnJSON(t, out)
	if !r.OK || len(r.TURN) != 3 {
		t.Fatalf("report %+v", r)
	}
	for _, c := range r.TURN {
		if !c.OK || c.Data == nil || c.Data.Received == 0 || c.EndToEnd == nil || !c.EndToEnd.Connected {
			t.Errorf("%s: %+v", c.URL, c)
		}
	}
	if strings.Count(out, `"relayed_address": "[::1]:`) != 3 {
		t.Errorf("no relayed address on [::1] in the report:\n%s", out)
	}
	assertNoSecrets(t, out, errs)
}

// TestTurnIPv6UsageErrors: zoned, link-local and other addresses no server
// has are one-line usage errors, never a check that reports "blocked".
func TestTurnIPv6UsageErrors(t *testing.T) {
	t.Parallel()
	pw := envWith(map[string]string{envTURNPassword: "x"})
	for _, tc := range []struct{ url, want string }{
		{"turn:[fe80::1%25eth0]:3478", "zoned address"},
		{"turn:[fe80::1]:3478", "link-local"},
		{"turn:[::]:3478", "not a server's address"},
		{"turns:[ff02::1]", "not a server's address"},
	} {
		code, out, errs := runArgs(t, pw, "turn", "--turn-user", "u", tc.url)
		if code != exitUsage || !strings.Contains(errs, tc.want) || strings.Count(strings.TrimSpace(errs), "\n") > 0 || out != "" {
			t.Errorf("%s: exit %d, stderr %q, stdout %q; want 2 and one line with %q", tc.url, code, errs, out, tc.want)
		}
	}
}
