package stun

import "strings"

// Redacted replaces what RedactURI hides.
const Redacted = "REDACTED"

// RedactURI returns s, a STUN or TURN URI (RFC 7064, RFC 7065) or any
// server address a user gave, in a form safe to quote in an error or a
// log: the userinfo (everything up to the last '@') becomes REDACTED, as
// does the value of every query parameter but a transport of udp, tcp, tls
// or dtls, a query part without '=' and a fragment. Scheme, host, port and
// parameter names stay, so the message still says what was wrong. It
// accepts any string, malformed ones included, and hides more rather than
// less when the structure is unclear: an '@' after a '?' or '#' hides
// everything after the scheme.
//
// Every error that quotes a user-given server address or URL quotes it
// through RedactURI.
func RedactURI(s string) string {
	var b strings.Builder
	rest := s
	if i := schemeEnd(s); i > 0 && (knownScheme(s[:i]) || !strings.Contains(s, "@")) {
		// Keep the scheme only when it cannot be a secret: a known one,
		// or no userinfo at all. In "TOKEN:x@host" the "scheme" is the
		// user's secret.
		b.WriteString(s[:i+1])
		rest = s[i+1:]
	}
	if strings.HasPrefix(rest, "//") {
		b.WriteString("//")
		rest = rest[2:]
	}
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		b.WriteString(Redacted)
		if q := strings.IndexAny(rest, "?#"); q >= 0 && q < at {
			// The '@' is in a query value or fragment, or the userinfo
			// holds a '?' or '#' (which RFC 3986 forbids): hide it all.
			return b.String()
		}
		rest = rest[at:] // from the '@'
	}
	rest, fragment, hasFragment := strings.Cut(rest, "#")
	hostport, query, hasQuery := strings.Cut(rest, "?")
	b.WriteString(hostport)
	if hasQuery {
		b.WriteByte('?')
		for i, kv := range strings.Split(query, "&") {
			if i > 0 {
				b.WriteByte('&')
			}
			k, v, ok := strings.Cut(kv, "=")
			switch {
			case !ok:
				if kv != "" {
					b.WriteString(Redacted)
				}
			case strings.EqualFold(k, "transport") && knownTransport(v):
				b.WriteString(kv)
			default:
				b.WriteString(k)
				b.WriteString("=" + Redacted)
			}
		}
	}
	if hasFragment && fragment != "" {
		b.WriteString("#" + Redacted)
	}
	return b.String()
}

// knownScheme reports whether scheme is one natcheck or a user could mean
// for a server address.
func knownScheme(scheme string) bool {
	switch strings.ToLower(scheme) {
	case "stun", "stuns", "turn", "turns", "http", "https":
		return true
	}
	return false
}

// schemeEnd returns the index of the ':' that ends a URI scheme at the
// start of s (RFC 3986 section 3.1: a letter, then letters, digits, '+',
// '-' or '.'), or -1.
func schemeEnd(s string) int {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case i > 0 && (c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.'):
		case i > 0 && c == ':':
			return i
		default:
			return -1
		}
	}
	return -1
}

func knownTransport(v string) bool {
	switch strings.ToLower(v) {
	case TransportUDP, TransportTCP, TransportTLS, "dtls":
		return true
	}
	return false
}
