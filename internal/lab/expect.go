package lab

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Expectation is what a correct diagnosis says behind a router mode: what
// the Linux kernel really does, as measured in README.md. A nil list is
// not checked.
type Expectation struct {
	UDP       bool
	Mapping   []string // accepted values
	Filtering []string
	Type      []string
	DirectUDP []string
	// ExitCodes are natcheck's accepted exit codes; nil means 0 only.
	ExitCodes []int
	// WayOut is verdict.way_out.via and WayOutPort its port (0: none),
	// for the lab's natcheck run (NatcheckArgs: the lab CA not trusted).
	WayOut     string
	WayOutPort int
}

// Expect returns the expectation for mode.
func Expect(mode Mode) Expectation {
	switch mode {
	case Routed:
		return Expectation{UDP: true,
			Mapping:   []string{None},
			Filtering: []string{None, EndpointIndependent},
			Type:      []string{TypeOpenInternet},
			DirectUDP: []string{"likely"},
			WayOut:    WayDirectUDP}
	case Firewall:
		return Expectation{UDP: true,
			Mapping:   []string{None},
			Filtering: []string{AddressAndPortDependent},
			Type:      []string{TypeFirewall},
			DirectUDP: []string{"likely"},
			WayOut:    WayDirectUDP}
	case OneToOne:
		return Expectation{UDP: true,
			Mapping:   []string{EndpointIndependent},
			Filtering: []string{EndpointIndependent},
			Type:      []string{TypeFullCone},
			DirectUDP: []string{"likely"},
			WayOut:    WayDirectUDP}
	case Restricted:
		return Expectation{UDP: true,
			Mapping:   []string{EndpointIndependent},
			Filtering: []string{AddressDependent},
			Type:      []string{TypeRestrictedCone},
			DirectUDP: []string{"likely"},
			WayOut:    WayDirectUDP}
	case Masquerade:
		return Expectation{UDP: true,
			Mapping:   []string{EndpointIndependent},
			Filtering: []string{AddressAndPortDependent},
			Type:      []string{TypePortRestrictedCone},
			DirectUDP: []string{"likely"},
			WayOut:    WayDirectUDP}
	case Symmetric:
		// Filtering behind a symmetric NAT is measurable: a change reply
		// can never reach the socket whose mapping is tied to P:p, but
		// RFC 5780's RESPONSE-PORT gives the control that proves the
		// server answers from A:a (shared/nat-testing.md), and conntrack
		// filters by address and port.
		return Expectation{UDP: true,
			Mapping:   []string{AddressAndPortDependent},
			Filtering: []string{AddressAndPortDependent},
			Type:      []string{TypeSymmetric},
			DirectUDP: []string{"unlikely"},
			WayOut:    WayTURNUDP}
	case UDPBlocked, TLS443Only:
		e := Expectation{UDP: false,
			Type:      []string{TypeUDPBlocked},
			DirectUDP: []string{"impossible"},
			// STUN over TCP or TLS answered, so something was measured:
			// exit 0 (nil), not 3.
			// TCP on coturn's STUN port is ICE's first choice after UDP.
			WayOut:     WayTURNTCP,
			WayOutPort: STUNPort,
		}
		if mode == TLS443Only {
			// Only 443 gets out, and without the lab CA its certificate
			// fails: natclass counts that as TCP reaching the port.
			e.WayOutPort = TLS443Port
		}
		return e
	}
	return Expectation{}
}

// CheckNatcheck returns what is wrong in natcheck's answer, or nil. With
// lossy set, "unknown" is accepted for every field (a lost packet may leave
// a test undecided, never wrong), and so is a direct_udp of "possible" when
// the mapping is unknown.
func (e Expectation) CheckNatcheck(r NatcheckResult, lossy bool) []string {
	var bad []string
	codes := e.ExitCodes
	if codes == nil {
		codes = []int{0}
	}
	if !slices.Contains(codes, r.ExitCode) {
		bad = append(bad, fmt.Sprintf("exit code %d, want one of %v", r.ExitCode, codes))
	}
	if e.UDP && r.SchemaVersion != 2 {
		bad = append(bad, fmt.Sprintf("schema_version %d, want 2", r.SchemaVersion))
	}
	if r.UDP != e.UDP {
		bad = append(bad, fmt.Sprintf("udp %v, want %v", r.UDP, e.UDP))
	}
	if r.ExitCode == 3 && r.Stdout == "" {
		// Nothing measured and no report: only the exit code can be checked.
		return bad
	}
	direct := e.DirectUDP
	if lossy && r.NAT.Mapping == Unknown && direct != nil {
		direct = append([]string{"possible"}, direct...)
	}
	bad = append(bad, check("mapping", r.NAT.Mapping, e.Mapping, lossy)...)
	bad = append(bad, check("filtering", r.NAT.Filtering, e.Filtering, lossy)...)
	bad = append(bad, check("type", r.NAT.Type, e.Type, lossy)...)
	bad = append(bad, check("direct_udp", r.Verdict.DirectUDP, direct, lossy)...)
	if e.WayOut != "" {
		w := r.Verdict.WayOut
		switch {
		case lossy && (w.Via == Unknown || w.Via == e.WayOut):
		case w.Via != e.WayOut || w.Port != e.WayOutPort:
			bad = append(bad, fmt.Sprintf("way_out %s port %d, want %s port %d", w.Via, w.Port, e.WayOut, e.WayOutPort))
		}
	}
	return bad
}

// CheckNatdiscovery returns what is wrong in turnutils_natdiscovery's
// answer, or nil. A missing conclusion is wrong where one was due.
func (e Expectation) CheckNatdiscovery(r NatdiscoveryResult) []string {
	var bad []string
	if r.UDP != e.UDP {
		bad = append(bad, fmt.Sprintf("udp %v, want %v", r.UDP, e.UDP))
	}
	bad = append(bad, check("mapping", r.Mapping, e.Mapping, false)...)
	bad = append(bad, check("filtering", r.Filtering, e.Filtering, false)...)
	bad = append(bad, check("type", r.Type, e.Type, false)...)
	return bad
}

// Outcome is how a tool's answer compares with the expectation.
type Outcome string

// Outcomes of one run.
const (
	// Right: every field is what the kernel does.
	Right Outcome = "right"
	// Undecided: no field contradicts the kernel, but at least one is
	// unknown (natcheck) or has no conclusion (natdiscovery).
	Undecided Outcome = "unknown"
	// Wrong: a field contradicts the kernel, or the run failed.
	Wrong Outcome = "wrong"
)

// JudgeNatcheck says whether natcheck's answer is right, undecided or
// wrong, and what is wrong with it when it is not right. Undecided is
// CheckNatcheck's lossy leniency: unknown fields (and direct_udp
// "possible" with the mapping unknown), never a contradicting value.
func (e Expectation) JudgeNatcheck(r NatcheckResult) (Outcome, []string) {
	bad := e.CheckNatcheck(r, false)
	if bad == nil {
		return Right, nil
	}
	if worse := e.CheckNatcheck(r, true); worse != nil {
		return Wrong, worse
	}
	return Undecided, bad
}

// JudgeNatdiscovery is JudgeNatcheck for turnutils_natdiscovery: a
// mapping or filtering test that printed no conclusion is undecided.
func (e Expectation) JudgeNatdiscovery(r NatdiscoveryResult) (Outcome, []string) {
	bad := e.CheckNatdiscovery(r)
	if bad == nil {
		return Right, nil
	}
	lenient := r
	if lenient.Mapping == "" {
		lenient.Mapping = Unknown
	}
	if lenient.Filtering == "" {
		lenient.Filtering = Unknown
	}
	var worse []string
	if r.UDP != e.UDP {
		worse = append(worse, fmt.Sprintf("udp %v, want %v", r.UDP, e.UDP))
	}
	worse = append(worse, check("mapping", lenient.Mapping, e.Mapping, true)...)
	worse = append(worse, check("filtering", lenient.Filtering, e.Filtering, true)...)
	worse = append(worse, check("type", lenient.Type, e.Type, true)...)
	if worse == nil {
		return Undecided, bad
	}
	return Wrong, worse
}

func check(field, got string, want []string, unknownOK bool) []string {
	if want == nil || slices.Contains(want, got) || (unknownOK && got == Unknown) {
		return nil
	}
	return []string{fmt.Sprintf("%s %q, want one of %q", field, got, want)}
}

// Outcomes of one TCP, TLS or UDP attempt in natcheck's paths list.
const (
	// PathOK: a Binding response came back (ok and reachable); over TCP
	// and TLS with the client's public address as mapped address.
	PathOK = "ok"
	// PathCertError: the TCP handshake completed (reachable) and the TLS
	// certificate was rejected as signed by an unknown authority.
	PathCertError = "cert-error"
	// PathOKOrCertError accepts either.
	PathOKOrCertError = "ok-or-cert-error"
	// PathReachable: the TCP handshake completed; what followed is not
	// checked (the UDP tests may have ended the attempt).
	PathReachable = "reachable"
	// PathTimedOut: nothing came back (a dropped SYN): not reachable, and
	// the error says it timed out.
	PathTimedOut = "timed-out"
	// PathRefused: the server's host refused the connection (RST).
	PathRefused = "refused"
	// PathNoReply: not ok, not reachable (UDP: no reply).
	PathNoReply = "no-reply"
)

// PathExpectation is the expected outcome of natcheck's attempt over
// Transport (udp, tcp, tls) to Address.
type PathExpectation struct {
	Transport string
	Address   netip.AddrPort
	Outcome   string
	Optional  bool // natcheck may leave the attempt out
}

// ExpectPaths returns, for natcheck run with NatcheckArgs' servers (coturn
// at STUN and the plain server at PlainSTUN) and the default TLS ports 443
// and 5349, the outcome of every attempt behind mode. caTrusted says
// whether natcheck trusts the lab CA (SSL_CERT_FILE); strict asks for the
// exact outcome of TLS attempts, which the UDP tests may cut short where
// UDP works.
func ExpectPaths(mode Mode, caTrusted, strict bool) []PathExpectation {
	coturn, plain := STUNAddr, PlainSTUNAddr
	udp := PathOK
	if mode.BlocksUDP() {
		udp = PathNoReply
	}
	tcp, tls443, tls5349, plain443, plain5349 := PathOK, PathCertError, PathCertError, PathRefused, PathRefused
	if caTrusted {
		tls443, tls5349 = PathOK, PathOK
	}
	if !strict {
		tls443, tls5349 = PathReachable, PathReachable
	}
	if mode == TLS443Only {
		tcp, tls5349, plain5349 = PathTimedOut, PathTimedOut, PathTimedOut
	}
	at := netip.AddrPortFrom
	return []PathExpectation{
		{"udp", at(coturn, STUNPort), udp, false},
		{"udp", at(plain, STUNPort), udp, false},
		{"tcp", at(coturn, STUNPort), tcp, false},
		{"tcp", at(plain, STUNPort), tcp, false},
		// TCP to coturn's OTHER-ADDRESS, which natcheck tries once UDP
		// Test I has named it (so not where UDP is blocked).
		{"tcp", at(STUNAltAddr, STUNAltPort), tcp, true},
		{"tls", at(coturn, TLS443Port), tls443, false},
		{"tls", at(coturn, TURNTLSPort), tls5349, false},
		{"tls", at(plain, TLS443Port), plain443, false},
		{"tls", at(plain, TURNTLSPort), plain5349, false},
	}
}

// CheckPaths returns what is wrong in natcheck's paths list: a missing or
// unexpected attempt, or an outcome other than the expected one. public
// is the client's public address, the mapped address of TCP and TLS.
func CheckPaths(paths []NatcheckPath, want []PathExpectation, public netip.Addr) []string {
	var bad []string
	seen := make(map[string]bool)
	for _, w := range want {
		key := w.Transport + " " + w.Address.String()
		seen[key] = true
		i := slices.IndexFunc(paths, func(p NatcheckPath) bool {
			return p.Transport == w.Transport && p.Address == w.Address.String()
		})
		if i < 0 {
			if !w.Optional {
				bad = append(bad, key+": no such attempt in paths")
			}
			continue
		}
		if why := pathOutcome(paths[i], w.Outcome, public); why != "" {
			bad = append(bad, fmt.Sprintf("%s: want %s: %s", key, w.Outcome, why))
		}
	}
	for _, p := range paths {
		if key := p.Transport + " " + p.Address; !seen[key] {
			bad = append(bad, key+": unexpected attempt")
		}
	}
	return bad
}

// pathOutcome says why p is not outcome, or "".
func pathOutcome(p NatcheckPath, outcome string, public netip.Addr) string {
	got := fmt.Sprintf("ok=%v reachable=%v cert_error=%q error=%q mapped=%q", p.OK, p.Reachable, p.CertError, p.Error, p.Mapped)
	isOK := func() bool {
		if !p.OK || !p.Reachable || p.Error != "" || p.CertError != "" {
			return false
		}
		if p.Transport == "udp" {
			return true
		}
		m, err := netip.ParseAddrPort(p.Mapped)
		return err == nil && m.Addr() == public
	}
	isCertError := func() bool {
		return !p.OK && p.Reachable && strings.Contains(p.CertError, "unknown authority")
	}
	var good bool
	switch outcome {
	case PathOK:
		good = isOK()
	case PathCertError:
		good = isCertError()
	case PathOKOrCertError:
		good = isOK() || isCertError()
	case PathReachable:
		good = p.Reachable
	case PathTimedOut:
		good = !p.OK && !p.Reachable && strings.Contains(p.Error, "timed out")
	case PathRefused:
		good = !p.OK && !p.Reachable && strings.Contains(p.Error, "refused")
	case PathNoReply:
		good = !p.OK && !p.Reachable
	default:
		return "unknown outcome " + outcome
	}
	if good {
		return ""
	}
	return got
}
