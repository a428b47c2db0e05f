package turncheck

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pion/stun/v4"

	"github.com/natcheck/natcheck/natclass"
	"github.com/natcheck/natcheck/probe"
	natstun "github.com/natcheck/natcheck/stun"
)

// Default ports of RFC 8656 section 4 (and RFC 7065 section 3.2).
const (
	DefaultPort    = 3478 // turn: over UDP and TCP
	DefaultTLSPort = 5349 // turns:
)

// URL is a parsed TURN URL (RFC 7065):
//
//	turn:HOST[:PORT][?transport=udp|tcp]
//	turns:HOST[:PORT][?transport=tcp]
//
// An IPv6 address goes in brackets. An IPv4-mapped IPv6 address
// ([::ffff:192.0.2.1]) means its IPv4 address; zoned, link-local,
// unspecified and multicast addresses are refused. It holds no
// credentials.
type URL struct {
	Secure    bool   // turns:
	Host      string // name or address, without brackets
	Port      int
	Transport string // natclass.TURNTransportUDP, TCP or TLS
}

// ParseURL parses a turn: or turns: URL (RFC 7065 section 3.1). Without
// ?transport, turn: means UDP and turns: means TLS over TCP. turns: over UDP
// (DTLS) is not supported. A host name must be a valid DNS name
// (probe.CheckHostName). Errors quote s through natstun.RedactURI: never
// its userinfo or a query value.
func ParseURL(s string) (URL, error) {
	var u URL
	shown := natstun.RedactURI(s)
	rest, ok := cutPrefixFold(s, "turns:")
	if ok {
		u.Secure = true
	} else if rest, ok = cutPrefixFold(s, "turn:"); !ok {
		return u, fmt.Errorf("turn URL %q: must start with turn: or turns: (for example turn:turn.example.com:3478?transport=tcp)", shown)
	}
	if strings.HasPrefix(rest, "//") {
		return u, fmt.Errorf("turn URL %q: write turn:HOST, without //", shown)
	}
	if strings.Contains(rest, "@") {
		return u, fmt.Errorf("turn URL %q: credentials do not belong in the URL: use --turn-user and NATCHECK_TURN_PASSWORD", shown)
	}
	hostport, query, _ := strings.Cut(rest, "?")
	transport := ""
	if query != "" {
		for _, kv := range strings.Split(query, "&") {
			k, v, _ := strings.Cut(kv, "=")
			switch {
			case !strings.EqualFold(k, "transport"):
				return u, fmt.Errorf("turn URL %q: unknown parameter; only ?transport=udp or ?transport=tcp is allowed", shown)
			case transport != "":
				return u, fmt.Errorf("turn URL %q: transport given more than once", shown)
			}
			transport = strings.ToLower(v)
			if transport == "" {
				return u, fmt.Errorf("turn URL %q: empty transport: use udp or tcp", shown)
			}
		}
	}
	switch transport {
	case "":
		u.Transport = natclass.TURNTransportUDP
		if u.Secure {
			u.Transport = natclass.TURNTransportTLS
		}
	case "udp":
		if u.Secure {
			return u, fmt.Errorf("turn URL %q: turns: over UDP (DTLS) is not supported; use turns:HOST?transport=tcp", shown)
		}
		u.Transport = natclass.TURNTransportUDP
	case "tcp":
		u.Transport = natclass.TURNTransportTCP
		if u.Secure {
			u.Transport = natclass.TURNTransportTLS
		}
	default:
		return u, fmt.Errorf("turn URL %q: unknown transport: use udp or tcp", shown)
	}
	if hostport == "" {
		return u, fmt.Errorf("turn URL %q: no host", shown)
	}
	host, port := hostport, ""
	if strings.HasPrefix(hostport, "[") {
		end := strings.Index(hostport, "]")
		if end < 0 {
			return u, fmt.Errorf("turn URL %q: missing ] after the IPv6 address", shown)
		}
		host = hostport[1:end]
		switch after := hostport[end+1:]; {
		case after == "":
		case strings.HasPrefix(after, ":"):
			port = after[1:]
		default:
			return u, fmt.Errorf("turn URL %q: unexpected %q after the IPv6 address", shown, after)
		}
		if strings.Contains(host, "%") {
			return u, fmt.Errorf("turn URL %q: a zoned address (%%zone) names a link on this host only: give the server's global IPv6 address or its name", shown)
		}
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Is6() {
			return u, fmt.Errorf("turn URL %q: %q is not an IPv6 address", shown, host)
		}
		switch {
		case a.Is4In6():
			// An IPv4-mapped address (::ffff:a.b.c.d) means its IPv4
			// address: the check runs over IPv4, and the URL shows it so.
			host = a.Unmap().String()
		case a.IsLinkLocalUnicast():
			return u, fmt.Errorf("turn URL %q: %s is link-local: it needs a zone and reaches one link only; give the server's global IPv6 address or its name", shown, a)
		case a.IsUnspecified() || a.IsMulticast():
			return u, fmt.Errorf("turn URL %q: %s is not a server's address", shown, a)
		}
	} else if i := strings.LastIndex(hostport, ":"); i >= 0 {
		host, port = hostport[:i], hostport[i+1:]
		if strings.Contains(host, ":") {
			return u, fmt.Errorf("turn URL %q: put an IPv6 address in brackets, as turn:[::1]:3478", shown)
		}
	}
	if host == "" {
		return u, fmt.Errorf("turn URL %q: no host", shown)
	}
	if _, err := netip.ParseAddr(host); err != nil {
		if err := probe.CheckHostName(host); err != nil {
			return u, fmt.Errorf("turn URL %q: %w", shown, err)
		}
	}
	u.Host = host
	u.Port = DefaultPort
	if u.Secure {
		u.Port = DefaultTLSPort
	}
	if port != "" {
		p, err := strconv.Atoi(port)
		if err != nil || p < 1 || p > 65535 {
			return u, fmt.Errorf("turn URL %q: port %q: give a number from 1 to 65535", shown, port)
		}
		u.Port = p
	}
	return u, nil
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}

// HostPort returns HOST:PORT, with brackets for IPv6.
func (u URL) HostPort() string { return net.JoinHostPort(u.Host, strconv.Itoa(u.Port)) }

// String returns the URL in its canonical form, with ?transport=tcp only
// where it is needed (turn: over TCP).
func (u URL) String() string {
	scheme := "turn"
	if u.Secure {
		scheme = "turns"
	}
	s := scheme + ":" + u.HostPort()
	if u.Transport == natclass.TURNTransportTCP {
		s += "?transport=tcp"
	}
	return s
}

// stunURI is the URL in pion's form, with credentials for an ICE agent.
func (u URL) stunURI(user, password string) *stun.URI {
	uri := &stun.URI{Scheme: stun.SchemeTypeTURN, Host: u.Host, Port: u.Port, Username: user, Password: password, Proto: stun.ProtoTypeUDP}
	if u.Secure {
		uri.Scheme = stun.SchemeTypeTURNS
	}
	if u.Transport != natclass.TURNTransportUDP {
		uri.Proto = stun.ProtoTypeTCP
	}
	return uri
}
