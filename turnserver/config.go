package turnserver

import (
	"cmp"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/natcheck/natcheck/internal/udpbudget"
	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"
)

// Defaults of Config.
const (
	DefaultRealm             = "natcheck"
	DefaultRelayMinPort      = 49152
	DefaultRelayMaxPort      = 65535
	DefaultMaxAllocations    = 1000
	DefaultUserQuota         = 10
	DefaultMaxConns          = 1024
	DefaultMaxConnsPerSource = 32
	DefaultFirstTimeout      = 30 * time.Second
	DefaultMaxConnAge        = 5 * time.Minute
)

// Config configures a Server. The zero value of every field is a documented
// default, except that a Server needs a listener and credentials.
type Config struct {
	// Net is the network to listen on and to bind relay sockets in; nil
	// means the host's real sockets (stdnet.NewNet).
	Net transport.Net

	// UDP, TCP and TLS are the addresses to serve TURN on over UDP, TCP
	// and TLS; there must be at least one. Port 0 picks a free port. An
	// unspecified address (0.0.0.0 or ::) needs a Relay of its family.
	UDP, TCP, TLS []netip.AddrPort

	// TLSConfig serves the TLS addresses; it is required with them and
	// must hold a certificate. The server does not modify it.
	TLSConfig *tls.Config

	// Realm is the realm of the long-term credentials (RFC 8489 section
	// 9.2); "" means DefaultRealm.
	Realm string

	// Users maps the user names of static users to their long-term keys,
	// MD5(user ":" realm ":" password) (RFC 8489 section 9.2.2), as
	// ReadUsersFile and turn.GenerateAuthKey make them for Realm. A user
	// is its own user for the quota.
	Users map[string][]byte

	// Secret, if not empty, also accepts TURN REST API credentials made
	// from it: the user name "EXPIRY:USER" (Unix seconds, not in the past)
	// and the password base64(HMAC-SHA1(Secret, user name)). USER (the
	// whole name when there is no colon) is the user for the quota. At
	// least one of Users and Secret must be given; static users are
	// looked up first.
	Secret string

	// Relays are the addresses relayed transport addresses are made on,
	// at most one per address family. A listener's relays are on the
	// Relay of its family, or on the listener's own address when there
	// is none; a client that asks for the other family with
	// REQUESTED-ADDRESS-FAMILY (RFC 6156) gets a relay on the Relay of
	// that family, and 508 Insufficient Capacity when there is none
	// (pion/turn answers a failed relay so, not with 440).
	Relays []Relay

	// RelayMinPort and RelayMaxPort are the range relay ports are chosen
	// from; both zero means DefaultRelayMinPort to DefaultRelayMaxPort.
	RelayMinPort, RelayMaxPort uint16

	// MaxAllocations bounds the allocations at once, and UserQuota those
	// of one user; further Allocate requests get 486 Allocation Quota
	// Reached (RFC 8656 section 7.2, step 7). Allocations being created
	// concurrently can overshoot by their number. 0 means
	// DefaultMaxAllocations and DefaultUserQuota.
	MaxAllocations, UserQuota int

	// AllowPeers and DenyPeers are the permission policy (RFC 8656
	// section 9): a peer in AllowPeers is allowed; otherwise one in
	// DenyPeers is denied, and so, by default, are the server's own
	// addresses (those of its listeners and relays and of the host's
	// interfaces), every range of the IANA IPv4 and IPv6 Special-Purpose
	// Address Registries (loopback, private, link-local, shared, this
	// network, reserved, documentation, benchmarking, 6to4, Teredo and the
	// rest), multicast and broadcast, and IPv6 outside 2000::/3, which
	// keeps the relay from reaching the server's own host and networks.
	// An IPv4-mapped peer is judged as its IPv4 address; a NAT64 peer
	// (64:ff9b::/96, RFC 6052, or the local-use 64:ff9b:1::/48, RFC 8215,
	// denied unless allowed) also needs the IPv4 address it embeds to be
	// allowed. CreatePermission for a denied peer gets 403 Forbidden.
	AllowPeers, DenyPeers []netip.Prefix

	// Budget pays for what the UDP listeners send to clients without an
	// allocation (Binding responses, 401s with REALM and NONCE, other
	// errors): see package udpbudget. Clients with an allocation are not
	// charged. nil means a budget of the server's own with udpbudget's
	// defaults and no trusted sources, unless Unlimited.
	Budget *udpbudget.Budget

	// Unlimited turns the UDP byte budget off; for tests that send many
	// unauthenticated requests from one address.
	Unlimited bool

	// MaxConns bounds the connections open at once on each TCP or TLS
	// listener, and MaxConnsPerSource those from one source (an IPv4
	// address or an IPv6 /64); connections beyond are closed as soon as
	// they are accepted. 0 means DefaultMaxConns and
	// DefaultMaxConnsPerSource.
	MaxConns, MaxConnsPerSource int

	// FirstTimeout closes a TCP or TLS connection that sends nothing for
	// this long after it is accepted; 0 means DefaultFirstTimeout. After
	// its first bytes a connection is closed when silent for longer than
	// an allocation lives (RFC 8656 section 3.2) plus a minute.
	FirstTimeout time.Duration

	// MaxConnAge closes a TCP or TLS connection this long after it is
	// accepted, however busy, while it carries no allocation; 0 means
	// DefaultMaxConnAge. A connection that carries an allocation lives as
	// long as the allocation, which ends when its connection closes and
	// which its client keeps alive with authenticated Refresh requests
	// (RFC 8656 section 7) and the quotas bound: a call over TURN-TCP may
	// last hours. Once the allocation is gone, a connection older than
	// MaxConnAge is closed at once.
	MaxConnAge time.Duration

	// Logger receives the server's log records, pion/turn's among them;
	// nil discards them.
	Logger *slog.Logger
}

// Relay is the address relayed transport addresses of one family are
// given to clients with (Public, in XOR-RELAYED-ADDRESS) and the local
// address relay sockets bind to (Local); they differ behind a 1:1 NAT. A
// zero Local means Public.
type Relay struct {
	Public, Local netip.Addr
}

// withDefaults returns cfg with its zero values replaced by the defaults
// they stand for.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.Net == nil {
		std, err := stdnet.NewNet()
		if err != nil {
			return cfg, fmt.Errorf("turnserver: open host network: %w", err)
		}
		cfg.Net = std
	}
	cfg.Logger = cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler))
	cfg.Realm = cmp.Or(cfg.Realm, DefaultRealm)
	if cfg.RelayMinPort == 0 && cfg.RelayMaxPort == 0 {
		cfg.RelayMinPort, cfg.RelayMaxPort = DefaultRelayMinPort, DefaultRelayMaxPort
	}
	cfg.MaxAllocations = cmp.Or(cfg.MaxAllocations, DefaultMaxAllocations)
	cfg.UserQuota = cmp.Or(cfg.UserQuota, DefaultUserQuota)
	cfg.MaxConns = cmp.Or(cfg.MaxConns, DefaultMaxConns)
	cfg.MaxConnsPerSource = cmp.Or(cfg.MaxConnsPerSource, DefaultMaxConnsPerSource)
	cfg.FirstTimeout = cmp.Or(cfg.FirstTimeout, DefaultFirstTimeout)
	cfg.MaxConnAge = cmp.Or(cfg.MaxConnAge, DefaultMaxConnAge)
	return cfg, nil
}

func (cfg *Config) validate() error {
	listeners := append(append(append([]netip.AddrPort(nil), cfg.UDP...), cfg.TCP...), cfg.TLS...)
	switch {
	case len(listeners) == 0:
		return errors.New("turnserver: no listener")
	case len(cfg.Users) == 0 && cfg.Secret == "":
		return errors.New("turnserver: no credentials: give users or a shared secret")
	case len(cfg.TLS) > 0 && cfg.TLSConfig == nil:
		return errors.New("turnserver: tls addresses need a tls config")
	case cfg.TLSConfig != nil && len(cfg.TLSConfig.Certificates) == 0 &&
		cfg.TLSConfig.GetCertificate == nil && cfg.TLSConfig.GetConfigForClient == nil:
		return errors.New("turnserver: tls config has no certificate")
	case (cfg.RelayMinPort == 0) != (cfg.RelayMaxPort == 0) || cfg.RelayMinPort > cfg.RelayMaxPort:
		return fmt.Errorf("turnserver: relay ports %d-%d: want 1 <= min <= max", cfg.RelayMinPort, cfg.RelayMaxPort)
	case cfg.MaxAllocations < 0 || cfg.UserQuota < 0 || cfg.MaxConns < 0 || cfg.MaxConnsPerSource < 0 || cfg.FirstTimeout < 0 || cfg.MaxConnAge < 0:
		return errors.New("turnserver: quotas, connection limits and timeouts must not be negative")
	}
	seen := map[bool]bool{}
	for _, r := range cfg.Relays {
		if !r.Public.IsValid() || r.Public.Zone() != "" || r.Public.IsUnspecified() ||
			(r.Local.IsValid() && r.Local.Unmap().Is4() != r.Public.Unmap().Is4()) {
			return fmt.Errorf("turnserver: relay %v/%v: want a concrete public address and a local one of its family", r.Public, r.Local)
		}
		if seen[r.Public.Unmap().Is4()] {
			return fmt.Errorf("turnserver: relay %v: one per address family", r.Public)
		}
		seen[r.Public.Unmap().Is4()] = true
	}
	for _, ap := range listeners {
		if _, err := relayFor(cfg.Relays, ap.Addr()); err != nil {
			return err
		}
	}
	return nil
}

// relayFor returns the relay addresses for a listener on ip.
func relayFor(relays []Relay, ip netip.Addr) (Relay, error) {
	ip = ip.Unmap()
	for _, r := range relays {
		if r.Public.Unmap().Is4() == ip.Is4() {
			r.Public = r.Public.Unmap()
			if !r.Local.IsValid() {
				r.Local = r.Public
			}
			r.Local = r.Local.Unmap()
			return r, nil
		}
	}
	if ip.IsUnspecified() {
		return Relay{}, fmt.Errorf("turnserver: listener on %v needs a relay address of its family", ip)
	}
	return Relay{Public: ip, Local: ip}, nil
}
