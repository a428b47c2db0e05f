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
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/transport/v5"
	"github.com/pion/turn/v5"

	"github.com/natcheck/natcheck/internal/connlimit"
	"github.com/natcheck/natcheck/internal/udpbudget"
	natstun "github.com/natcheck/natcheck/stun"
)

const (
	// idleTimeout closes a TCP or TLS connection that has been silent for
	// longer than an allocation lives (RFC 8656 section 3.2, 10 minutes by
	// default) plus a margin.
	idleTimeout = 11 * time.Minute
	// relayRetries is how many random ports of the range are tried for a
	// relay socket.
	relayRetries = 50
	// ownAddrsInterval is the least time between two enumerations of the
	// host's interface addresses for the peer policy.
	ownAddrsInterval = 10 * time.Second
	// quotaLogInterval is the least time between two log lines about
	// allocations refused for a quota.
	quotaLogInterval = time.Second
)

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
	// BudgetDrops counts UDP datagrams to clients without an allocation
	// that the byte budget (Config.Budget) did not pay for.
	BudgetDrops uint64
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

	created, quotaRefused, authFailed, peersDenied, budgetDrops atomic.Uint64
	allocated                                                   clientSet    // UDP clients with an allocation
	lastQuotaLog                                                atomic.Int64 // unix nanoseconds

	closeOnce sync.Once
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
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	nw, log := cfg.Net, cfg.Logger
	s := &Server{
		log:            log,
		maxAllocations: cfg.MaxAllocations,
		userQuota:      cfg.UserQuota,
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
	portRange := func(r Relay) *turn.RelayAddressGeneratorPortRange {
		return &turn.RelayAddressGeneratorPortRange{
			RelayAddress: r.Public.AsSlice(),
			Address:      r.Local.String(),
			MinPort:      cfg.RelayMinPort,
			MaxPort:      cfg.RelayMaxPort,
			MaxRetries:   relayRetries,
			Net:          nw,
		}
	}
	// A listener relays in its own family, and in the other one when a
	// Relay of that family is configured (RFC 6156 REQUESTED-ADDRESS-FAMILY).
	gen := func(ip netip.Addr) turn.RelayAddressGenerator {
		r, _ := relayFor(cfg.Relays, ip) // checked by validate
		g := familyGen{}
		g.set(r.Public, portRange(r))
		for _, o := range cfg.Relays {
			if o.Public.Unmap().Is4() != r.Public.Is4() {
				o, _ = relayFor(cfg.Relays, o.Public)
				g.set(o.Public, portRange(o))
			}
		}
		return g
	}
	allow, deny := cfg.AllowPeers, cfg.DenyPeers
	own := &ownAddrs{nw: nw, static: configAddrs(cfg)}
	perm := func(client net.Addr, peer net.IP) bool {
		ip, _ := netip.AddrFromSlice(peer)
		if peerAllowed(allow, deny, own.get(), ip) {
			return true
		}
		s.peersDenied.Add(1)
		log.Debug("peer denied", "client", client.String(), "peer", ip)
		return false
	}
	budget := cfg.Budget
	if budget == nil && !cfg.Unlimited {
		budget = udpbudget.New(nil, udpbudget.DefaultSource, udpbudget.DefaultGlobal, nil, log)
	}
	for _, ap := range cfg.UDP {
		pc, err := nw.ListenPacket(network("udp", ap.Addr()), ap.String())
		if err != nil {
			cleanup()
			return nil, fmt.Errorf("turnserver: listen on udp %v: %w", ap, err)
		}
		if budget != nil {
			pc = &budgetConn{PacketConn: pc, budget: budget, allocated: &s.allocated, drops: &s.budgetDrops,
				local: natstun.AddrPortOf(pc.LocalAddr())}
		}
		tc.PacketConnConfigs = append(tc.PacketConnConfigs, turn.PacketConnConfig{
			PacketConn: pc, RelayAddressGenerator: gen(ap.Addr()), PermissionHandler: perm,
		})
		s.udp = append(s.udp, natstun.AddrPortOf(pc.LocalAddr()))
	}
	for i, ap := range append(append([]netip.AddrPort(nil), cfg.TCP...), cfg.TLS...) {
		ln, err := nw.ListenTCP(network("tcp", ap.Addr()), net.TCPAddrFromAddrPort(ap))
		if err != nil {
			cleanup()
			return nil, fmt.Errorf("turnserver: listen on tcp %v: %w", ap, err)
		}
		ll := connlimit.NewListener(ln, connlimit.ListenerConfig{
			MaxConns:          cfg.MaxConns,
			MaxConnsPerSource: cfg.MaxConnsPerSource,
			FirstTimeout:      cfg.FirstTimeout,
			IdleTimeout:       idleTimeout,
			MaxAge:            cfg.MaxConnAge,
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
			s.tls = append(s.tls, natstun.AddrPortOf(ln.Addr()))
		} else {
			s.tcp = append(s.tcp, natstun.AddrPortOf(ln.Addr()))
		}
		tc.ListenerConfigs = append(tc.ListenerConfigs, turn.ListenerConfig{
			Listener: l, RelayAddressGenerator: gen(ap.Addr()), PermissionHandler: perm,
		})
	}
	a := &authenticator{realm: cfg.Realm, keys: maps.Clone(cfg.Users), secret: cfg.Secret, now: time.Now,
		refused: func(user, why string) {
			s.authFailed.Add(1)
			log.Debug("authentication failed", "user", user, "reason", why)
		}}
	tc.Realm = cfg.Realm
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
		OnAllocationCreated: func(src, dst net.Addr, proto, user, _ string, relay net.Addr, _ int) {
			s.mu.Lock()
			s.total++
			s.perUser[user]++
			s.mu.Unlock()
			s.created.Add(1)
			if overUDP(src) {
				s.allocated.add(src, dst, 1)
			}
			s.hold(src, dst)
			log.Info("allocation created", "client", src.String(), "protocol", proto, "user", user, "relay", relay.String())
		},
		OnAllocationDeleted: func(src, dst net.Addr, proto, user, _ string) {
			if overUDP(src) {
				s.allocated.add(src, dst, -1)
			}
			s.unhold(src, dst)
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

// configAddrs returns the concrete addresses of cfg's listeners and relays.
func configAddrs(cfg Config) []netip.Addr {
	var ips []netip.Addr
	for _, ap := range append(append(append([]netip.AddrPort(nil), cfg.UDP...), cfg.TCP...), cfg.TLS...) {
		ips = append(ips, ap.Addr())
	}
	for _, r := range cfg.Relays {
		ips = append(ips, r.Public, r.Local)
	}
	return ips
}

// ownAddrs are the server's own addresses, which the peer policy denies:
// the addresses of its configuration and those of the host's interfaces,
// enumerated again at most every ownAddrsInterval so that addresses the
// host gains later are denied too.
type ownAddrs struct {
	nw     transport.Net
	static []netip.Addr

	mu    sync.Mutex
	addrs []netip.Addr // static and the interfaces'; never modified, replaced
	at    time.Time
}

// get returns the addresses, unmapped and without zones.
func (o *ownAddrs) get() []netip.Addr {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.addrs != nil && time.Since(o.at) < ownAddrsInterval {
		return o.addrs
	}
	addrs := make([]netip.Addr, 0, len(o.static)+8)
	add := func(ip netip.Addr) {
		if ip = ip.Unmap().WithZone(""); ip.IsValid() && !ip.IsUnspecified() && !slices.Contains(addrs, ip) {
			addrs = append(addrs, ip)
		}
	}
	for _, ip := range o.static {
		add(ip)
	}
	ifaces, err := o.nw.Interfaces()
	if err != nil && o.addrs != nil {
		// Keep the last good list (it holds the static addresses) rather
		// than forget the interfaces' addresses.
		o.at = time.Now()
		return o.addrs
	}
	for _, ifc := range ifaces {
		as, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range as {
			switch a := a.(type) {
			case *net.IPNet:
				ip, _ := netip.AddrFromSlice(a.IP)
				add(ip)
			case *net.IPAddr:
				ip, _ := netip.AddrFromSlice(a.IP)
				add(ip)
			}
		}
	}
	o.addrs, o.at = addrs, time.Now()
	return addrs
}

// hold suspends the max age of the TCP or TLS connection from src to dst,
// which carries an allocation now; for an allocation over UDP it does
// nothing. pion reports every allocation's protocol as UDP, so the
// client's address type tells: a UDP allocation from the same address and
// port as a TCP connection must not hold that connection.
func (s *Server) hold(src, dst net.Addr) {
	if overUDP(src) {
		return
	}
	for _, l := range s.listeners {
		if l.Hold(src, dst) {
			return
		}
	}
}

// unhold undoes hold when the allocation is deleted.
func (s *Server) unhold(src, dst net.Addr) {
	if overUDP(src) {
		return
	}
	for _, l := range s.listeners {
		l.Unhold(src, dst)
	}
}

// overUDP reports whether a client address came from a packet listener.
func overUDP(a net.Addr) bool {
	return a != nil && strings.HasPrefix(a.Network(), "udp")
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
		BudgetDrops:  s.budgetDrops.Load(),
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
func (s *Server) close() (err error) {
	s.closeOnce.Do(func() {
		err = s.srv.Close() // closes the sockets and listeners; allocations follow
		for _, l := range s.listeners {
			l.CloseConns()
		}
	})
	if err != nil {
		return fmt.Errorf("turnserver: close: %w", err)
	}
	return nil
}

func network(proto string, ip netip.Addr) string {
	if ip.Unmap().Is4() {
		return proto + "4"
	}
	return proto + "6"
}

// familyGen makes relays of the family pion asks for (its network ends in
// 4 or 6); a family without a generator fails the allocation, which
// pion/turn answers with 508 Insufficient Capacity (not RFC 6156's 440).
type familyGen struct {
	v4, v6 *turn.RelayAddressGeneratorPortRange
}

func (g *familyGen) set(ip netip.Addr, r *turn.RelayAddressGeneratorPortRange) {
	if ip.Unmap().Is4() {
		g.v4 = r
	} else {
		g.v6 = r
	}
}

func (g familyGen) pick(network string) (*turn.RelayAddressGeneratorPortRange, error) {
	r := g.v4
	if strings.HasSuffix(network, "6") {
		r = g.v6
	}
	if r == nil {
		return nil, fmt.Errorf("turnserver: no relay address of the family of %s", network)
	}
	return r, nil
}

func (g familyGen) Validate() error {
	for _, r := range []*turn.RelayAddressGeneratorPortRange{g.v4, g.v6} {
		if r != nil {
			if err := r.Validate(); err != nil {
				return err
			}
		}
	}
	return nil
}

func (g familyGen) AllocatePacketConn(c turn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	r, err := g.pick(c.Network)
	if err != nil {
		return nil, nil, err
	}
	return r.AllocatePacketConn(c)
}

func (g familyGen) AllocateListener(c turn.AllocateListenerConfig) (net.Listener, net.Addr, error) {
	r, err := g.pick(c.Network)
	if err != nil {
		return nil, nil, err
	}
	return r.AllocateListener(c)
}

func (g familyGen) AllocateConn(c turn.AllocateConnConfig) (net.Conn, error) {
	r, err := g.pick(c.Network)
	if err != nil {
		return nil, err
	}
	return r.AllocateConn(c)
}
