package turncheck

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/pion/stun/v4"

	"github.com/natcheck/natcheck/natclass"
)

type explanation struct {
	code int
	msg  string
	hint string
}

// turnCode returns the STUN error code of err, or of the last error
// response to method that the recorder saw (pion reports an error response
// that lacks NONCE and REALM as a missing attribute), or 0.
func turnCode(err error, rec *recorder, method stun.Method) int {
	var te *stun.TurnError
	if errors.As(err, &te) {
		return int(te.ErrorCodeAttr.Code)
	}
	var tv stun.TurnError
	if errors.As(err, &tv) {
		return int(tv.ErrorCodeAttr.Code)
	}
	if rec != nil {
		if r, ok := rec.last(method); ok && r.class == stun.ClassErrorResponse {
			return r.code
		}
	}
	return 0
}

// explain turns a failure into one line of what happened and one of what to
// do. It never includes a password, a secret or a derived credential.
func explain(step string, err error, c *checker) explanation {
	if errors.Is(err, ErrNoCredentials) {
		return explanation{msg: err.Error(), hint: "TURN servers need credentials: see natcheck turn --help"}
	}
	u := c.s.URL
	server := c.res.Server.String()
	if server == "" || !c.res.Server.IsValid() {
		server = u.HostPort()
	}
	proto := "UDP"
	if u.Transport != natclass.TURNTransportUDP {
		proto = "TCP"
	}
	timeout := c.o.stepTimeout()
	switch step {
	case natclass.TURNStepResolve:
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			return explanation{msg: fmt.Sprintf("cannot resolve %s: no such host", u.Host), hint: "check the host name in the URL"}
		}
		return explanation{msg: fmt.Sprintf("cannot resolve %s: %v", u.Host, err), hint: "check the host name and this host's DNS"}
	case natclass.TURNStepConnect:
		return connectError(err, server, timeout)
	case natclass.TURNStepTLS:
		return tlsError(err, u, c.res.TLS, timeout)
	}

	var method stun.Method = stun.MethodAllocate
	what := "Allocate"
	if step == natclass.TURNStepPermission {
		method, what = stun.MethodCreatePermission, "CreatePermission"
	}
	code := turnCode(err, c.rec, method)
	if code == 0 {
		switch cut := c.cutReason(); {
		case cut == "refused":
			return explanation{msg: fmt.Sprintf("%s refused UDP port %d (ICMP port unreachable): no TURN server listens there", c.res.Server.Addr(), u.Port),
				hint: "check the port, and that the server listens on UDP (coturn listening-port; no-udp must be off)"}
		case cut == "timeout" && c.rec.count(method) == 0 && c.rec.count(stun.MethodAllocate) == 0:
			return explanation{msg: fmt.Sprintf("no answer from %s over %s within %v", server, proto, timeout),
				hint: noAnswerHint(u)}
		case cut == "timeout":
			return explanation{msg: fmt.Sprintf("the server stopped answering during %s (no reply within %v)", what, timeout),
				hint: "the server may be overloaded or rate-limiting; run again"}
		case cut == "canceled":
			return explanation{msg: fmt.Sprintf("%s did not finish before the run's --timeout", what), hint: "give a longer --timeout"}
		}
		if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) {
			return explanation{msg: fmt.Sprintf("the server closed the connection during %s", what), hint: "check the server's logs; a server that expects TLS on this port closes plain TCP (use turns:)"}
		}
		return explanation{msg: fmt.Sprintf("%s failed: %v", what, err)}
	}
	e := explanation{code: code}
	switch code {
	case int(stun.CodeUnauthorized), 441, int(stun.CodeBadRequest):
		// 401, and 441 Wrong Credentials (RFC 8656 section 19). Servers built
		// on pion/turn answer 400 to an authenticated request whose user is
		// unknown or whose MESSAGE-INTEGRITY does not match.
		if code == int(stun.CodeBadRequest) && !(step == natclass.TURNStepAllocate && c.rec.count(stun.MethodAllocate) >= 2) {
			e.msg = fmt.Sprintf("400 Bad Request to %s", what)
			e.hint = "the server and client disagree on the protocol; check the server's logs"
			break
		}
		e.msg = fmt.Sprintf("%d %s: the server rejected the credentials", code, codeName(code))
		if c.s.Credentials.Auth() == "rest" {
			now := c.o.now()
			if !c.res.CredentialExpires.IsZero() && !c.res.CredentialExpires.After(now) {
				e.msg = fmt.Sprintf("%d: the REST credentials expired at %s (this host's clock says %s)", code,
					c.res.CredentialExpires.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
				e.hint = "give a positive --turn-credential-lifetime, and check this host's clock"
			} else {
				e.hint = fmt.Sprintf("check that the shared secret matches the server's (coturn static-auth-secret, use-auth-secret) and its realm; if it does, the clocks differ: the credentials expire at %s by this host's clock, and the server rejects them when its clock is past that (fix the clock, or lengthen --turn-credential-lifetime)",
					c.res.CredentialExpires.UTC().Format(time.RFC3339))
			}
		} else {
			e.hint = fmt.Sprintf("check the user name %q and the password (coturn: user=NAME:PASSWORD or turnadmin), and the realm %q", c.s.Credentials.User, c.client.Realm().String())
		}
	case int(stun.CodeStaleNonce):
		e.msg = "438 Stale Nonce: the server's nonce expired during the exchange"
		e.hint = "run again; if it persists, the server's nonce lifetime is too short (coturn stale-nonce)"
	case int(stun.CodeForbidden):
		if step == natclass.TURNStepPermission {
			e.msg = "403 Forbidden: the server refuses to relay to the peer address " + peerIP(c)
			e.hint = "the server denies this peer address (coturn denied-peer-ip, no-loopback-peers without allow-loopback-peers): peers on such addresses cannot be reached through it"
		} else {
			e.msg = "403 Forbidden: the server refuses allocations from this user or this address"
			e.hint = "check the server's allowed users and client address ranges"
		}
	case int(stun.CodeAllocMismatch):
		e.msg = "437 Allocation Mismatch: the server already holds an allocation for this connection"
		e.hint = "run again (a new source port clears it)"
	case int(stun.CodeUnsupportedTransProto):
		e.msg = "442 Unsupported Transport Protocol: the server does not relay this transport"
		e.hint = "the server does not offer UDP relaying to this client"
	case int(stun.CodeAllocQuotaReached):
		e.msg = "486 Allocation Quota Reached: this user holds too many allocations"
		e.hint = "release stale allocations or raise the quota (coturn user-quota, total-quota)"
	case int(stun.CodeInsufficientCapacity):
		e.msg = "508 Insufficient Capacity: the server has no relay ports left"
		e.hint = "widen the relay port range (coturn min-port, max-port) or add servers"
		if f := familyName(c.o.RelayFamily); f != "" {
			e.msg = fmt.Sprintf("508 Insufficient Capacity to an Allocate asking for an %s relayed address", f)
			e.hint = fmt.Sprintf("the server may have no %s relay address (servers built on pion/turn answer 508, not 440, for a family they do not relay; coturn: relay-ip of that family), or no relay ports left", f)
		}
	case int(stun.CodeAddrFamilyNotSupported):
		f := familyName(c.o.RelayFamily)
		if f == "" {
			f = Family(c.res.Server.Addr())
		}
		e.msg = fmt.Sprintf("440 Address Family not Supported: the server does not relay %s (RFC 6156)", f)
		e.hint = "ask for the other family, or give the server a relay address of this one (coturn relay-ip)"
	case int(stun.CodeTryAlternate):
		e.msg = "300 Try Alternate: the server redirects clients elsewhere"
		e.hint = "check the ALTERNATE-SERVER the server advertises, and use it"
	default:
		e.msg = fmt.Sprintf("error %d in reply to %s", code, what)
		e.hint = "check the server's logs"
	}
	return e
}

func peerIP(c *checker) string {
	if c.res.Mapped.IsValid() {
		return c.res.Mapped.Addr().String()
	}
	return c.res.Local.Addr().String()
}

func codeName(code int) string {
	switch code {
	case 401:
		return "Unauthorized"
	case 441:
		return "Wrong Credentials"
	case 400:
		return "Bad Request to the authenticated Allocate (how pion/turn-based servers answer wrong credentials)"
	}
	return ""
}

func noAnswerHint(u URL) string {
	if u.Transport == natclass.TURNTransportUDP {
		return "UDP to the server is dropped (a firewall here or there) or no server listens: try turn:HOST?transport=tcp or turns:HOST:443"
	}
	return "the server accepted the connection but never answered TURN: is this a TURN port? a TLS port needs turns:"
}

func connectError(err error, server string, timeout time.Duration) explanation {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return explanation{msg: fmt.Sprintf("connection to %s refused: nothing listens on that TCP port", server),
			hint: "check the port, and that the server listens on TCP (coturn: no-tcp off; TLS on tls-listening-port)"}
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return explanation{msg: fmt.Sprintf("no answer to the TCP connection to %s within %v", server, timeout),
			hint: "a firewall drops the connection or the host is down; port 443 gets through most firewalls"}
	case errors.Is(err, context.Canceled):
		return explanation{msg: "connecting was cut short by the run's --timeout", hint: "give a longer --timeout"}
	case errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EHOSTUNREACH):
		return explanation{msg: fmt.Sprintf("%s is unreachable from here: %v", server, err), hint: "check this host's routes (IPv6 without an IPv6 route?)"}
	}
	return explanation{msg: fmt.Sprintf("cannot connect to %s: %v", server, err)}
}

func tlsError(err error, u URL, info *natclass.TLSInfo, timeout time.Duration) explanation {
	var (
		ua  x509.UnknownAuthorityError
		he  x509.HostnameError
		ci  x509.CertificateInvalidError
		rh  tls.RecordHeaderError
		ne  net.Error
		exp string
	)
	if info != nil && !info.NotAfter.IsZero() {
		exp = " (certificate " + info.Subject + ", issued by " + info.Issuer + ", valid until " + info.NotAfter.Format(time.DateOnly) + ")"
	}
	switch {
	case errors.As(err, &ua):
		return explanation{msg: "TLS: the certificate is signed by an unknown authority (self-signed or a private CA)" + exp,
			hint: "pass the CA certificate with --ca-file, or skip verification with --insecure"}
	case errors.As(err, &he):
		names := "none"
		if info != nil && len(info.DNSNames) > 0 {
			names = strings.Join(info.DNSNames, ", ")
		}
		return explanation{msg: fmt.Sprintf("TLS: the certificate is not valid for %q (it names %s)", u.Host, names),
			hint: "use a host name the certificate names in the URL, or fix the certificate"}
	case errors.As(err, &ci) && ci.Reason == x509.Expired:
		return explanation{msg: "TLS: the certificate has expired or is not yet valid" + exp, hint: "renew the server's certificate, or check this host's clock"}
	case errors.As(err, &ci):
		return explanation{msg: "TLS: the certificate is invalid: " + ci.Error() + exp, hint: "fix the server's certificate chain"}
	case errors.As(err, &rh):
		return explanation{msg: "TLS: the server did not answer with TLS", hint: "this port speaks plain TURN: use turn:HOST:PORT?transport=tcp, or the server's TLS port (coturn tls-listening-port, 5349)"}
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return explanation{msg: fmt.Sprintf("TLS: no handshake within %v", timeout), hint: "the port accepts TCP but does not speak TLS, or the server has no certificate configured"}
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, net.ErrClosed), strings.Contains(err.Error(), "EOF"):
		return explanation{msg: "TLS: the server closed the connection during the handshake", hint: "if this port speaks plain TURN, use turn:HOST:PORT?transport=tcp; otherwise the server has no usable certificate or key, or no TLS version in common (coturn cert, pkey)"}
	}
	return explanation{msg: "TLS: " + err.Error(), hint: "check the server's TLS configuration"}
}
