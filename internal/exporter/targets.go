package exporter

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// Schemes of an endpoint: the URI scheme (RFC 7064, RFC 7065) of what a
// check contacts.
const (
	schemeSTUN  = "stun"  // STUN over UDP or TCP
	schemeSTUNS = "stuns" // STUN over TLS
	schemeTURN  = "turn"  // TURN over UDP or TCP
	schemeTURNS = "turns" // TURN over TLS
)

// endpoint is one (scheme, host, port) that a check contacts at its target,
// with the host as the probe itself will look it up or dial it.
type endpoint struct {
	scheme string
	// host is a lower-case name without a trailing dot, or the canonical
	// form of addr.
	host string
	addr netip.Addr // valid when the target names an IP address (IPv4-mapped: unmapped)
	port uint16
}

func (e endpoint) String() string {
	h := e.host
	if e.addr.Is6() {
		h = "[" + h + "]"
	}
	return e.scheme + ":" + h + ":" + strconv.Itoa(int(e.port))
}

// newEndpoint normalises host as parsed by probe.ParseTarget or
// turncheck.ParseURL. A name must be a plain DNS name: letters, digits,
// hyphens and underscores in dot-separated labels, the last not all digits.
func newEndpoint(scheme, host string, port int) (endpoint, error) {
	e := endpoint{scheme: scheme, port: uint16(port)}
	if port < 1 || port > 65535 {
		return e, fmt.Errorf("port %d: give a number from 1 to 65535", port)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return e, fmt.Errorf("host %q: zoned IPv6 addresses are not supported", host)
		}
		e.addr = a.Unmap()
		e.host = e.addr.String()
		return e, nil
	}
	name, err := normaliseName(host)
	if err != nil {
		return e, err
	}
	e.host = name
	return e, nil
}

// normaliseName lower-cases a DNS name, drops one trailing dot and checks
// its syntax.
func normaliseName(s string) (string, error) {
	name := strings.TrimSuffix(strings.ToLower(s), ".")
	bad := func(why string) error { return fmt.Errorf("host %q is not a host name: %s", s, why) }
	if name == "" {
		return "", bad("empty")
	}
	if len(name) > 253 {
		return "", bad("longer than 253 characters")
	}
	labels := strings.Split(name, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return "", bad("a label is empty or longer than 63 characters")
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return "", bad("only letters, digits, '-', '_' and '.' (write international names in their xn-- form)")
			}
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return "", bad("a label starts or ends with '-'")
		}
	}
	if strings.Trim(labels[len(labels)-1], "0123456789") == "" {
		// 127.1, 0x7f.1 and the like: resolvers may read them as addresses.
		return "", bad("looks like an IP address but is not one in standard form")
	}
	return name, nil
}

// targetPattern is one entry of allowed_targets:
//
//	[SCHEME:]HOST[:PORT]
//
// SCHEME is stun, stuns, turn or turns (any when left out). HOST is a name
// (exact, without case, a trailing dot ignored), *.NAME (one or more whole
// labels under NAME, never NAME itself), an IP address, an IP prefix in
// CIDR form (IPv6 in brackets when a port follows), or * (any host: stun
// modules only). PORT is a number, a range LOW-HIGH, or *; left out, it is
// the scheme's default port (3478; 5349 for stuns and turns), and it must
// be given when SCHEME is.
type targetPattern struct {
	raw     string
	scheme  string // "" matches any
	anyHost bool
	name    string       // exact name
	suffix  string       // ".example.com" for *.example.com
	prefix  netip.Prefix // IP address or prefix
	lo, hi  uint16
}

// parsePattern parses an allowed_targets entry. Its errors quote the
// pattern with any user part or query value hidden.
func parsePattern(raw string) (targetPattern, error) {
	p := targetPattern{raw: raw}
	shown := redactTarget(raw)
	bad := func(format string, a ...any) error {
		return fmt.Errorf("allowed target %q: %s", shown, fmt.Sprintf(format, a...))
	}
	s := strings.ToLower(raw)
	if s == "" {
		return p, bad("empty")
	}
	if strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f || r > 0x7e }) {
		return p, bad("spaces, control or non-ASCII characters")
	}
	if strings.ContainsAny(s, "@?#") || strings.Contains(s, "//") {
		return p, bad("give [SCHEME:]HOST[:PORT]: no user, //, query or fragment")
	}
	if sch, rest, ok := strings.Cut(s, ":"); ok {
		switch sch {
		case schemeSTUN, schemeSTUNS, schemeTURN, schemeTURNS:
			p.scheme, s = sch, rest
		}
	}
	host, port := s, ""
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.Index(s, "]")
		if end < 0 {
			return p, bad("missing ] after the IPv6 address")
		}
		host = s[1:end]
		switch after := s[end+1:]; {
		case after == "":
		case strings.HasPrefix(after, ":"):
			port = after[1:]
			if port == "" {
				return p, bad("empty port after ':'")
			}
		default:
			return p, bad("unexpected %q after ]", after)
		}
		if !strings.Contains(host, ":") {
			return p, bad("brackets are for IPv6 addresses")
		}
	case strings.Count(s, ":") > 1:
		// An IPv6 address or prefix without a port.
	case strings.Contains(s, ":"):
		host, port, _ = strings.Cut(s, ":")
		if port == "" {
			return p, bad("empty port after ':'")
		}
	}
	switch {
	case host == "":
		return p, bad("no host")
	case host == "*":
		p.anyHost = true
	case strings.HasPrefix(host, "*."):
		name, err := normaliseName(host[2:])
		if err != nil || strings.HasSuffix(host, ".") {
			return p, bad("%q after *. is not a host name", host[2:])
		}
		p.suffix = "." + name
	case strings.Contains(host, "*"):
		return p, bad("* stands for a whole host (*) or whole leading labels (*.example.com) only")
	case strings.Contains(host, "/"):
		pr, err := netip.ParsePrefix(host)
		if err != nil {
			return p, bad("%q is not an IP prefix such as 192.0.2.0/24 or [2001:db8::]/32", host)
		}
		if pr.Addr().Is4In6() {
			return p, bad("give IPv4 prefixes in IPv4 form")
		}
		p.prefix = pr.Masked()
	default:
		if a, err := netip.ParseAddr(host); err == nil {
			if a.Zone() != "" {
				return p, bad("zoned IPv6 addresses are not supported")
			}
			a = a.Unmap()
			p.prefix = netip.PrefixFrom(a, a.BitLen())
			break
		}
		if strings.Contains(host, ":") {
			return p, bad("put an IPv6 address with a port in brackets, as [2001:db8::1]:3478")
		}
		name, err := normaliseName(host)
		if err != nil {
			return p, bad("%v", err)
		}
		p.name = name
	}
	switch {
	case port == "" && p.scheme == "":
		return p, bad("give a port (HOST:3478, HOST:3478-3479 or HOST:*), or a scheme (turn:HOST) for its default port")
	case port == "":
		p.lo = 3478
		if p.scheme == schemeSTUNS || p.scheme == schemeTURNS {
			p.lo = 5349
		}
		p.hi = p.lo
	case port == "*":
		p.lo, p.hi = 1, 65535
	default:
		los, his, isRange := strings.Cut(port, "-")
		if !isRange {
			his = los
		}
		lo, err1 := strconv.ParseUint(los, 10, 16)
		hi, err2 := strconv.ParseUint(his, 10, 16)
		if err1 != nil || err2 != nil || lo == 0 || hi == 0 || lo > hi {
			return p, bad("port %q: give a number from 1 to 65535, a range such as 3478-3479, or *", port)
		}
		p.lo, p.hi = uint16(lo), uint16(hi)
	}
	return p, nil
}

// matches reports whether the pattern allows e. Names match names and
// addresses match addresses: a name target is never matched by an IP
// pattern, nor an IP target by a name.
func (p targetPattern) matches(e endpoint) bool {
	if p.scheme != "" && p.scheme != e.scheme {
		return false
	}
	if e.port < p.lo || e.port > p.hi {
		return false
	}
	switch {
	case p.anyHost:
		return true
	case e.addr.IsValid():
		return p.prefix.IsValid() && p.prefix.Contains(e.addr)
	case p.name != "":
		return e.host == p.name
	case p.suffix != "":
		// e.host is a checked name: every label is non-empty, so what
		// precedes the suffix is one or more whole labels.
		return len(e.host) > len(p.suffix) && strings.HasSuffix(e.host, p.suffix)
	}
	return false
}

// redactTarget returns s with a user part (before an @) and the value of
// every query parameter but transport hidden, for errors and logs.
func redactTarget(s string) string {
	if i := strings.LastIndex(s, "@"); i >= 0 {
		prefix := ""
		if sch, _, ok := strings.Cut(s[:i], ":"); ok && isTargetScheme(sch) {
			prefix = sch + ":"
		}
		s = prefix + "REDACTED" + s[i:]
	}
	base, query, ok := strings.Cut(s, "?")
	if !ok {
		return s
	}
	kvs := strings.Split(query, "&")
	for i, kv := range kvs {
		k, _, hasValue := strings.Cut(kv, "=")
		if hasValue && !strings.EqualFold(k, "transport") {
			kvs[i] = k + "=REDACTED"
		}
	}
	return base + "?" + strings.Join(kvs, "&")
}

func isTargetScheme(s string) bool {
	switch strings.ToLower(s) {
	case schemeSTUN, schemeSTUNS, schemeTURN, schemeTURNS:
		return true
	}
	return false
}

// sensitiveParts returns the substrings of s that redactTarget hides: the
// user part and its pieces, and query values other than transport's,
// raw and unescaped.
func sensitiveParts(s string) []string {
	var out []string
	add := func(v string) {
		if v != "" {
			out = append(out, v)
			if u, err := url.QueryUnescape(v); err == nil && u != v {
				out = append(out, u)
			}
		}
	}
	if i := strings.LastIndex(s, "@"); i >= 0 {
		user := s[:i]
		if sch, rest, ok := strings.Cut(user, ":"); ok && isTargetScheme(sch) {
			user = rest
		}
		add(user)
		for _, piece := range strings.FieldsFunc(user, func(r rune) bool { return r == ':' || r == '@' }) {
			add(piece)
		}
	}
	if _, query, ok := strings.Cut(s, "?"); ok {
		for _, kv := range strings.Split(query, "&") {
			if k, v, _ := strings.Cut(kv, "="); !strings.EqualFold(k, "transport") {
				add(v)
			}
		}
	}
	return out
}

// scrub returns err with every sensitive part of raw hidden, however the
// parser that returned it quoted raw.
func scrub(raw string, err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	parts := sensitiveParts(raw)
	if len(parts) == 0 {
		return err
	}
	for _, p := range parts {
		q := strconv.Quote(p)
		msg = strings.ReplaceAll(msg, q[1:len(q)-1], "REDACTED")
		msg = strings.ReplaceAll(msg, p, "REDACTED")
	}
	return errors.New(msg)
}
