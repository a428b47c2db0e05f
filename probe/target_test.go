package probe

import (
	"strings"
	"testing"

	"github.com/natcheck/natcheck/natclass"
	"github.com/natcheck/natcheck/stun"
)

func TestParseTarget(t *testing.T) {
	good := map[string]string{
		"stun.example.com":                    "stun.example.com:3478",
		"stun.example.com:19302":              "stun.example.com:19302",
		"127.0.0.1":                           "127.0.0.1:3478",
		"127.0.0.1:5000":                      "127.0.0.1:5000",
		"[::1]":                               "[::1]:3478",
		"[::1]:3479":                          "[::1]:3479",
		"2001:db8::1":                         "[2001:db8::1]:3478",
		" 10.0.0.1:1 ":                        "10.0.0.1:1",
		"stun:stun.example.com":               "stun.example.com:3478",
		"STUN:stun.example.com:19302":         "stun.example.com:19302",
		"stun:[2001:db8::1]:3478":             "[2001:db8::1]:3478",
		"stun:example.com?transport=udp":      "example.com:3478",
		"stun:example.com:80?transport=tcp":   "stun:example.com:80?transport=tcp",
		"stun:example.com?transport=TCP":      "stun:example.com:3478?transport=tcp",
		"stuns:example.com":                   "stuns:example.com:5349",
		"stuns:example.com:443":               "stuns:example.com:443",
		"stuns:[::1]:443":                     "stuns:[::1]:443",
		"stuns:example.com:443?transport=tcp": "stuns:example.com:443",
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
		"":                                "empty",
		"host:0":                          "port",
		"host:70000":                      "port",
		"host:abc":                        "port",
		"host:":                           "empty port",
		"[::1":                            "missing ']'",
		"[::1]x":                          "unexpected",
		"[::1]:":                          "empty port",
		"[nothost]:1":                     "not an IPv6",
		"[10.0.0.1]:1":                    "not an IPv6",
		"2001:db8::1:3478x":               "brackets",
		":3478":                           "missing host",
		"turn:turn.example.com":           "unknown scheme",
		"turns:turn.example.com":          "--turn",
		"https://stun.example.com":        "unknown scheme",
		"ftp://x":                         "stun:/stuns: URI",
		"stun://stun.example.com":         "no '//'",
		"stun:":                           "missing host",
		"stun:example.com?transport=sctp": "use udp or tcp",
		"stun:example.com?foo=bar":        "unknown parameter",
		"stuns:example.com?transport=udp": "not possible",
		"stun:2001:db8::1:3478":           "brackets",
		"stun:example.com:99999":          "port",
		"stun:user@example.com":           "takes no credentials",
		"exa mple.com":                    "not allowed in a host name",
		"300.1.1.1":                       "neither an IP address nor a host name",
		"-bad.example.com:3478":           "begins or ends with '-'",
		"stun:example.com?transport=%zz":  "bad query",
		"[fe80::1%eth0]:3478":             "zoned",
		"fe80::1%eth0":                    "zoned",
		"[fe80::1]:3478":                  "link-local",
		"fe80::1":                         "link-local",
		"stun:[fe80::1]":                  "link-local",
		"[::ffff:192.0.2.1]:3478":         "give the IPv4 address 192.0.2.1 itself",
		"::ffff:192.0.2.1":                "IPv4-mapped",
		"[::]:3478":                       "not a server's address",
		"[ff02::1]:3478":                  "not a server's address",
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

// TestParseTargetHidesSecrets: no error quotes userinfo or a query value,
// however malformed the address.
func TestParseTargetHidesSecrets(t *testing.T) {
	for _, in := range []string{
		"stun:user:SECRET@host",
		"stun:user:SECRET@",
		"stun:SECRET@[::1",
		"stun:u:SECRET@host?transport=udp&password=SECRET2",
		"user:SECRET@host:3478",
		"SECRET@host",
		"stun://user:SECRET@host",
		"stuns:user:SECRET@host:443",
		"stun:host?transport=SECRET",
		"stun:host?SECRET",
		"stun:host?password=SECRET",
		"stun:host?transport=%zzSECRET",
		"stuns:host?transport=SECRET",
		"stun:host?transport=udp&transport=SECRET",
		"https://user:SECRET@host/?token=SECRET",
		"turn:u:SECRET@host?transport=udp&password=SECRET2",
	} {
		_, err := ParseTarget(in)
		if err == nil {
			t.Errorf("ParseTarget(%q): no error", in)
			continue
		}
		if strings.Contains(err.Error(), "SECRET") {
			t.Errorf("ParseTarget(%q) error quotes the secret: %v", in, err)
		}
		if !strings.HasPrefix(err.Error(), "server ") {
			t.Errorf("ParseTarget(%q) error does not name the server: %v", in, err)
		}
	}
}

// TestTransportNames: natclass, which imports only the standard library,
// keeps its own copy of the transport names that probe writes into its
// observations; they must stay package stun's.
func TestTransportNames(t *testing.T) {
	for _, c := range [][2]string{
		{stun.TransportUDP, natclass.TransportUDP},
		{stun.TransportTCP, natclass.TransportTCP},
		{stun.TransportTLS, natclass.TransportTLS},
		{stun.TransportUDP, natclass.TURNTransportUDP},
		{stun.TransportTCP, natclass.TURNTransportTCP},
		{stun.TransportTLS, natclass.TURNTransportTLS},
	} {
		if c[0] != c[1] {
			t.Errorf("stun says %q, natclass %q", c[0], c[1])
		}
	}
}
