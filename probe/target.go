package probe

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// DefaultPort is the STUN port (RFC 8489 section 9).
const DefaultPort = 3478

// Target is a STUN server as the user named it.
type Target struct {
	Host string // name or IP literal, without brackets
	Port uint16
}

// String returns host:port, with brackets around an IPv6 literal.
func (t Target) String() string {
	return net.JoinHostPort(t.Host, strconv.Itoa(int(t.Port)))
}

// ParseTarget parses "host", "host:port", "IPv4:port", "[IPv6]" or
// "[IPv6]:port". A bare IPv6 literal without brackets is accepted when it has
// no port.
func ParseTarget(s string) (Target, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Target{}, errors.New("empty server address")
	}
	if strings.Contains(s, "://") || strings.HasPrefix(s, "stun:") || strings.HasPrefix(s, "stuns:") || strings.HasPrefix(s, "turn:") {
		return Target{}, fmt.Errorf("server %q: give HOST[:PORT], not a URL", s)
	}
	// A bare IPv6 literal: no brackets, several colons.
	if a, err := netip.ParseAddr(s); err == nil {
		return Target{Host: a.String(), Port: DefaultPort}, nil
	}
	host, portStr := s, ""
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.Index(s, "]")
		if end < 0 {
			return Target{}, fmt.Errorf("server %q: missing ']' after IPv6 address", s)
		}
		host, rest := s[1:end], s[end+1:]
		if _, err := netip.ParseAddr(host); err != nil {
			return Target{}, fmt.Errorf("server %q: %q is not an IPv6 address", s, host)
		}
		if rest != "" {
			if !strings.HasPrefix(rest, ":") {
				return Target{}, fmt.Errorf("server %q: unexpected %q after ']'", s, rest)
			}
			portStr = rest[1:]
		}
		return finishTarget(s, host, portStr)
	case strings.Count(s, ":") == 1:
		host, portStr, _ = strings.Cut(s, ":")
	case strings.Count(s, ":") > 1:
		return Target{}, fmt.Errorf("server %q: put an IPv6 address with a port in brackets, as [2001:db8::1]:3478", s)
	}
	if host == "" {
		return Target{}, fmt.Errorf("server %q: missing host", s)
	}
	return finishTarget(s, host, portStr)
}

func finishTarget(orig, host, portStr string) (Target, error) {
	t := Target{Host: host, Port: DefaultPort}
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
