package main

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/logging"
	"github.com/pion/transport/v4"
	"github.com/pion/turn/v5"

	"github.com/natcheck/natcheck/internal/connlimit"
)

// TURN defaults.
const (
	serveDefaultRealm          = "natcheck"
	serveDefaultRelayPorts     = "49152-65535"
	serveDefaultMaxAllocations = 1000
	serveDefaultUserQuota      = 10
	// serveTURNIdleTimeout closes a TURN TCP or TLS connection that has been
	// silent for longer than an allocation lives (RFC 8656 section 3.2,
	// 10 minutes by default) plus a margin.
	serveTURNIdleTimeout = 11 * time.Minute
	// serveMaxCredentialFile bounds the size of a users or secret file.
	serveMaxCredentialFile = 4 << 20
)

// serveTURNOptions are the TURN flags of natcheck serve.
type serveTURNOptions struct {
	udp, tcp, tls  []netip.AddrPort
	usersFile      string
	secretFile     string
	realm          string
	relays         []serveRelay
	relayPorts     string
	minPort        uint16
	maxPort        uint16
	maxAllocations int
	userQuota      int
	allowPeers     []netip.Prefix
	denyPeers      []netip.Prefix
}

// serveRelay is one --relay-ip: the address given to clients and the local
// address relay sockets bind to (the same unless behind a 1:1 NAT).
type serveRelay struct {
	public, local netip.Addr
}

type serveRelayList struct{ list *[]serveRelay }

func (l serveRelayList) String() string { return "" }

func (l serveRelayList) Set(s string) error {
	pub, loc, hasLocal := strings.Cut(s, "/")
	p, err := netip.ParseAddr(pub)
	if err != nil || p.Zone() != "" || p.IsUnspecified() {
		return fmt.Errorf("%q is not IP or PUBLIC-IP/LOCAL-IP", s)
	}
	r := serveRelay{public: p.Unmap(), local: p.Unmap()}
	if hasLocal {
		l, err := netip.ParseAddr(loc)
		if err != nil || l.Zone() != "" || l.Unmap().Is4() != r.public.Is4() {
			return fmt.Errorf("%q: LOCAL-IP must be an address of the same family as PUBLIC-IP", s)
		}
		r.local = l.Unmap()
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
	fs.StringVar(&t.realm, "realm", serveDefaultRealm, "TURN realm")
	fs.Var(serveRelayList{&t.relays}, "relay-ip", "relay address `IP` given to clients, or PUBLIC-IP/LOCAL-IP behind a 1:1 NAT (one per family; default: the TURN listener's address)")
	fs.StringVar(&t.relayPorts, "relay-ports", serveDefaultRelayPorts, "relay port range `MIN-MAX`")
	fs.IntVar(&t.maxAllocations, "turn-max-allocations", serveDefaultMaxAllocations, "most TURN allocations at once (486 beyond)")
	fs.IntVar(&t.userQuota, "turn-user-quota", serveDefaultUserQuota, "most TURN allocations at once per user (486 beyond)")
	fs.Var(servePrefixList{&t.allowPeers}, "allow-peer", "let clients relay to `CIDR` even if denied by default (repeatable, comma-separated)")
	fs.Var(servePrefixList{&t.denyPeers}, "deny-peer", "never relay to `CIDR` (repeatable, comma-separated); loopback, private, link-local, shared (100.64/10), multicast and unspecified addresses are denied by default")
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
		if seen[r.public.Is4()] {
			return fmt.Errorf("--relay-ip %v: one per address family", r.public)
		}
		seen[r.public.Is4()] = true
	}
	for _, ap := range append(append(append([]netip.AddrPort(nil), t.udp...), t.tcp...), t.tls...) {
		if _, err := t.relayFor(ap.Addr()); err != nil {
			return err
		}
	}
	return nil
}

// relayFor returns the relay addresses for a TURN listener on ip.
func (t *serveTURNOptions) relayFor(ip netip.Addr) (serveRelay, error) {
	for _, r := range t.relays {
		if r.public.Is4() == ip.Is4() {
			return r, nil
		}
	}
	if ip.IsUnspecified() {
		return serveRelay{}, fmt.Errorf("TURN listener on %v: give --relay-ip for %s relays", ip, serveFamily(ip))
	}
	return serveRelay{public: ip, local: ip}, nil
}

// serveTURNCreds are the TURN credentials: long-term keys of static users
// (RFC 8489 section 9.2.2: MD5(user:realm:password)) and the REST-API
// shared secret.
type serveTURNCreds struct {
	realm  string
	keys   map[string][]byte
	secret []byte
	now    func() time.Time
	// refused, if set, is told of each credential the handler rejects
	// (pion reports wrong passwords through OnAuth, these never).
	refused func(user, why string)
}

// loadServeTURNCreds reads the users and secret files; it returns nil
// when TURN is off. Errors name the file and line, never its contents.
func loadServeTURNCreds(t serveTURNOptions, log *slog.Logger) (*serveTURNCreds, error) {
	if !t.enabled() {
		return nil, nil
	}
	c := &serveTURNCreds{realm: t.realm, keys: map[string][]byte{}, now: time.Now}
	if t.usersFile != "" {
		data, err := serveReadCredentialFile(t.usersFile, log)
		if err != nil {
			return nil, fmt.Errorf("--turn-users: %w", err)
		}
		sc := bufio.NewScanner(strings.NewReader(data))
		sc.Buffer(nil, serveMaxCredentialFile)
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			user, pass, ok := strings.Cut(line, ":")
			if !ok || user == "" || pass == "" {
				return nil, fmt.Errorf("--turn-users %s line %d: want USER:PASSWORD", t.usersFile, n)
			}
			if _, dup := c.keys[user]; dup {
				return nil, fmt.Errorf("--turn-users %s line %d: user %q listed twice", t.usersFile, n, user)
			}
			if k, ok := strings.CutPrefix(pass, "0x"); ok && len(k) == 32 {
				key, err := hex.DecodeString(k)
				if err != nil {
					return nil, fmt.Errorf("--turn-users %s line %d: bad 0x key", t.usersFile, n)
				}
				c.keys[user] = key
				continue
			}
			c.keys[user] = turn.GenerateAuthKey(user, t.realm, pass)
		}
		if len(c.keys) == 0 {
			return nil, fmt.Errorf("--turn-users %s: no users", t.usersFile)
		}
	}
	if t.secretFile != "" {
		data, err := serveReadCredentialFile(t.secretFile, log)
		if err != nil {
			return nil, fmt.Errorf("--turn-secret-file: %w", err)
		}
		for _, line := range strings.Split(data, "\n") {
			if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
				c.secret = []byte(line)
				break
			}
		}
		if len(c.secret) == 0 {
			return nil, fmt.Errorf("--turn-secret-file %s: no secret in it", t.secretFile)
		}
	}
	return c, nil
}

// serveReadCredentialFile reads a small file and warns when others can read it.
func serveReadCredentialFile(name string, log *slog.Logger) (string, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	if fi.Size() > serveMaxCredentialFile {
		return "", fmt.Errorf("%s is larger than %d bytes", name, serveMaxCredentialFile)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		log.Warn("credential file is readable by group or others; chmod 600 it", "file", name, "mode", fi.Mode().Perm().String())
	}
	b, err := io.ReadAll(io.LimitReader(f, serveMaxCredentialFile))
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// auth is the TURN AuthHandler: static users first, then REST-API
// credentials "EXPIRY:USER" with password base64(HMAC-SHA1(secret,
// username)). The user ID (for quotas) of a REST credential is USER.
func (c *serveTURNCreds) auth(ra *turn.RequestAttributes) (string, []byte, bool) {
	refuse := func(why string) (string, []byte, bool) {
		if c.refused != nil {
			c.refused(ra.Username, why)
		}
		return "", nil, false
	}
	if ra.Realm != c.realm {
		return refuse("wrong realm")
	}
	if key, ok := c.keys[ra.Username]; ok {
		return ra.Username, key, true
	}
	if c.secret == nil {
		return refuse("unknown user")
	}
	expiry, user, _ := strings.Cut(ra.Username, ":")
	t, err := strconv.ParseInt(expiry, 10, 64)
	switch {
	case err != nil:
		return refuse("unknown user")
	case t < c.now().Unix():
		return refuse("expired REST credential")
	}
	mac := hmac.New(sha1.New, c.secret)
	mac.Write([]byte(ra.Username))
	password := base64.StdEncoding.EncodeToString(mac.Sum(nil))
	if user == "" {
		user = ra.Username
	}
	return user, turn.GenerateAuthKey(ra.Username, ra.Realm, password), true
}

// servePeerAllowed is the TURN permission policy: --allow-peer wins, then
// --deny-peer and the default denials, which keep the relay from reaching
// the server's own host and private networks.
func servePeerAllowed(t *serveTURNOptions, ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range t.allowPeers {
		if p.Contains(ip) {
			return true
		}
	}
	for _, p := range t.denyPeers {
		if p.Contains(ip) {
			return false
		}
	}
	return !(ip.IsLoopback() || ip.IsPrivate() || ip.IsUnspecified() || ip.IsMulticast() ||
		ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() ||
		serveSharedAddressSpace.Contains(ip) || !ip.IsValid())
}

// serveSharedAddressSpace is 100.64.0.0/10 (RFC 6598, carrier-grade NAT).
var serveSharedAddressSpace = netip.MustParsePrefix("100.64.0.0/10")

// serveTURNServer is a running pion/turn server with its accounting.
type serveTURNServer struct {
	srv       *turn.Server
	listeners []*connlimit.Listener
	opts      serveTURNOptions

	mu      sync.Mutex
	total   int
	perUser map[string]int

	created, refused, authFailed, peerDenied atomic.Uint64
	lastLog                                  atomic.Int64 // unix nanoseconds of the last refusal log line
	lastStats                                [5]uint64    // only used by the stats loop
}

func startServeTURN(o serveOptions, creds *serveTURNCreds, tlsCfg *tls.Config, nw transport.Net, log *slog.Logger) (*serveTURNServer, error) {
	t := &serveTURNServer{opts: o.turn, perUser: map[string]int{}}
	log = log.With("component", "turn")
	var cfg turn.ServerConfig
	cleanup := func() {
		for _, pc := range cfg.PacketConnConfigs {
			_ = pc.PacketConn.Close()
		}
		for _, l := range cfg.ListenerConfigs {
			_ = l.Listener.Close()
		}
	}
	gen := func(ip netip.Addr) *turn.RelayAddressGeneratorPortRange {
		r, _ := o.turn.relayFor(ip) // checked by parseServeArgs
		return &turn.RelayAddressGeneratorPortRange{
			RelayAddress: r.public.AsSlice(),
			Address:      r.local.String(),
			MinPort:      o.turn.minPort,
			MaxPort:      o.turn.maxPort,
			MaxRetries:   50,
			Net:          nw,
		}
	}
	perm := func(client net.Addr, peer net.IP) bool {
		ip, _ := netip.AddrFromSlice(peer)
		if servePeerAllowed(&t.opts, ip) {
			return true
		}
		t.peerDenied.Add(1)
		log.Debug("peer denied", "client", client.String(), "peer", ip)
		return false
	}
	var bound struct{ udp, tcp, tls []string }
	for _, ap := range o.turn.udp {
		pc, err := nw.ListenPacket(serveNetwork("udp", ap.Addr()), ap.String())
		if err != nil {
			cleanup()
			return nil, fmt.Errorf("listen on udp %v: %w", ap, err)
		}
		cfg.PacketConnConfigs = append(cfg.PacketConnConfigs, turn.PacketConnConfig{
			PacketConn: pc, RelayAddressGenerator: gen(ap.Addr()), PermissionHandler: perm,
		})
		bound.udp = append(bound.udp, pc.LocalAddr().String())
	}
	for i, ap := range append(append([]netip.AddrPort(nil), o.turn.tcp...), o.turn.tls...) {
		ln, err := nw.ListenTCP(serveNetwork("tcp", ap.Addr()), net.TCPAddrFromAddrPort(ap))
		if err != nil {
			cleanup()
			return nil, fmt.Errorf("listen on tcp %v: %w", ap, err)
		}
		ll := connlimit.NewListener(ln, connlimit.ListenerConfig{
			MaxConns: o.maxConns, MaxConnsPerSource: o.maxConnsPerSource,
			FirstTimeout: o.idleTimeout, IdleTimeout: serveTURNIdleTimeout,
			Refused: func(r connlimit.Refusal) {
				if r.Log {
					log.Warn("turn connection refused: limit reached", "source", r.Source, "open", r.Open)
				}
			},
		})
		t.listeners = append(t.listeners, ll)
		var l net.Listener = ll
		if i >= len(o.turn.tcp) {
			l = tls.NewListener(ll, tlsCfg)
			bound.tls = append(bound.tls, ln.Addr().String())
		} else {
			bound.tcp = append(bound.tcp, ln.Addr().String())
		}
		cfg.ListenerConfigs = append(cfg.ListenerConfigs, turn.ListenerConfig{
			Listener: l, RelayAddressGenerator: gen(ap.Addr()), PermissionHandler: perm,
		})
	}
	cfg.Realm = creds.realm
	cfg.LoggerFactory = servePionLogFactory{log}
	creds.refused = func(user, why string) {
		t.authFailed.Add(1)
		log.Debug("authentication failed", "user", user, "reason", why)
	}
	cfg.AuthHandler = creds.auth
	cfg.QuotaHandler = t.quota(log)
	cfg.EventHandler = turn.EventHandler{
		OnAuth: func(src, _ net.Addr, proto, user, _ string, method string, ok bool) {
			if !ok {
				t.authFailed.Add(1)
				log.Debug("authentication failed", "client", src.String(), "protocol", proto, "user", user, "method", method)
			}
		},
		OnAllocationCreated: func(src, _ net.Addr, proto, user, _ string, relay net.Addr, _ int) {
			t.mu.Lock()
			t.total++
			t.perUser[user]++
			t.mu.Unlock()
			t.created.Add(1)
			log.Info("allocation created", "client", src.String(), "protocol", proto, "user", user, "relay", relay.String())
		},
		OnAllocationDeleted: func(src, _ net.Addr, proto, user, _ string) {
			t.mu.Lock()
			t.total--
			if t.perUser[user] <= 1 {
				delete(t.perUser, user)
			} else {
				t.perUser[user]--
			}
			t.mu.Unlock()
			log.Debug("allocation deleted", "client", src.String(), "protocol", proto, "user", user)
		},
	}
	srv, err := turn.NewServer(cfg)
	if err != nil {
		cleanup()
		return nil, err
	}
	t.srv = srv
	auth := "static users"
	switch {
	case creds.secret != nil && len(creds.keys) > 0:
		auth = "static users and REST shared secret"
	case creds.secret != nil:
		auth = "REST shared secret"
	}
	var relays []string
	for _, r := range o.turn.relays {
		relays = append(relays, r.public.String())
	}
	log.Info("turn listening", "udp", bound.udp, "tcp", bound.tcp, "tls", bound.tls, "realm", creds.realm,
		"auth", auth, "users", len(creds.keys), "relay_ips", relays,
		"relay_ports", o.turn.relayPorts, "max_allocations", o.turn.maxAllocations, "user_quota", o.turn.userQuota)
	return t, nil
}

// quota enforces --turn-max-allocations and --turn-user-quota (RFC 8656
// section 7.2 step 7: 486 Allocation Quota Reached). Allocations being
// created concurrently can overshoot by the number of them.
func (t *serveTURNServer) quota(log *slog.Logger) turn.QuotaHandler {
	return func(user, _ string, src net.Addr) bool {
		t.mu.Lock()
		total, mine := t.total, t.perUser[user]
		t.mu.Unlock()
		if total < t.opts.maxAllocations && mine < t.opts.userQuota {
			return true
		}
		t.refused.Add(1)
		now := time.Now().UnixNano()
		if last := t.lastLog.Load(); now-last >= int64(time.Second) && t.lastLog.CompareAndSwap(last, now) {
			log.Warn("allocation refused: quota reached", "client", src.String(), "user", user,
				"allocations", total, "user_allocations", mine)
		}
		return false
	}
}

// logStats logs the TURN counters if they changed since the last call, or
// always with force.
func (t *serveTURNServer) logStats(log *slog.Logger, force bool) {
	t.mu.Lock()
	active := t.total
	t.mu.Unlock()
	now := [5]uint64{t.created.Load(), t.refused.Load(), t.authFailed.Load(), t.peerDenied.Load(), uint64(active)}
	if !force && now == t.lastStats {
		return
	}
	log.Info("turn stats", "allocations", active, "created", now[0], "quota_refused", now[1],
		"auth_failed", now[2], "peers_denied", now[3])
	t.lastStats = now
}

func (t *serveTURNServer) close() {
	_ = t.srv.Close() // closes the sockets and listeners; allocations follow
	for _, l := range t.listeners {
		l.CloseConns()
	}
}

func serveNetwork(proto string, ip netip.Addr) string {
	if ip.Unmap().Is4() {
		return proto + "4"
	}
	return proto + "6"
}

// servePionLogFactory sends pion's log lines to slog; pion's trace level is
// below slog's debug. pion's warnings and errors are mostly about one
// client (a failed TLS handshake, a connection closed early), so any client
// could flood the log with them: they are logged as warnings, at most one a
// second per scope, with a count of those suppressed.
type servePionLogFactory struct{ log *slog.Logger }

func (f servePionLogFactory) NewLogger(scope string) logging.LeveledLogger {
	return servePionLogger{log: f.log.With("scope", scope), limit: &serveLogLimit{}}
}

type servePionLogger struct {
	log   *slog.Logger
	limit *serveLogLimit
}

// serveLogLimit lets one warning through per second.
type serveLogLimit struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// allow reports whether to log now, and how many were suppressed since.
func (l *serveLogLimit) allow(now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.last) < time.Second {
		l.suppressed++
		return false, 0
	}
	n := l.suppressed
	l.last, l.suppressed = now, 0
	return true, n
}

const serveLevelTrace = slog.LevelDebug - 4

func (l servePionLogger) logf(level slog.Level, format string, args ...any) {
	if level > slog.LevelWarn {
		level = slog.LevelWarn
	}
	if !l.log.Enabled(context.Background(), level) {
		return
	}
	var attrs []any
	if level >= slog.LevelWarn && l.limit != nil {
		ok, n := l.limit.allow(time.Now())
		if !ok {
			return
		}
		if n > 0 {
			attrs = append(attrs, "suppressed", n)
		}
	}
	l.log.Log(context.Background(), level, fmt.Sprintf(format, args...), attrs...)
}

func (l servePionLogger) Trace(msg string)                  { l.logf(serveLevelTrace, "%s", msg) }
func (l servePionLogger) Tracef(format string, args ...any) { l.logf(serveLevelTrace, format, args...) }
func (l servePionLogger) Debug(msg string)                  { l.logf(slog.LevelDebug, "%s", msg) }
func (l servePionLogger) Debugf(format string, args ...any) { l.logf(slog.LevelDebug, format, args...) }
func (l servePionLogger) Info(msg string)                   { l.logf(slog.LevelInfo, "%s", msg) }
func (l servePionLogger) Infof(format string, args ...any)  { l.logf(slog.LevelInfo, format, args...) }
func (l servePionLogger) Warn(msg string)                   { l.logf(slog.LevelWarn, "%s", msg) }
func (l servePionLogger) Warnf(format string, args ...any)  { l.logf(slog.LevelWarn, format, args...) }
func (l servePionLogger) Error(msg string)                  { l.logf(slog.LevelError, "%s", msg) }
func (l servePionLogger) Errorf(format string, args ...any) { l.logf(slog.LevelError, format, args...) }
