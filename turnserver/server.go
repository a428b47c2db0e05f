// Package turnserver implements a TURN server (RFC 8656) on pion/turn: it
// relays UDP for clients that connect over UDP, TCP or TLS (RFC 8656
// section 3.1), with long-term credentials (RFC 8489 section 9.2) of static
// users and the time-limited credentials of the TURN REST API
// (draft-uberti-behave-turn-rest-00, coturn's use-auth-secret), quotas on
// allocations (RFC 8656 section 7.2), a policy on the peers clients may
// relay to (RFC 8656 section 9), and limits on TCP and TLS connections.
//
// Start runs a server with a Config whose zero values are documented
// defaults; ReadUsersFile and ReadSecretFile read credentials from files
// in the formats natcheck serve documents.
package turnserver

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/transport/v4"
	"github.com/pion/transport/v4/stdnet"
	"github.com/pion/turn/v5"

	"github.com/natcheck/natcheck/internal/connlimit"
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
)

const (
	// idleTimeout closes a TCP or TLS connection that has been silent for
	// longer than an allocation lives (RFC 8656 section 3.2, 10 minutes by
	// default) plus a margin.
	idleTimeout = 11 * time.Minute
	// relayRetries is how many random ports of the range are tried for a
	// relay socket.
	relayRetries = 50
	// quotaLogInterval is the least time between two log lines about
	// allocations refused for a quota.
	quotaLogInterval = time.Second
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
	// is none.
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
	// DenyPeers is denied, and so, by default, are loopback, private
	// (RFC 1918, RFC 4193), link-local, shared (100.64.0.0/10, RFC 6598),
	// multicast and unspecified addresses, which keeps the relay from
	// reaching the server's own host and networks. CreatePermission for a
	// denied peer gets 403 Forbidden.
	AllowPeers, DenyPeers []netip.Prefix

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

// Stats are counters of a Server since Start.
type Stats struct {
	// Allocations is the number of allocations open now.
	Allocations int
	// Created counts allocations created.
	Created uint64
	// QuotaRefused counts Allocate requests refused for a quota.
	QuotaRefused uint64
	// AuthFailed counts requests refused for their credentials.
	AuthFailed uint64
	// PeersDenied counts permissions refused by the peer policy.
	PeersDenied uint64
}

// Server is a running TURN server. Its methods are safe for concurrent use.
type Server struct {
	srv       *turn.Server
	listeners []*connlimit.Listener
	udp       []netip.AddrPort
	tcp, tls  []netip.AddrPort
	log       *slog.Logger

	maxAllocations, userQuota int

	mu      sync.Mutex
	total   int
	perUser map[string]int

	created, quotaRefused, authFailed, peersDenied atomic.Uint64
	lastQuotaLog                                   atomic.Int64 // unix nanoseconds

	closeOnce sync.Once
	closeErr  error
	stopCtx   func() bool
}

// Start binds the server's listeners and starts serving on them. The
// server runs until Close is called or ctx is done.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("turnserver: start: %w", err)
	}
	nw := cfg.Net
	if nw == nil {
		std, err := stdnet.NewNet()
		if err != nil {
			return nil, fmt.Errorf("turnserver: open host network: %w", err)
		}
		nw = std
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	realm := cmp.Or(cfg.Realm, DefaultRealm)
	minPort, maxPort := cfg.RelayMinPort, cfg.RelayMaxPort
	if minPort == 0 && maxPort == 0 {
		minPort, maxPort = DefaultRelayMinPort, DefaultRelayMaxPort
	}
	s := &Server{
		log:            log,
		maxAllocations: cmp.Or(cfg.MaxAllocations, DefaultMaxAllocations),
		userQuota:      cmp.Or(cfg.UserQuota, DefaultUserQuota),
		perUser:        map[string]int{},
	}

	var tc turn.ServerConfig
	cleanup := func() {
		for _, pc := range tc.PacketConnConfigs {
			_ = pc.PacketConn.Close()
		}
		for _, l := range tc.ListenerConfigs {
			_ = l.Listener.Close()
		}
	}
	gen := func(ip netip.Addr) *turn.RelayAddressGeneratorPortRange {
		r, _ := relayFor(cfg.Relays, ip) // checked by validate
		return &turn.RelayAddressGeneratorPortRange{
			RelayAddress: r.Public.AsSlice(),
			Address:      r.Local.String(),
			MinPort:      minPort,
			MaxPort:      maxPort,
			MaxRetries:   relayRetries,
			Net:          nw,
		}
	}
	allow, deny := cfg.AllowPeers, cfg.DenyPeers
	perm := func(client net.Addr, peer net.IP) bool {
		ip, _ := netip.AddrFromSlice(peer)
		if peerAllowed(allow, deny, ip) {
			return true
		}
		s.peersDenied.Add(1)
		log.Debug("peer denied", "client", client.String(), "peer", ip)
		return false
	}
	for _, ap := range cfg.UDP {
		pc, err := nw.ListenPacket(network("udp", ap.Addr()), ap.String())
		if err != nil {
			cleanup()
			return nil, fmt.Errorf("turnserver: listen on udp %v: %w", ap, err)
		}
		tc.PacketConnConfigs = append(tc.PacketConnConfigs, turn.PacketConnConfig{
			PacketConn: pc, RelayAddressGenerator: gen(ap.Addr()), PermissionHandler: perm,
		})
		s.udp = append(s.udp, addrPortOf(pc.LocalAddr()))
	}
	for i, ap := range append(append([]netip.AddrPort(nil), cfg.TCP...), cfg.TLS...) {
		ln, err := nw.ListenTCP(network("tcp", ap.Addr()), net.TCPAddrFromAddrPort(ap))
		if err != nil {
			cleanup()
			return nil, fmt.Errorf("turnserver: listen on tcp %v: %w", ap, err)
		}
		ll := connlimit.NewListener(ln, connlimit.ListenerConfig{
			MaxConns:          cmp.Or(cfg.MaxConns, DefaultMaxConns),
			MaxConnsPerSource: cmp.Or(cfg.MaxConnsPerSource, DefaultMaxConnsPerSource),
			FirstTimeout:      cmp.Or(cfg.FirstTimeout, DefaultFirstTimeout),
			IdleTimeout:       idleTimeout,
			Refused: func(r connlimit.Refusal) {
				if r.Log {
					log.Warn("turn connection refused: limit reached", "source", r.Source, "open", r.Open)
				}
			},
		})
		s.listeners = append(s.listeners, ll)
		var l net.Listener = ll
		if i >= len(cfg.TCP) {
			l = tls.NewListener(ll, cfg.TLSConfig)
			s.tls = append(s.tls, addrPortOf(ln.Addr()))
		} else {
			s.tcp = append(s.tcp, addrPortOf(ln.Addr()))
		}
		tc.ListenerConfigs = append(tc.ListenerConfigs, turn.ListenerConfig{
			Listener: l, RelayAddressGenerator: gen(ap.Addr()), PermissionHandler: perm,
		})
	}
	a := &authenticator{realm: realm, keys: maps.Clone(cfg.Users), secret: cfg.Secret, now: time.Now,
		refused: func(user, why string) {
			s.authFailed.Add(1)
			log.Debug("authentication failed", "user", user, "reason", why)
		}}
	tc.Realm = realm
	tc.LoggerFactory = pionLogFactory{log}
	tc.AuthHandler = a.auth
	tc.QuotaHandler = s.quota
	tc.EventHandler = turn.EventHandler{
		OnAuth: func(src, _ net.Addr, proto, user, _ string, method string, ok bool) {
			if !ok {
				s.authFailed.Add(1)
				log.Debug("authentication failed", "client", src.String(), "protocol", proto, "user", user, "method", method)
			}
		},
		OnAllocationCreated: func(src, _ net.Addr, proto, user, _ string, relay net.Addr, _ int) {
			s.mu.Lock()
			s.total++
			s.perUser[user]++
			s.mu.Unlock()
			s.created.Add(1)
			log.Info("allocation created", "client", src.String(), "protocol", proto, "user", user, "relay", relay.String())
		},
		OnAllocationDeleted: func(src, _ net.Addr, proto, user, _ string) {
			s.mu.Lock()
			s.total--
			if s.perUser[user] <= 1 {
				delete(s.perUser, user)
			} else {
				s.perUser[user]--
			}
			s.mu.Unlock()
			log.Debug("allocation deleted", "client", src.String(), "protocol", proto, "user", user)
		},
	}
	srv, err := turn.NewServer(tc)
	if err != nil {
		cleanup()
		return nil, fmt.Errorf("turnserver: %w", err)
	}
	s.srv = srv
	s.stopCtx = context.AfterFunc(ctx, func() { _ = s.close() })
	return s, nil
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
	case cfg.MaxAllocations < 0 || cfg.UserQuota < 0 || cfg.MaxConns < 0 || cfg.MaxConnsPerSource < 0 || cfg.FirstTimeout < 0:
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

// quota is the QuotaHandler: MaxAllocations and UserQuota.
func (s *Server) quota(user, _ string, src net.Addr) bool {
	s.mu.Lock()
	total, mine := s.total, s.perUser[user]
	s.mu.Unlock()
	if total < s.maxAllocations && mine < s.userQuota {
		return true
	}
	s.quotaRefused.Add(1)
	now := time.Now().UnixNano()
	if last := s.lastQuotaLog.Load(); now-last >= int64(quotaLogInterval) && s.lastQuotaLog.CompareAndSwap(last, now) {
		s.log.Warn("allocation refused: quota reached", "client", src.String(), "user", user,
			"allocations", total, "user_allocations", mine)
	}
	return false
}

// Stats returns a snapshot of the server's counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	active := s.total
	s.mu.Unlock()
	return Stats{
		Allocations:  active,
		Created:      s.created.Load(),
		QuotaRefused: s.quotaRefused.Load(),
		AuthFailed:   s.authFailed.Load(),
		PeersDenied:  s.peersDenied.Load(),
	}
}

// UDPAddrs returns the bound addresses of the UDP listeners, in the order
// of Config.UDP.
func (s *Server) UDPAddrs() []netip.AddrPort { return append([]netip.AddrPort(nil), s.udp...) }

// TCPAddrs returns the bound addresses of the TCP listeners, in the order
// of Config.TCP.
func (s *Server) TCPAddrs() []netip.AddrPort { return append([]netip.AddrPort(nil), s.tcp...) }

// TLSAddrs returns the bound addresses of the TLS listeners, in the order
// of Config.TLS.
func (s *Server) TLSAddrs() []netip.AddrPort { return append([]netip.AddrPort(nil), s.tls...) }

// Close stops the server: it closes its listeners, its TCP and TLS
// connections and its allocations. It is idempotent; later calls return
// nil.
func (s *Server) Close() error {
	s.stopCtx() // set before Start returned
	return s.close()
}

// close is Close without releasing the context: it also runs when the
// context of Start is done.
func (s *Server) close() error {
	first := false
	s.closeOnce.Do(func() {
		first = true
		if err := s.srv.Close(); err != nil { // closes the sockets and listeners; allocations follow
			s.closeErr = fmt.Errorf("turnserver: close: %w", err)
		}
		for _, l := range s.listeners {
			l.CloseConns()
		}
	})
	if !first {
		return nil
	}
	return s.closeErr
}

func network(proto string, ip netip.Addr) string {
	if ip.Unmap().Is4() {
		return proto + "4"
	}
	return proto + "6"
}

// addrPortOf returns the address of a TCP or UDP net.Addr, unmapped, or of
// any other that prints as IP:PORT.
func addrPortOf(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.TCPAddr:
		ap = a.AddrPort()
	case *net.UDPAddr:
		ap = a.AddrPort()
	default:
		ap, _ = netip.ParseAddrPort(a.String())
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
