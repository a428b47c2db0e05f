package turncheck

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/turn/v5"

	"github.com/natcheck/natcheck/internal/safefile"
	"github.com/natcheck/natcheck/natclass"
)

// zeros reads as an endless run of zero bytes, like /dev/zero.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		in        string
		host      string
		port      int
		transport string
		canon     string
	}{
		{"turn:example.com", "example.com", 3478, natclass.TURNTransportUDP, "turn:example.com:3478"},
		{"TURN:example.com:80?transport=udp", "example.com", 80, natclass.TURNTransportUDP, "turn:example.com:80"},
		{"turn:example.com?transport=tcp", "example.com", 3478, natclass.TURNTransportTCP, "turn:example.com:3478?transport=tcp"},
		{"turns:example.com", "example.com", 5349, natclass.TURNTransportTLS, "turns:example.com:5349"},
		{"turns:example.com:443?transport=tcp", "example.com", 443, natclass.TURNTransportTLS, "turns:example.com:443"},
		{"turn:[2001:db8::1]:3479?transport=TCP", "2001:db8::1", 3479, natclass.TURNTransportTCP, "turn:[2001:db8::1]:3479?transport=tcp"},
		{"turn:[::1]", "::1", 3478, natclass.TURNTransportUDP, "turn:[::1]:3478"},
		{"turn:[::1]:3478?transport=udp", "::1", 3478, natclass.TURNTransportUDP, "turn:[::1]:3478"},
		{"turn:[2001:db8::1]:3478", "2001:db8::1", 3478, natclass.TURNTransportUDP, "turn:[2001:db8::1]:3478"},
		// An IPv4-mapped address means its IPv4 address.
		{"turn:[::ffff:192.0.2.1]:3478?transport=tcp", "192.0.2.1", 3478, natclass.TURNTransportTCP, "turn:192.0.2.1:3478?transport=tcp"},
	} {
		u, err := ParseURL(tc.in)
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if u.Host != tc.host || u.Port != tc.port || u.Transport != tc.transport || u.String() != tc.canon {
			t.Errorf("%q: %+v %q, want %s %d %s %q", tc.in, u, u.String(), tc.host, tc.port, tc.transport, tc.canon)
		}
	}
	for in, want := range map[string]string{
		"stun:example.com":                             "must start with turn: or turns:",
		"turn://example.com":                           "without //",
		"turn:":                                        "no host",
		"turn::3478":                                   "no host",
		"turn:example.com:0":                           "port",
		"turn:example.com:http":                        "port",
		"turn:example.com?transport=sctp":              "use udp or tcp",
		"turns:example.com?transport=udp":              "DTLS",
		"turn:example.com?foo=bar":                     "unknown parameter",
		"turn:2001:db8::1":                             "brackets",
		"turn:[2001:db8::1":                            "missing ]",
		"turn:[example.com]":                           "not an IPv6 address",
		"turn:[192.0.2.1]":                             "not an IPv6 address",
		"turn:[fe80::1%25eth0]:3478":                   "zoned address",
		"turn:[fe80::1%eth0]:3478":                     "zoned address",
		"turn:[fe80::1]:3478":                          "link-local",
		"turn:[::]:3478":                               "not a server's address",
		"turn:[ff02::1]:3478":                          "not a server's address",
		"turn:alice:hunter2@example.com":               "credentials do not belong",
		"turns:alice:hunter2@example.com:1":            "credentials do not belong",
		"turn:example.com?transport=udp&transport=tcp": "more than once",
		"turn:example.com?transport=":                  "empty transport",
		"turn:" + strings.Repeat("a", 300):             "300 characters long",
		"turn:" + strings.Repeat("a", 64) + ".com":     "at most 63",
		"turn:exa_mple!.com:3478":                      "'!' is not allowed",
		"turn:300.1.1.1":                               "neither an IP address nor a host name",
	} {
		_, err := ParseURL(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", in, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%q: the error shows the password: %v", in, err)
		}
	}
}

func TestRESTCredentials(t *testing.T) {
	now := time.Unix(1700000000, 0)
	c := Credentials{User: "alice", SharedSecret: NewSecret("s3cret"), Lifetime: time.Hour}
	user, pw, exp := c.Resolve(now)
	if user != "1700003600:alice" || !exp.Equal(now.Add(time.Hour)) {
		t.Errorf("user %q expires %v", user, exp)
	}
	// printf %s 1700003600:alice | openssl sha1 -hmac s3cret -binary | base64
	if pw.Reveal() != "YAFdW/YDZewZsR1QSgUk2IrfbRI=" {
		t.Error("Resolve's password is not base64(HMAC-SHA1(secret, user))")
	}
	// Cross-check with pion/turn's own REST credential generator.
	pionUser, pionPW, err := turn.GenerateLongTermTURNRESTCredentials("s3cret", "alice", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	expiry, _, _ := strings.Cut(pionUser, ":")
	sec, err := strconv.ParseInt(expiry, 10, 64)
	if err != nil {
		t.Fatalf("pion's user name %q: %v", pionUser, err)
	}
	if u, p, _ := c.Resolve(time.Unix(sec, 0).Add(-time.Hour)); u != pionUser || p.Reveal() != pionPW {
		t.Errorf("Resolve gives %q, pion %q with another password", u, pionUser)
	}
	// Without a user: the name is the expiry alone.
	if u, _, _ := (Credentials{SharedSecret: NewSecret("x")}).Resolve(now); u != "1700086400" {
		t.Errorf("user %q, want the default lifetime's expiry alone", u)
	}
	if c.Auth() != "rest" || (Credentials{}).Auth() != "long-term" {
		t.Error("Auth")
	}
}

func TestSecretNeverPrints(t *testing.T) {
	s := NewSecret("hunter2")
	c := Credentials{User: "u", Password: s, SharedSecret: s}
	b, _ := json.Marshal(c)
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %s %q %x %+v %#v", s, s, s, s, c, c), string(b), s.String()} {
		if strings.Contains(out, "hunter2") || strings.Contains(out, fmt.Sprintf("%x", "hunter2")) {
			t.Errorf("secret printed: %s", out)
		}
	}
	if s.Reveal() != "hunter2" {
		t.Error("Reveal")
	}
}

func TestParseICEServers(t *testing.T) {
	in := `[
		{"urls": "stun:stun.example.com:3478"},
		{"urls": ["turn:turn.example.com?transport=udp", "turns:turn.example.com:443?transport=tcp"], "username": "1700000000:u", "credential": "pw"},
		{"url": "turn:other.example.com", "username": "v", "credential": "pw2", "credentialType": "password"}
	]`
	got, err := ParseICEServers(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(got.STUN) != 1 || got.STUN[0] != "stun.example.com:3478" || len(got.TURN) != 3 {
		t.Fatalf("%+v", got)
	}
	if got.TURN[1].URL.Transport != natclass.TURNTransportTLS || got.TURN[1].Credentials.User != "1700000000:u" || got.TURN[2].Credentials.Password.Reveal() != "pw2" {
		t.Errorf("%+v", got.TURN)
	}
	wrapped, err := ParseICEServers(strings.NewReader(`{"iceServers": [{"urls": "turn:t.example.com", "username": "a", "credential": "b"}]}`))
	if err != nil || len(wrapped.TURN) != 1 {
		t.Errorf("wrapped form: %+v %v", wrapped, err)
	}
	for in, want := range map[string]string{
		`{"urls": "turn:x"`:                     "syntax error at byte",
		`[]`:                                    "no servers",
		`[{"username": "a"}]`:                   "no urls",
		`[{"urls": 5}]`:                         "a string or an array",
		`[{"urls": "turn:x"}]`:                  "no TURN credentials",
		`[{"urls": "turn:x", "username": "a"}]`: "no TURN password",
		`[{"urls": "http:x", "credential": "zz9"}]`: "must start with turn:",
		`[{"urls": "stuns:x"}]`:                     "not supported",
	} {
		_, err := ParseICEServers(strings.NewReader(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want %q", in, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "zz9") {
			t.Errorf("error shows the credential: %v", err)
		}
	}
}

// TestParseErrorsHideCredentials: an error quotes the URL it rejects, but
// never a credential put in it (userinfo or a query value).
func TestParseErrorsHideCredentials(t *testing.T) {
	const secret = "AlicePW_s3cr3t"
	for _, u := range []string{
		"turn:127.0.0.1:3478?transport=udp&password=" + secret,
		"turn:alice:" + secret + "@127.0.0.1",
		"turns:127.0.0.1?credential=" + secret,
		"turn:u:" + secret + "@",
		"turn:" + secret + "@[::1",
		"turn:u:" + secret + "@host?transport=udp&password=" + secret + "2",
		"turn:host?" + secret,
		"turn:host?transport=" + secret,
		"turns:host?transport=udp&transport=" + secret,
		"turn://u:" + secret + "@host",
		"stun:u:" + secret + "@host",
		"u:" + secret + "@host",
	} {
		_, err := ParseURL(u)
		if err == nil {
			t.Errorf("%q accepted", u)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error leaks the credential: %v", err)
		}
	}
	for _, entry := range []string{
		`[{"urls": "stun:alice:` + secret + `@127.0.0.1:3478"}]`,
		`[{"urls": "stuns:alice:` + secret + `@127.0.0.1:3478"}]`,
		`[{"urls": "turn:alice:` + secret + `@127.0.0.1:3478", "username": "a", "credential": "b"}]`,
		`[{"urls": "turn:h?transport=udp&password=` + secret + `", "username": "a", "credential": "b"}]`,
		`[{"urls": "stun:h:1?x=` + secret + `"}, {"urls": "stuns:h"}]`,
		`[{"urls": ["stun:[::1"]}]`,
		`[{"urls": "stun:"}]`,
	} {
		_, err := ParseICEServers(strings.NewReader(entry))
		if err == nil {
			t.Errorf("%s accepted", entry)
			continue
		}
		if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "\n") {
			t.Errorf("error leaks the credential or is not one line: %v", err)
		}
	}
	// A list larger than safefile.MaxConfig is refused, read no further.
	_, err := ParseICEServers(io.LimitReader(zeros{}, 100<<20))
	if !errors.Is(err, safefile.ErrTooLarge) {
		t.Errorf("a 100 MiB list: %v", err)
	}
	ice, err := ParseICEServers(strings.NewReader(`[{"urls": ["stun:127.0.0.1:3479?transport=udp", "stun:[::1]"]}]`))
	if err != nil || len(ice.STUN) != 2 || ice.STUN[0] != "127.0.0.1:3479" || ice.STUN[1] != "[::1]:3478" {
		t.Errorf("STUN entries %v, %v", ice.STUN, err)
	}
}
