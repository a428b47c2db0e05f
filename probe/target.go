package probe

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/natcheck/natcheck/stun"
)

// Default ports (RFC 8489 section 9).
const (
	DefaultPort    = 3478 // STUN over UDP and TCP
	DefaultTLSPort = 5349 // STUN over TLS
)

// Transports a target can name: package stun's names.
const (
	TransportUDP = stun.TransportUDP
	TransportTCP = stun.TransportTCP
	TransportTLS = stun.TransportTLS
)

// Target is a STUN server as the user named it.
type Target struct {
	Host string // name or IP literal, without brackets
	Port uint16
	// Transport is "" for a plain HOST[:PORT] or stun: URI (UDP tests, plus
	// the TCP and TLS path probes), or "tcp" / "tls" for a URI that names
	// only that transport (stun:...?transport=tcp, stuns:...).
	Transport string
}

// String returns host:port, with brackets around an IPv6 literal, and the
// URI form for a TCP or TLS-only target.
func (t Target) String() string {
	hp := net.JoinHostPort(t.Host, strconv.Itoa(int(t.Port)))
	switch t.Transport {
	case TransportTCP:
		return "stun:" + hp + "?transport=tcp"
	case TransportTLS:
		return "stuns:" + hp
	}
	return hp
}

// UDP reports whether the target takes part in the UDP tests.
func (t Target) UDP() bool { return t.Transport == "" }

// ParseTarget parses a STUN server: "host", "host:port", "[IPv6]:port", a
// bare IPv6 literal without a port, or a STUN URI (RFC 7064):
// "stun:host[:port]", "stun:host[:port]?transport=udp|tcp",
// "stuns:host[:port]".
func ParseTarget(s string) (Target, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Target{}, errors.New("empty server address")
	}
	if scheme, rest, ok := strings.Cut(s, ":"); ok && isScheme(scheme) {
		return parseURI(s, strings.ToLower(scheme), rest)
	}
	if strings.Contains(s, "://") {
		return Target{}, fmt.Errorf("server %q: give HOST[:PORT] or a stun:/stuns: URI", s)
	}
	return parseHostPort(s, s, DefaultPort)
}

func isScheme(s string) bool {
	switch strings.ToLower(s) {
	case "stun", "stuns", "turn", "turns", "http", "https":
		return true
	}
	return false
}

// parseURI parses the part after "stun:" or "stuns:" (RFC 7064 section 3.1).
func parseURI(orig, scheme, rest string) (Target, error) {
	if scheme != "stun" && scheme != "stuns" {
		return Target{}, fmt.Errorf("server %q: unknown scheme %q; use stun: or stuns: (TURN servers go to --turn)", orig, scheme)
	}
	if strings.HasPrefix(rest, "//") {
		return Target{}, fmt.Errorf("server %q: a STUN URI has no '//': write %s:%s", orig, scheme, strings.TrimPrefix(rest, "//"))
	}
	hostport, query, _ := strings.Cut(rest, "?")
	transport := TransportUDP
	if query != "" {
		q, err := url.ParseQuery(query)
		if err != nil {
			return Target{}, fmt.Errorf("server %q: bad query: %v", orig, err)
		}
		for k := range q {
			if k != "transport" {
				return Target{}, fmt.Errorf("server %q: unknown parameter %q; only transport=udp|tcp is allowed", orig, k)
			}
		}
		transport = strings.ToLower(q.Get("transport"))
	}
	defPort := uint16(DefaultPort)
	t := Target{}
	switch {
	case scheme == "stuns":
		if query != "" && transport != TransportTCP {
			return Target{}, fmt.Errorf("server %q: stuns: runs over TLS on TCP; transport=%s is not possible", orig, transport)
		}
		t.Transport, defPort = TransportTLS, DefaultTLSPort
	case transport == TransportTCP:
		t.Transport = TransportTCP
	case transport != TransportUDP:
		return Target{}, fmt.Errorf("server %q: transport %q: use udp or tcp", orig, transport)
	}
	if _, err := netip.ParseAddr(hostport); err == nil && strings.Contains(hostport, ":") {
		return Target{}, fmt.Errorf("server %q: a STUN URI needs an IPv6 address in brackets, as %s:[%s]", orig, scheme, hostport)
	}
	ht, err := parseHostPort(orig, hostport, defPort)
	if err != nil {
		return Target{}, err
	}
	t.Host, t.Port = ht.Host, ht.Port
	return t, nil
}

func parseHostPort(orig, s string, defPort uint16) (Target, error) {
	if s == "" {
		return Target{}, fmt.Errorf("server %q: missing host", orig)
	}
	// A bare IPv6 literal: no brackets, several colons, no port.
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return Target{}, fmt.Errorf("server %q: zoned IPv6 addresses are not supported", orig)
		}
		return Target{Host: a.String(), Port: defPort}, nil
	}
	host, portStr := s, ""
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.Index(s, "]")
		if end < 0 {
			return Target{}, fmt.Errorf("server %q: missing ']' after IPv6 address", orig)
		}
		h, rest := s[1:end], s[end+1:]
		a, err := netip.ParseAddr(h)
		if err != nil || !a.Is6() {
			return Target{}, fmt.Errorf("server %q: %q is not an IPv6 address", orig, h)
		}
		if a.Zone() != "" {
			return Target{}, fmt.Errorf("server %q: zoned IPv6 addresses are not supported", orig)
		}
		host = h
		if rest != "" {
			if !strings.HasPrefix(rest, ":") {
				return Target{}, fmt.Errorf("server %q: unexpected %q after ']'", orig, rest)
			}
			portStr = rest[1:]
			if portStr == "" {
				return Target{}, fmt.Errorf("server %q: empty port after ':'", orig)
			}
		}
	case strings.Count(s, ":") == 1:
		host, portStr, _ = strings.Cut(s, ":")
		if portStr == "" {
			return Target{}, fmt.Errorf("server %q: empty port after ':'", orig)
		}
	case strings.Count(s, ":") > 1:
		return Target{}, fmt.Errorf("server %q: put an IPv6 address with a port in brackets, as [2001:db8::1]:3478", orig)
	}
	if host == "" {
		return Target{}, fmt.Errorf("server %q: missing host", orig)
	}
	if strings.ContainsAny(host, "/@ ") {
		return Target{}, fmt.Errorf("server %q: %q is not a host name", orig, host)
	}
	t := Target{Host: host, Port: defPort}
	if portStr == "" {
		return t, nil
	}
	p, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || p == 0 {
		return Target{}, fmt.Errorf("server %q: port %q is not a number from 1 to 65535", orig, portStr)
	}
	t.Port = uint16(p)
	return t, nil
}
