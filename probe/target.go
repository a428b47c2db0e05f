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
// "stuns:host[:port]". A host name must be a valid DNS name
// (CheckHostName). Errors quote s through stun.RedactURI: never its
// userinfo or query values.
func ParseTarget(s string) (Target, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Target{}, errors.New("empty server address")
	}
	p := targetParser{shown: stun.RedactURI(s)}
	if strings.Contains(s, "@") {
		return Target{}, p.errorf("a STUN server takes no credentials: give HOST[:PORT] or stun:HOST[:PORT], without user@")
	}
	if scheme, rest, ok := strings.Cut(s, ":"); ok && isScheme(scheme) {
		return p.parseURI(strings.ToLower(scheme), rest)
	}
	if strings.Contains(s, "://") {
		return Target{}, p.errorf("give HOST[:PORT] or a stun:/stuns: URI")
	}
	return p.parseHostPort(s, DefaultPort)
}

// targetParser parses one server address; shown is the address as its
// errors quote it.
type targetParser struct{ shown string }

func (p targetParser) errorf(format string, args ...any) error {
	return fmt.Errorf("server %q: %s", p.shown, fmt.Sprintf(format, args...))
}

func isScheme(s string) bool {
	switch strings.ToLower(s) {
	case "stun", "stuns", "turn", "turns", "http", "https":
		return true
	}
	return false
}

// parseURI parses the part after "stun:" or "stuns:" (RFC 7064 section
// 3.1). No error quotes a query value: the transport is named only when it
// is one RedactURI shows.
func (p targetParser) parseURI(scheme, rest string) (Target, error) {
	if scheme != "stun" && scheme != "stuns" {
		return Target{}, p.errorf("unknown scheme %q; use stun: or stuns: (TURN servers go to --turn)", scheme)
	}
	if strings.HasPrefix(rest, "//") {
		return Target{}, p.errorf("a STUN URI has no '//': write %s:HOST[:PORT]", scheme)
	}
	hostport, query, _ := strings.Cut(rest, "?")
	transport := TransportUDP
	if query != "" {
		q, err := url.ParseQuery(query)
		if err != nil {
			return Target{}, p.errorf("bad query (write ?transport=udp or ?transport=tcp)")
		}
		for k := range q {
			if k != "transport" {
				return Target{}, p.errorf("unknown parameter; only transport=udp|tcp is allowed")
			}
		}
		if len(q["transport"]) > 1 {
			return Target{}, p.errorf("transport given more than once")
		}
		transport = strings.ToLower(q.Get("transport"))
	}
	defPort := uint16(DefaultPort)
	t := Target{}
	switch {
	case scheme == "stuns":
		if query != "" && transport != TransportTCP {
			return Target{}, p.errorf("stuns: runs over TLS on TCP; a transport other than tcp is not possible")
		}
		t.Transport, defPort = TransportTLS, DefaultTLSPort
	case transport == TransportTCP:
		t.Transport = TransportTCP
	case transport != TransportUDP:
		return Target{}, p.errorf("unknown transport: use udp or tcp")
	}
	if _, err := netip.ParseAddr(hostport); err == nil && strings.Contains(hostport, ":") {
		return Target{}, p.errorf("a STUN URI needs an IPv6 address in brackets, as %s:[%s]", scheme, hostport)
	}
	ht, err := p.parseHostPort(hostport, defPort)
	if err != nil {
		return Target{}, err
	}
	t.Host, t.Port = ht.Host, ht.Port
	return t, nil
}

// checkIPv6 refuses IPv6 literals that cannot be a STUN server's address,
// saying what to give instead (an IPv4 literal passes unchecked).
func (p targetParser) checkIPv6(a netip.Addr) error {
	switch {
	case !a.Is6():
		return nil
	case a.Zone() != "":
		return p.errorf("zoned IPv6 addresses are not supported: a zone names a link on this host only; give the server's global IPv6 address or its name")
	case a.Is4In6():
		return p.errorf("%s is an IPv4-mapped IPv6 address: give the IPv4 address %s itself", a, a.Unmap())
	case a.IsLinkLocalUnicast():
		return p.errorf("%s is link-local: it reaches one link only; give the server's global IPv6 address or its name", a)
	case a.IsUnspecified() || a.IsMulticast():
		return p.errorf("%s is not a server's address", a)
	}
	return nil
}

func (p targetParser) parseHostPort(s string, defPort uint16) (Target, error) {
	if s == "" {
		return Target{}, p.errorf("missing host")
	}
	// A bare IPv6 literal: no brackets, several colons, no port.
	if a, err := netip.ParseAddr(s); err == nil {
		if err := p.checkIPv6(a); err != nil {
			return Target{}, err
		}
		return Target{Host: a.String(), Port: defPort}, nil
	}
	host, portStr := s, ""
	isIP := false
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.Index(s, "]")
		if end < 0 {
			return Target{}, p.errorf("missing ']' after IPv6 address")
		}
		h, rest := s[1:end], s[end+1:]
		a, err := netip.ParseAddr(h)
		if err != nil || !a.Is6() {
			return Target{}, p.errorf("%q is not an IPv6 address", h)
		}
		if err := p.checkIPv6(a); err != nil {
			return Target{}, err
		}
		host, isIP = h, true
		if rest != "" {
			if !strings.HasPrefix(rest, ":") {
				return Target{}, p.errorf("unexpected %q after ']'", rest)
			}
			portStr = rest[1:]
			if portStr == "" {
				return Target{}, p.errorf("empty port after ':'")
			}
		}
	case strings.Count(s, ":") == 1:
		host, portStr, _ = strings.Cut(s, ":")
		if portStr == "" {
			return Target{}, p.errorf("empty port after ':'")
		}
	case strings.Count(s, ":") > 1:
		return Target{}, p.errorf("put an IPv6 address with a port in brackets, as [2001:db8::1]:3478")
	}
	if host == "" {
		return Target{}, p.errorf("missing host")
	}
	if !isIP {
		if a, err := netip.ParseAddr(host); err == nil {
			isIP = a.Is4()
		}
	}
	if !isIP {
		if err := CheckHostName(host); err != nil {
			return Target{}, p.errorf("%v", err)
		}
	}
	t := Target{Host: host, Port: defPort}
	if portStr == "" {
		return t, nil
	}
	pn, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || pn == 0 {
		return Target{}, p.errorf("port %q is not a number from 1 to 65535", portStr)
	}
	t.Port = uint16(pn)
	return t, nil
}
