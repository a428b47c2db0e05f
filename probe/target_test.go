package probe

import (
	"strings"
	"testing"
)

func TestParseTarget(t *testing.T) {
	good := map[string]string{
		"stun.example.com":       "stun.example.com:3478",
		"stun.example.com:19302": "stun.example.com:19302",
		"127.0.0.1":              "127.0.0.1:3478",
		"127.0.0.1:5000":         "127.0.0.1:5000",
		"[::1]":                  "[::1]:3478",
		"[::1]:3479":             "[::1]:3479",
		"2001:db8::1":            "[2001:db8::1]:3478",
		" 10.0.0.1:1 ":           "10.0.0.1:1",
	}
	for in, want := range good {
		got, err := ParseTarget(in)
		if err != nil {
			t.Errorf("ParseTarget(%q): %v", in, err)
			continue
		}
		if got.String() != want {
			t.Errorf("ParseTarget(%q) = %s, want %s", in, got, want)
		}
	}
	bad := map[string]string{
		"":                   "empty",
		"host:0":             "port",
		"host:70000":         "port",
		"host:abc":           "port",
		"[::1":               "missing ']'",
		"[::1]x":             "unexpected",
		"[nothost]:1":        "not an IPv6",
		"2001:db8::1:3478x":  "brackets",
		":3478":              "missing host",
		"stun:stun.l.google": "not a URL",
	}
	for in, want := range bad {
		_, err := ParseTarget(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseTarget(%q) error = %v, want one mentioning %q", in, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("ParseTarget(%q): error is not one line", in)
		}
	}
}
