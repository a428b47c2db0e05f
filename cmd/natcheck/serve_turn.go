package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/pion/transport/v5"

	"github.com/natcheck/natcheck/turnserver"
)

// serveTURNOptions are the TURN flags of natcheck serve.
type serveTURNOptions struct {
	udp, tcp, tls  []netip.AddrPort
	usersFile      string
	secretFile     string
	realm          string
	relays         []turnserver.Relay
	relayPorts     string
	minPort        uint16
	maxPort        uint16
	maxAllocations int
	userQuota      int
	allowPeers     []netip.Prefix
	denyPeers      []netip.Prefix
}

// serveRelayList is --relay-ip: the address given to clients and the local
// address relay sockets bind to (the same unless behind a 1:1 NAT).
type serveRelayList struct{ list *[]turnserver.Relay }

func (l serveRelayList) String() string { return "" }

func (l serveRelayList) Set(s string) error {
	pub, loc, hasLocal := strings.Cut(s, "/")
	p, err := netip.ParseAddr(pub)
	if err != nil || p.Zone() != "" || p.IsUnspecified() {
		return fmt.Errorf("%q is not IP or PUBLIC-IP/LOCAL-IP", s)
	}
	r := turnserver.Relay{Public: p.Unmap(), Local: p.Unmap()}
	if hasLocal {
		l, err := netip.ParseAddr(loc)
		if err != nil || l.Zone() != "" || l.Unmap().Is4() != r.Public.Is4() {
			return fmt.Errorf("%q: LOCAL-IP must be an address of the same family as PUBLIC-IP", s)
		}
		r.Local = l.Unmap()
	}
	*l.list = append(*l.list, r)
	return nil
}

type servePrefixList struct{ list *[]netip.Prefix }

func (l servePrefixList) String() string { return "" }

func (l servePrefixList) Set(s string) error {
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		p, err := netip.ParsePrefix(f)
		if err != nil {
			a, err2 := netip.ParseAddr(f)
			if err2 != nil {
				return fmt.Errorf("%q is not CIDR or IP", f)
			}
			p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		*l.list = append(*l.list, p.Masked())
	}
	return nil
}

func addServeTURNFlags(fs *flag.FlagSet, t *serveTURNOptions) {
	fs.Var(serveAddrPortList{&t.udp, serveSTUNPort}, "turn-udp", "serve TURN over UDP on `IP[:PORT]` (repeatable; not a STUN address)")
	fs.Var(serveAddrPortList{&t.tcp, serveSTUNPort}, "turn-tcp", "serve TURN over TCP on `IP[:PORT]` (repeatable)")
	fs.Var(serveAddrPortList{&t.tls, 5349}, "turn-tls", "serve TURN over TLS on `IP[:PORT]` (repeatable; port 5349 if omitted; needs --tls-cert and --tls-key)")
	fs.StringVar(&t.usersFile, "turn-users", "", "enable TURN with the static users in `FILE`: lines USER:PASSWORD or USER:0xKEY (coturn's MD5 key); # comments")
	fs.StringVar(&t.secretFile, "turn-secret-file", "", "enable TURN with REST-API credentials (coturn's use-auth-secret): the shared secret is the first line of `FILE`")
	fs.StringVar(&t.realm, "realm", turnserver.DefaultRealm, "TURN realm")
	fs.Var(serveRelayList{&t.relays}, "relay-ip", "relay address `IP` given to clients, or PUBLIC-IP/LOCAL-IP behind a 1:1 NAT (one per family; default: the TURN listener's address)")
	fs.StringVar(&t.relayPorts, "relay-ports", fmt.Sprintf("%d-%d", turnserver.DefaultRelayMinPort, turnserver.DefaultRelayMaxPort), "relay port range `MIN-MAX`")
	fs.IntVar(&t.maxAllocations, "turn-max-allocations", turnserver.DefaultMaxAllocations, "most TURN allocations at once (486 beyond)")
	fs.IntVar(&t.userQuota, "turn-user-quota", turnserver.DefaultUserQuota, "most TURN allocations at once per user (486 beyond)")
	fs.Var(servePrefixList{&t.allowPeers}, "allow-peer", "let clients relay to `CIDR` even if denied by default (repeatable, comma-separated)")
	fs.Var(servePrefixList{&t.denyPeers}, "deny-peer", "never relay to `CIDR` (repeatable, comma-separated); the server's own addresses, every IANA special-purpose range (loopback, private, link-local, shared, reserved, documentation, 6to4, Teredo...), multicast, IPv6 outside 2000::/3 and NAT64 forms of denied IPv4 addresses are denied by default")
}

// defaultServeMaxConnAge is --max-conn-age's default.
const defaultServeMaxConnAge = 5 * time.Minute

// servePositiveDuration is a duration flag that must be positive.
type servePositiveDuration struct {
	d       *time.Duration
	example string
}

func (p servePositiveDuration) String() string {
	if p.d == nil {
		return ""
	}
	return p.d.String()
}

func (p servePositiveDuration) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return fmt.Errorf("give a positive duration such as %s", p.example)
	}
	*p.d = d
	return nil
}

// addServeMaxConnAgeFlag adds --max-conn-age: the age at which STUN TCP and
// TLS connections, and TURN ones that carry no allocation, are closed
// however busy. A TURN connection with an allocation lives as long as the
// allocation, which would end with it.
func addServeMaxConnAgeFlag(fs *flag.FlagSet, d *time.Duration) {
	*d = defaultServeMaxConnAge
	fs.Var(servePositiveDuration{d, "5m"}, "max-conn-age", "close a STUN TCP or TLS connection `DURATION` after it opened, however busy; a TURN one too while it carries no allocation")
}

func (t *serveTURNOptions) enabled() bool { return t.usersFile != "" || t.secretFile != "" }

func (t *serveTURNOptions) check() error {
	listeners := len(t.udp) + len(t.tcp) + len(t.tls)
	switch {
	case !t.enabled() && listeners > 0:
		return errors.New("--turn-udp, --turn-tcp and --turn-tls need credentials: --turn-users FILE or --turn-secret-file FILE")
	case !t.enabled():
		return nil
	case listeners == 0:
		return errors.New("TURN credentials given but no listener: add --turn-udp, --turn-tcp or --turn-tls IP[:PORT]")
	case t.realm == "":
		return errors.New("--realm must not be empty")
	case t.maxAllocations < 1 || t.userQuota < 1:
		return errors.New("--turn-max-allocations and --turn-user-quota must be at least 1")
	}
	var err error
	if t.minPort, t.maxPort, err = serveParsePortRange(t.relayPorts); err != nil {
		return fmt.Errorf("--relay-ports: %w", err)
	}
	seen := map[bool]bool{}
	for _, r := range t.relays {
		if seen[r.Public.Is4()] {
			return fmt.Errorf("--relay-ip %v: one per address family", r.Public)
		}
		seen[r.Public.Is4()] = true
	}
	for _, ap := range append(append(append([]netip.AddrPort(nil), t.udp...), t.tcp...), t.tls...) {
		if ip := ap.Addr(); ip.IsUnspecified() && !seen[ip.Is4()] {
			return fmt.Errorf("TURN listener on %v: give --relay-ip for %s relays", ip, serveFamily(ip))
		}
	}
	return nil
}

// serveTURNConfig reads the credential files and returns the TURN server's
// configuration, or nil when TURN is off. Errors name the file and line,
// never its contents.
func serveTURNConfig(o serveOptions, log *slog.Logger) (*turnserver.Config, error) {
	t := o.turn
	if !t.enabled() {
		return nil, nil
	}
	cfg := &turnserver.Config{
		UDP: t.udp, TCP: t.tcp, TLS: t.tls,
		Realm:          t.realm,
		Relays:         t.relays,
		RelayMinPort:   t.minPort,
		RelayMaxPort:   t.maxPort,
		MaxAllocations: t.maxAllocations,
		UserQuota:      t.userQuota,
		AllowPeers:     t.allowPeers,
		DenyPeers:      t.denyPeers,
		// One limit per TCP or TLS listener, as for a STUN server.
		MaxConns:          o.maxConns,
		MaxConnsPerSource: o.maxConnsPerSource,
		FirstTimeout:      o.idleTimeout,
		MaxConnAge:        o.maxConnAge,
	}
	var err error
	if t.usersFile != "" {
		if cfg.Users, err = turnserver.ReadUsersFile(t.usersFile, t.realm, log); err != nil {
			return nil, fmt.Errorf("--turn-users: %w", err)
		}
	}
	if t.secretFile != "" {
		if cfg.Secret, err = turnserver.ReadSecretFile(t.secretFile, log); err != nil {
			return nil, fmt.Errorf("--turn-secret-file: %w", err)
		}
	}
	return cfg, nil
}

// startServeTURN starts the TURN server of cfg and logs its listeners.
func startServeTURN(ctx context.Context, cfg turnserver.Config, o serveTURNOptions, tlsCfg *tls.Config, nw transport.Net, log *slog.Logger) (*turnserver.Server, error) {
	log = log.With("component", "turn")
	cfg.Net, cfg.Logger = nw, log
	if len(cfg.TLS) > 0 {
		cfg.TLSConfig = tlsCfg
	}
	s, err := turnserver.Start(ctx, cfg)
	if err != nil {
		return nil, err
	}
	auth := "static users"
	switch {
	case cfg.Secret != "" && len(cfg.Users) > 0:
		auth = "static users and REST shared secret"
	case cfg.Secret != "":
		auth = "REST shared secret"
	}
	var relays []string
	for _, r := range o.relays {
		relays = append(relays, r.Public.String())
	}
	log.Info("turn listening", "udp", s.UDPAddrs(), "tcp", s.TCPAddrs(), "tls", s.TLSAddrs(), "realm", cfg.Realm,
		"auth", auth, "users", len(cfg.Users), "relay_ips", relays,
		"relay_ports", o.relayPorts, "max_allocations", o.maxAllocations, "user_quota", o.userQuota)
	return s, nil
}

// serveLogTURNStats logs the TURN counters if they changed since last (or
// always with force) and returns them.
func serveLogTURNStats(log *slog.Logger, t *turnserver.Server, last turnserver.Stats, force bool) turnserver.Stats {
	st := t.Stats()
	if force || st != last {
		log.Info("turn stats", "allocations", st.Allocations, "created", st.Created, "quota_refused", st.QuotaRefused,
			"auth_failed", st.AuthFailed, "peers_denied", st.PeersDenied, "budget_drops", st.BudgetDrops)
	}
	return st
}
