package stun

import (
	"strings"
	"testing"
)

func TestRedactURI(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"stun:stun.example.com:3478", "stun:stun.example.com:3478"},
		{"stun.example.com", "stun.example.com"},
		{"[2001:db8::1]:3478", "[2001:db8::1]:3478"},
		{"stun:host?transport=tcp", "stun:host?transport=tcp"},
		{"turn:host?transport=UDP", "turn:host?transport=UDP"},
		{"stun:user:SECRET@host", "stun:REDACTED@host"},
		{"stun:user:SECRET@", "stun:REDACTED@"},
		{"stun:SECRET@[::1", "stun:REDACTED@[::1"},
		{"turn:u:SECRET@host?transport=udp&password=SECRET2", "turn:REDACTED@host?transport=udp&password=REDACTED"},
		{"turn:host?transport=SECRET", "turn:host?transport=REDACTED"},
		{"turn:host?SECRET", "turn:host?REDACTED"},
		{"turn:host?a=1&&SECRET&b=SECRET", "turn:host?a=REDACTED&&REDACTED&b=REDACTED"},
		{"turn:host?x=a@SECRET", "turn:REDACTED"}, // ambiguous: hides more
		{"turn:host?x=SECRET@b", "turn:REDACTED"},
		{"turn:u:SECRET@host#x@y", "turn:REDACTED"},
		{"stun://user:SECRET@host:3478", "stun://REDACTED@host:3478"},
		{"https://user:SECRET@host/path?token=SECRET#SECRET", "https://REDACTED@host/path?token=REDACTED#REDACTED"},
		{"user:SECRET@host:3478", "REDACTED@host:3478"}, // the user part is no scheme
		{"SECRET9:x@h", "REDACTED@h"},
		{"TOKEN-SECRET:x-oauth-basic@host", "REDACTED@host"},
		{"STUN:u:SECRET@h", "STUN:REDACTED@h"},
		{"stunx:host", "stunx:host"}, // no userinfo: an unknown scheme stays
		{"SECRET@host", "REDACTED@host"},
		{"@host", "REDACTED@host"},
		{"stun:a@b@SECRET@host", "stun:REDACTED@host"},
		{"stun:us?er:SECRET@host", "stun:REDACTED"},
		{"stun:host#SECRET", "stun:host#REDACTED"},
		{"", ""},
		{"?", "?"},
		{":SECRET@", "REDACTED@"}, // a leading ':' is no scheme
	} {
		got := RedactURI(c.in)
		if got != c.want {
			t.Errorf("RedactURI(%q) = %q, want %q", c.in, got, c.want)
		}
		if strings.Contains(got, "SECRET") {
			t.Errorf("RedactURI(%q) = %q: the secret shows", c.in, got)
		}
	}
}
