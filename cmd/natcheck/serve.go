package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/pion/transport/v5/stdnet"

	"github.com/natcheck/natcheck/internal/safefile"
	"github.com/natcheck/natcheck/internal/udpbudget"
	"github.com/natcheck/natcheck/rendezvous"
	"github.com/natcheck/natcheck/stunserver"
	"github.com/natcheck/natcheck/turnserver"
)

func init() { subcommands["serve"] = runServe }

// Exit codes of natcheck serve.
const (
	exitServeStart = 1 // a listener or the TURN server could not start
)

// Default ports: STUN's, RFC 8489 section 18.6, and the next one for the
// alternate port.
const (
	serveSTUNPort      = 3478
	serveAlternatePort = 3479
)

const serveUsageText = `Usage: natcheck serve --primary IP[:PORT] [--alternate IP[:PORT]] [flags]

natcheck serve is an RFC 5780 STUN server: it answers Binding requests on the
four combinations of two addresses and two ports (P:p, P:a, A:p, A:a) over UDP
and TCP, and honours CHANGE-REQUEST and RESPONSE-PORT over UDP. Against
amplification (RFC 5780 section 9) it sends no UDP source more bytes than
it received from it beyond a small budget (--source-budget), and all sources
together no more than --global-budget bytes a second beyond what they sent;
--trust exempts sources you vouch for (none by default, not even loopback).
With --primary alone it serves without OTHER-ADDRESS: NAT behaviour discovery
needs two addresses. Give one --primary (and --alternate) per address family.
TURN (RFC 8656, pion/turn) is optional: it starts when a users file or a
shared secret file is given, on the --turn-udp/--turn-tcp/--turn-tls
listeners. With --http it also serves the natcheck pair rendezvous: a
WebSocket endpoint /pair (wss:// with --tls-cert and --tls-key) where two
natcheck pair runs meet in a room and pass signaling messages, never media.
Logs go to stderr; SIGINT or SIGTERM shuts down gracefully.

Flags:
`

const serveExitText = `
Exit codes:
  0  shut down by SIGINT or SIGTERM
  1  a listener could not be bound or TURN or the rendezvous could not start
  2  usage or configuration error

Examples:
  natcheck serve --primary 203.0.113.10 --alternate 203.0.113.11
  natcheck serve --primary 127.0.0.1:3478 --alternate 127.0.0.2:3479
  natcheck serve --primary 203.0.113.10 --alternate 203.0.113.11 \
      --primary 2001:db8::10 --alternate 2001:db8::11 \
      --turn-users /etc/natcheck/turn-users --turn-udp 203.0.113.10:3480 \
      --turn-tcp 203.0.113.10:3480 --turn-tls 203.0.113.10:5349 \
      --tls-cert cert.pem --tls-key key.pem
  natcheck serve --primary 203.0.113.10 --alternate 203.0.113.11 \
      --http 203.0.113.10:443 --tls-cert cert.pem --tls-key key.pem \
      --pair-token-file /etc/natcheck/pair-token
`

// serveOptions are the parsed flags of natcheck serve.
type serveOptions struct {
	pairs             []serveSTUNPair
	tcp               bool
	stunTLS           []netip.AddrPort
	tlsCert, tlsKey   string
	software          string
	trust             []netip.Prefix
	sourceBudget      int
	globalBudget      int
	maxConns          int
	maxConnsPerSource int
	idleTimeout       time.Duration
	maxConnAge        time.Duration
	logLevel          slog.Level
	logJSON           bool
	statsInterval     time.Duration
	turn              serveTURNOptions
	pair              servePairOptions
}

// serveSTUNPair is one RFC 5780 server: a primary and an optional alternate
// address of one family.
type serveSTUNPair struct {
	primary, alternate netip.AddrPort
}

type serveAddrPortList struct {
	list    *[]netip.AddrPort
	defPort uint16
}

func (l serveAddrPortList) String() string {
	if l.list == nil {
		return ""
	}
	var s []string
	for _, ap := range *l.list {
		s = append(s, ap.String())
	}
	return strings.Join(s, ",")
}

func (l serveAddrPortList) Set(s string) error {
	ap, err := serveParseAddrPort(s, l.defPort)
	if err != nil {
		return err
	}
	*l.list = append(*l.list, ap)
	return nil
}

// serveTrustList is the repeatable --trust flag.
type serveTrustList struct{ list *[]netip.Prefix }

func (l serveTrustList) String() string {
	if l.list == nil {
		return ""
	}
	var s []string
	for _, p := range *l.list {
		s = append(s, p.String())
	}
	return strings.Join(s, ",")
}

func (l serveTrustList) Set(s string) error {
	p, err := serveParseTrust(s)
	if err != nil {
		return err
	}
	*l.list = append(*l.list, p)
	return nil
}

// serveParseTrust accepts CIDR or a single IP (a /32 or /128). An
// IPv4-mapped IPv6 prefix is turned into its IPv4 prefix, since sources are
// compared unmapped. Host bits must be zero, so that a typo such as
// 10.1.2.3/8 does not trust far more than meant.
func serveParseTrust(s string) (netip.Prefix, error) {
	var p netip.Prefix
	if ip, err := netip.ParseAddr(s); err == nil && ip.Zone() == "" {
		p = netip.PrefixFrom(ip, ip.BitLen())
	} else if p, err = netip.ParsePrefix(s); err != nil {
		return p, fmt.Errorf("%q is not CIDR (such as 192.0.2.0/24 or 2001:db8::/48) or an IP address", s)
	}
	if p.Masked() != p {
		return p, fmt.Errorf("%q has host bits set: did you mean %v?", s, p.Masked())
	}
	if a := p.Addr(); a.Is4In6() {
		if p.Bits() < 96 {
			return p, fmt.Errorf("%q reaches beyond the IPv4-mapped range ::ffff:0:0/96; give IPv4 and IPv6 prefixes separately", s)
		}
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p, nil
}

// serveParseAddrPort accepts IP, IP:PORT, [IPv6] and [IPv6]:PORT; a missing port
// is defPort. IPv4-mapped IPv6 addresses are unmapped.
func serveParseAddrPort(s string, defPort uint16) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	host := strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	if ip, err := netip.ParseAddr(host); err == nil && ip.Zone() == "" {
		return netip.AddrPortFrom(ip.Unmap(), defPort), nil
	}
	return netip.AddrPort{}, fmt.Errorf("%q is not IP, IP:PORT or [IPv6]:PORT", s)
}

func parseServeArgs(args []string, stdout io.Writer) (serveOptions, error) {
	var o serveOptions
	var primaries, alternates []netip.AddrPort
	fs := flag.NewFlagSet("natcheck serve", flag.ContinueOnError)
	fs.Var(serveAddrPortList{&primaries, serveSTUNPort}, "primary", "primary address `IP[:PORT]` P:p (port 3478 if omitted; repeat once per address family)")
	fs.Var(serveAddrPortList{&alternates, serveAlternatePort}, "alternate", "alternate address `IP[:PORT]` A:a of the same family, another IP and port (port 3479 if omitted)")
	fs.BoolVar(&o.tcp, "tcp", true, "also answer over TCP on the same addresses and ports (--tcp=false: UDP only)")
	fs.Var(serveAddrPortList{&o.stunTLS, 5349}, "stun-tls", "also answer STUN over TLS on `IP[:PORT]` (port 5349 if omitted; repeatable; needs --tls-cert and --tls-key)")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "PEM certificate `FILE` (chain) for --stun-tls, --turn-tls and --http")
	fs.StringVar(&o.tlsKey, "tls-key", "", "PEM private key `FILE` for --stun-tls, --turn-tls and --http")
	fs.StringVar(&o.software, "software", "", "send this SOFTWARE attribute in responses (over UDP only to requests at least as large as the response)")
	fs.Var(serveTrustList{&o.trust}, "trust", "exempt sources in `CIDR` (or one IP) from the response budgets (repeatable; e.g. a load generator or monitoring network)")
	fs.IntVar(&o.sourceBudget, "source-budget", 4096, "`BYTES` a UDP source (IPv4 address or IPv6 /64) may get beyond what it sent; refilled in 8 s")
	fs.IntVar(&o.globalBudget, "global-budget", 256*1024, "`BYTES` per second all UDP sources together may get beyond what they sent")
	fs.IntVar(&o.maxConns, "max-conns", 1024, "most TCP and TLS connections open at once, per STUN server, for TURN and for --http")
	fs.IntVar(&o.maxConnsPerSource, "max-conns-per-source", 32, "most TCP and TLS connections open at once from one IP address")
	fs.DurationVar(&o.idleTimeout, "idle-timeout", 30*time.Second, "close a STUN TCP or TLS connection that sends no complete message for this long")
	addServeMaxConnAgeFlag(fs, &o.maxConnAge)
	level := fs.String("log-level", "info", "log `LEVEL`: debug, info, warn or error")
	format := fs.String("log-format", "text", "log `FORMAT` on stderr: text or json")
	fs.DurationVar(&o.statsInterval, "stats-interval", time.Minute, "log counters this often when they changed (0: never)")
	addServeTURNFlags(fs, &o.turn)
	addServePairFlags(fs, &o.pair)
	if err := parseFlags(fs, args, stdout, "natcheck serve", serveUsageText, serveExitText); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q (see natcheck serve --help)", fs.Arg(0))
	}
	var err error
	if o.pairs, err = servePairAddrs(primaries, alternates); err != nil {
		return o, err
	}
	if o.logLevel, o.logJSON, err = parseLogFlags(*level, *format); err != nil {
		return o, err
	}
	switch {
	case o.maxConns < 1 || o.maxConnsPerSource < 1:
		return o, errors.New("--max-conns and --max-conns-per-source must be at least 1")
	case o.idleTimeout <= 0:
		return o, fmt.Errorf("--idle-timeout %v: give a positive duration such as 30s", o.idleTimeout)
	case o.statsInterval < 0:
		return o, fmt.Errorf("--stats-interval %v: give a positive duration or 0", o.statsInterval)
	case o.sourceBudget < 1 || o.globalBudget < 1:
		return o, errors.New("--source-budget and --global-budget must be at least 1 byte (to exempt sources, use --trust CIDR)")
	case len(o.software) > 763:
		return o, errors.New("--software is longer than 763 bytes (RFC 8489 section 14.14)")
	case (o.tlsCert == "") != (o.tlsKey == ""):
		return o, errors.New("--tls-cert and --tls-key go together")
	case len(o.stunTLS) > 0 && o.tlsCert == "":
		return o, errors.New("--stun-tls needs --tls-cert and --tls-key")
	case len(o.turn.tls) > 0 && o.tlsCert == "":
		return o, errors.New("--turn-tls needs --tls-cert and --tls-key")
	}
	if err := o.turn.check(); err != nil {
		return o, err
	}
	if err := o.pair.check(fs); err != nil {
		return o, err
	}
	return o, nil
}

// servePairAddrs matches each --alternate with the --primary of its family.
func servePairAddrs(primaries, alternates []netip.AddrPort) ([]serveSTUNPair, error) {
	if len(primaries) == 0 {
		return nil, errors.New("--primary IP[:PORT] is required (see natcheck serve --help)")
	}
	var pairs []serveSTUNPair
	for _, p := range primaries {
		if p.Addr().IsUnspecified() {
			return nil, fmt.Errorf("--primary %v: give a concrete address of this host, not %v (RESPONSE-ORIGIN and OTHER-ADDRESS must be real)", p, p.Addr())
		}
		for _, q := range pairs {
			if q.primary.Addr().Is4() == p.Addr().Is4() {
				return nil, fmt.Errorf("--primary %v: one --primary per address family (already %v)", p, q.primary)
			}
		}
		pairs = append(pairs, serveSTUNPair{primary: p})
	}
	for _, a := range alternates {
		i := -1
		for j, q := range pairs {
			if q.primary.Addr().Is4() == a.Addr().Is4() {
				i = j
			}
		}
		switch {
		case i < 0:
			return nil, fmt.Errorf("--alternate %v: no --primary of the same address family", a)
		case pairs[i].alternate.IsValid():
			return nil, fmt.Errorf("--alternate %v: one --alternate per address family (already %v)", a, pairs[i].alternate)
		case a.Addr().IsUnspecified():
			return nil, fmt.Errorf("--alternate %v: give a concrete address of this host", a)
		case a.Addr() == pairs[i].primary.Addr():
			return nil, fmt.Errorf("--alternate %v: the alternate address must differ from the primary %v (RFC 5780 needs two IP addresses)", a, pairs[i].primary)
		case a.Port() == pairs[i].primary.Port() && a.Port() != 0:
			return nil, fmt.Errorf("--alternate %v: the alternate port must differ from the primary port %d", a, a.Port())
		}
		pairs[i].alternate = a
	}
	return pairs, nil
}

func serveFamily(a netip.Addr) string {
	if a.Unmap().Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// runServe is natcheck serve: it runs until ctx is done (SIGINT, SIGTERM).
func runServe(ctx context.Context, args []string, stdout, stderr io.Writer, e env) int {
	o, err := parseServeArgs(args, stdout)
	if errors.Is(err, errHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "natcheck serve: %v\n", err)
		return exitUsage
	}
	log := newLogger(stderr, o.logLevel, o.logJSON)

	var tlsCfg *tls.Config
	if o.tlsCert != "" {
		cert, err := loadKeyPair(o.tlsCert, o.tlsKey)
		if err != nil {
			fmt.Fprintf(stderr, "natcheck serve: --tls-cert/--tls-key: %v\n", err)
			return exitUsage
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	turnCfg, err := serveTURNConfig(o, log)
	if err != nil {
		fmt.Fprintf(stderr, "natcheck serve: %v\n", err)
		return exitUsage
	}
	var pairToken string
	if o.pair.tokenFile != "" {
		if pairToken, err = readPairToken(o.pair.tokenFile); err != nil {
			fmt.Fprintf(stderr, "natcheck serve: %v\n", err)
			return exitUsage
		}
	}
	nw := e.net
	if nw == nil {
		std, err := stdnet.NewNet()
		if err != nil {
			fmt.Fprintf(stderr, "natcheck serve: open host network: %v\n", err)
			return exitServeStart
		}
		nw = std
	}

	// Stop on a signal even while starting; servers are closed below.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var servers []*stunserver.Server
	defer func() {
		for _, s := range servers {
			if err := s.Close(); err != nil {
				log.Warn("close stun server", "err", err)
			}
		}
	}()
	// One byte budget for every UDP listener: STUN of both families and
	// TURN, so that its limits hold for the host.
	budget := udpbudget.New(o.trust, o.sourceBudget, o.globalBudget, nil, log)
	if turnCfg != nil {
		turnCfg.Budget = budget
	}
	for i, p := range o.pairs {
		cfg := stunserver.Config{
			Net:               nw,
			Primary:           p.primary,
			Alternate:         p.alternate,
			TCP:               o.tcp,
			Software:          o.software,
			Logger:            log.With("family", serveFamily(p.primary.Addr())),
			Budget:            budget,
			MaxConns:          o.maxConns,
			MaxConnsPerSource: o.maxConnsPerSource,
			IdleTimeout:       o.idleTimeout,
			MaxConnAge:        o.maxConnAge,
		}
		if i == 0 && len(o.stunTLS) > 0 {
			cfg.TLSConfig, cfg.TLSAddrs = tlsCfg, o.stunTLS
		}
		s, err := stunserver.Start(ctx, cfg)
		if err != nil {
			fmt.Fprintf(stderr, "natcheck serve: %s STUN server: %v\n", serveFamily(p.primary.Addr()), err)
			return exitServeStart
		}
		servers = append(servers, s)
		attrs := []any{"family", serveFamily(p.primary.Addr()), "primary", s.Primary(), "udp", s.Addrs(), "tcp", s.TCPAddrs()}
		if s.Alternate().IsValid() {
			attrs = append(attrs, "alternate", s.Alternate())
		}
		if len(s.TLSAddrs()) > 0 {
			attrs = append(attrs, "tls", s.TLSAddrs())
		}
		log.Info("stun listening", attrs...)
		if !p.alternate.IsValid() {
			log.Warn("single-address mode: responses carry no OTHER-ADDRESS and CHANGE-REQUEST gets 420; "+
				"NAT behaviour discovery (RFC 5780) needs two addresses: add --alternate IP[:PORT]",
				"family", serveFamily(p.primary.Addr()))
		}
	}

	var turnSrv *turnserver.Server
	if turnCfg != nil {
		// Closed below, after the last stats, rather than when ctx ends.
		turnSrv, err = startServeTURN(context.WithoutCancel(ctx), *turnCfg, o.turn, tlsCfg, nw, log)
		if err != nil {
			fmt.Fprintf(stderr, "natcheck serve: TURN: %v\n", err)
			return exitServeStart
		}
		defer turnSrv.Close()
	}
	var pairSrv *servePair
	if o.pair.http.IsValid() {
		// Closed below, after the last stats, rather than when ctx ends.
		pairSrv, err = startServePair(context.WithoutCancel(ctx), o, pairToken, tlsCfg, nw, log)
		if err != nil {
			fmt.Fprintf(stderr, "natcheck serve: rendezvous: %v\n", err)
			return exitServeStart
		}
		defer pairSrv.Close()
	}
	if len(o.trust) > 0 {
		log.Info("sources exempt from the response budgets", "trust", o.trust)
	}
	log.Info("ready")

	var tick <-chan time.Time
	if o.statsInterval > 0 {
		t := time.NewTicker(o.statsInterval)
		defer t.Stop()
		tick = t.C
	}
	var last []stunserver.Stats
	var lastTURN turnserver.Stats
	var lastPair rendezvous.Stats
	for {
		select {
		case <-ctx.Done():
			log.Info("shutting down")
			serveLogStats(log, servers, nil, true)
			if turnSrv != nil {
				serveLogTURNStats(log, turnSrv, lastTURN, true)
			}
			if pairSrv != nil {
				serveLogPairStats(log, pairSrv, lastPair, true)
			}
			return exitOK
		case <-tick:
			last = serveLogStats(log, servers, last, false)
			if turnSrv != nil {
				lastTURN = serveLogTURNStats(log, turnSrv, lastTURN, false)
			}
			if pairSrv != nil {
				lastPair = serveLogPairStats(log, pairSrv, lastPair, false)
			}
		}
	}
}

// serveLogStats logs each server's counters if they changed since last (or
// always with force) and returns the new snapshot.
func serveLogStats(log *slog.Logger, servers []*stunserver.Server, last []stunserver.Stats, force bool) []stunserver.Stats {
	now := make([]stunserver.Stats, len(servers))
	for i, s := range servers {
		st := s.Stats()
		now[i] = st
		if !force && i < len(last) && last[i] == st {
			continue
		}
		log.Info("stun stats", "primary", s.Primary(), "requests", st.Requests, "responses", st.Responses,
			"error_responses", st.ErrorResponses, "malformed", st.Malformed, "rate_limited", st.RateLimited,
			"source_budget_drops", st.SourceBudgetDrops, "global_budget_drops", st.GlobalBudgetDrops,
			"send_errors", st.SendErrors, "stream_conns", st.StreamConns, "stream_refused", st.StreamRefused)
	}
	return now
}

// serveParsePortRange parses MIN-MAX.
func serveParsePortRange(s string) (lo, hi uint16, err error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return 0, 0, fmt.Errorf("%q is not MIN-MAX", s)
	}
	x, err1 := strconv.ParseUint(strings.TrimSpace(a), 10, 16)
	y, err2 := strconv.ParseUint(strings.TrimSpace(b), 10, 16)
	if err1 != nil || err2 != nil || x == 0 || x > y {
		return 0, 0, fmt.Errorf("%q is not MIN-MAX with 1 <= MIN <= MAX <= 65535", s)
	}
	return uint16(x), uint16(y), nil
}

// loadKeyPair is tls.LoadX509KeyPair with safefile's size limit on both
// files (a --tls-cert of /dev/zero would otherwise fill memory).
func loadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := safefile.Read(certFile, safefile.MaxPEM)
	if err != nil {
		return tls.Certificate{}, err
	}
	keyPEM, err := safefile.Read(keyFile, safefile.MaxSecret)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}
