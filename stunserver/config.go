package stunserver

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/pion/transport/v5"

	"github.com/natcheck/natcheck/internal/udpbudget"
	natstun "github.com/natcheck/natcheck/stun"
)

// Config configures a Server. The zero value of every field except Primary
// is a documented default.
type Config struct {
	// Net is the network to listen on; nil means the host's real sockets
	// (stdnet.NewNet). A pion/transport vnet.Net runs the server inside a
	// virtual network; its addresses must be static IPs of that Net.
	Net transport.Net

	// Primary is the primary address and port P:p. It is required and must
	// be a concrete (not unspecified) IP address; port 0 picks a free port.
	Primary netip.AddrPort

	// Alternate is the alternate address and port A:a. The zero value
	// selects single-address mode: one socket P:p, no OTHER-ADDRESS, and a
	// CHANGE-REQUEST that asks for a change is answered with 420 (RFC 5780
	// section 6.1). Otherwise A must be a concrete IP address of the same
	// family as P and different from it, a must differ from p, and port 0
	// picks a free port. The server listens on P:p, P:a, A:p and A:a.
	Alternate netip.AddrPort

	// IgnoreChangeRequest answers every request from the socket it arrived
	// on, as some public servers do, also in single-address mode instead
	// of the 420. RESPONSE-PORT is still honoured. It is a misbehaviour for
	// testing clients.
	IgnoreChangeRequest bool

	// AdvertiseOther, if valid, is sent as OTHER-ADDRESS instead of the real
	// alternate address, also in single-address mode. It is a misbehaviour
	// for testing clients.
	AdvertiseOther netip.AddrPort

	// OmitMappedAddress leaves MAPPED-ADDRESS out of responses, as coturn
	// does by default.
	OmitMappedAddress bool

	// MappedAddressOverride, if set, maps the request's source address to
	// the address sent in MAPPED-ADDRESS, simulating an application-level
	// gateway that rewrites addresses in packets (RFC 5780 section 4.9).
	// An invalid result omits MAPPED-ADDRESS. It is called concurrently.
	MappedAddressOverride func(netip.AddrPort) netip.AddrPort

	// Software is sent as the SOFTWARE attribute if non-empty. It must be
	// at most 763 bytes (RFC 8489 section 14.14).
	Software string

	// Logger receives the server's log records; nil discards them.
	Logger *slog.Logger

	// Trust lists the source prefixes exempt from the response budgets:
	// sources the operator vouches for (a load generator, a monitoring
	// network). No source is exempt by default, loopback included.
	Trust []netip.Prefix

	// SourceBudget bounds, in bytes, how much more the server sends over
	// UDP to one source (an IPv4 address or an IPv6 /64) than it received
	// from it: the burst of the source's byte budget, which refills at
	// SourceBudget per 8 seconds. A response no larger than its request
	// is always sent; a larger one is dropped when the source's budget
	// cannot pay the difference. This is what stops the server from
	// amplifying traffic towards a spoofed source (RFC 5780 section 9).
	// Responses sent from another socket or to another port (CHANGE-REQUEST,
	// RESPONSE-PORT) are charged like the others. 0 means 4096, enough
	// for the requests of a few natcheck runs.
	SourceBudget int

	// GlobalBudget bounds, in bytes per second, how much more the server
	// sends over UDP in all than it receives, so that the budgets of many
	// spoofed sources cannot add up; its burst is one second of it. A
	// quarter of it is for sources not answered from it in the last 5
	// seconds, charged the whole response; the rest for those that were,
	// charged the difference. 0 means 262144 (256 KiB/s).
	GlobalBudget int

	// Budget, if not nil, is a byte budget shared with other servers (natcheck
	// serve gives its STUN servers of both address families and its TURN
	// server one, so that the limits hold for the host); Trust,
	// SourceBudget and GlobalBudget are then ignored. Stats reports the
	// shared budget's drops.
	Budget *udpbudget.Budget

	// Unlimited turns the response budgets off, as if every source were
	// trusted. It is meant for tests that send many requests from one
	// address.
	Unlimited bool

	// ReflectionRate is kept for compatibility: a negative value means
	// Unlimited; any other value is ignored.
	//
	// Deprecated: the byte budgets (SourceBudget, GlobalBudget) replaced
	// the count of reflected responses; use Unlimited or Trust.
	ReflectionRate float64

	// TCP also serves Binding requests over TCP (RFC 8489 section 6.2.2:
	// messages back to back on the stream, each framed by the length in
	// its header) on the same addresses and ports as the UDP sockets: P:p
	// alone in single-address mode, else P:p, P:a, A:p and A:a. A port
	// given as 0 is then chosen free for UDP and TCP alike. Responses over
	// TCP carry OTHER-ADDRESS, so mapping behaviour discovery (RFC 5780
	// section 4.3) works over TCP, but they can only leave on the
	// connection the request came on: a CHANGE-REQUEST that asks for a
	// change and RESPONSE-PORT get 420, as RFC 5780 section 6.1 prescribes
	// for a server that cannot change address. It needs a Net with TCP;
	// pion's vnet has none.
	TCP bool

	// TLSConfig serves Binding requests over TLS (RFC 8489 section 6.2.2)
	// on TLSAddrs. It must hold a certificate; the server does not modify
	// it. Responses over TLS carry no OTHER-ADDRESS: the TLS addresses
	// are not part of the RFC 5780 quartet. CHANGE-REQUEST and
	// RESPONSE-PORT are treated as over TCP.
	TLSConfig *tls.Config

	// TLSAddrs are the addresses of the TLS listeners; unlike Primary and
	// Alternate they may be unspecified (0.0.0.0 or ::), and port 0 picks
	// a free port. They require TLSConfig.
	TLSAddrs []netip.AddrPort

	// MaxConns bounds the TCP and TLS connections open at once; 0 means
	// 1024. Connections beyond it are accepted and closed at once.
	MaxConns int

	// MaxConnsPerSource bounds the TCP and TLS connections open at once
	// from one source IP address; 0 means 32.
	MaxConnsPerSource int

	// IdleTimeout is the longest time a TCP or TLS connection may take to
	// deliver one complete message (the TLS handshake, capped at 10
	// seconds, included) before it is closed; 0 means 30 seconds. A
	// response that cannot be written within 5 seconds also closes it.
	IdleTimeout time.Duration

	// MaxConnAge closes a TCP or TLS connection this long after it is
	// accepted, however many messages it carries, so that a client that
	// sends one before every idle timeout cannot hold it for ever; 0
	// means 5 minutes.
	MaxConnAge time.Duration

	// MaxMessageSize is the longest STUN message accepted over TCP or TLS,
	// header included; a longer one closes the connection without a
	// reply. 0 means 4096; at most 65555 (RFC 8489 section 5).
	MaxMessageSize int
}

func (cfg *Config) validate() error {
	for _, t := range cfg.Trust {
		if !t.IsValid() {
			return fmt.Errorf("stunserver: trusted prefix %v is not valid", t)
		}
	}
	p, a := cfg.Primary.Addr(), cfg.Alternate.Addr()
	switch {
	case !cfg.Primary.IsValid():
		return errors.New("stunserver: primary address is required")
	case p.IsUnspecified():
		return fmt.Errorf("stunserver: primary address %v is unspecified, want a concrete address", p)
	case len(cfg.Software) > maxSoftwareLen:
		return fmt.Errorf("stunserver: software of %d bytes is longer than %d", len(cfg.Software), maxSoftwareLen)
	case cfg.SourceBudget < 0 || cfg.GlobalBudget < 0:
		return errors.New("stunserver: source and global budgets must not be negative")
	case cfg.MaxConns < 0 || cfg.MaxConnsPerSource < 0 || cfg.IdleTimeout < 0:
		return errors.New("stunserver: connection limits and idle timeout must not be negative")
	case cfg.MaxConnAge < 0:
		return errors.New("stunserver: max connection age must not be negative")
	case cfg.MaxMessageSize != 0 && (cfg.MaxMessageSize < natstun.HeaderSize || cfg.MaxMessageSize > natstun.MaxMessageSize):
		return fmt.Errorf("stunserver: max message size %d is not between %d and %d", cfg.MaxMessageSize, natstun.HeaderSize, natstun.MaxMessageSize)
	case len(cfg.TLSAddrs) > 0 && cfg.TLSConfig == nil:
		return errors.New("stunserver: tls addresses need a tls config")
	case cfg.TLSConfig != nil && len(cfg.TLSAddrs) == 0:
		return errors.New("stunserver: tls config given without tls addresses")
	case cfg.TLSConfig != nil && len(cfg.TLSConfig.Certificates) == 0 &&
		cfg.TLSConfig.GetCertificate == nil && cfg.TLSConfig.GetConfigForClient == nil:
		return errors.New("stunserver: tls config has no certificate")
	case !cfg.Alternate.IsValid():
		return nil
	case a.IsUnspecified():
		return fmt.Errorf("stunserver: alternate address %v is unspecified, want a concrete address", a)
	case p.Unmap().Is4() != a.Unmap().Is4():
		return fmt.Errorf("stunserver: primary %v and alternate %v are of different families", p, a)
	case p.Unmap() == a.Unmap():
		return fmt.Errorf("stunserver: primary and alternate address are both %v", p)
	case cfg.Primary.Port() != 0 && cfg.Primary.Port() == cfg.Alternate.Port():
		return fmt.Errorf("stunserver: primary and alternate port are both %d", cfg.Primary.Port())
	}
	return nil
}
