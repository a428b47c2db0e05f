package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/natcheck/natcheck/internal/diagnose"
	"github.com/natcheck/natcheck/internal/progress"
	"github.com/natcheck/natcheck/internal/safefile"
	"github.com/natcheck/natcheck/natclass"
	"github.com/natcheck/natcheck/probe"
	"github.com/natcheck/natcheck/report"
	"github.com/natcheck/natcheck/turncheck"
)

func init() { subcommands["turn"] = runTurn }

// Environment variables for TURN credentials: safer than flags, which
// other users of the machine can read in the process list.
const (
	envTURNPassword = "NATCHECK_TURN_PASSWORD"
	envTURNSecret   = "NATCHECK_TURN_SECRET"
)

// turnFlags are the TURN flags shared by natcheck and natcheck turn.
type turnFlags struct {
	urls         listFlag
	user         string
	password     string
	passwordFile string
	secretFile   string
	lifetime     time.Duration
	iceServers   string
	caFile       string
	insecure     bool
}

func addTURNFlags(fs *flag.FlagSet) *turnFlags {
	f := &turnFlags{}
	fs.Var(&f.urls, "turn", "TURN server `URL` to check: turn:HOST[:PORT][?transport=udp|tcp] or turns:HOST[:PORT] (repeatable)")
	fs.StringVar(&f.user, "turn-user", "", "TURN user `NAME` (long-term credentials; with a shared secret, the user part of the REST user name)")
	fs.StringVar(&f.password, "turn-password", "", "TURN `PASSWORD`; visible to other users in the process list: prefer "+envTURNPassword+" or --turn-password-file")
	fs.StringVar(&f.passwordFile, "turn-password-file", "", "read the TURN password from `FILE` (else "+envTURNPassword+")")
	fs.StringVar(&f.secretFile, "turn-secret-file", "", "read a TURN REST shared secret (coturn static-auth-secret) from `FILE` (else "+envTURNSecret+")")
	fs.DurationVar(&f.lifetime, "turn-credential-lifetime", turncheck.DefaultRESTLifetime, "lifetime of REST credentials made from the shared secret")
	fs.StringVar(&f.iceServers, "ice-servers", "", "WebRTC iceServers JSON `FILE` (urls, username, credential), as TURN providers' APIs return")
	fs.StringVar(&f.caFile, "ca-file", "", "trust the CA certificates in PEM `FILE` for turns: and STUN over TLS (besides the system's)")
	fs.BoolVar(&f.insecure, "insecure", false, "do not verify turns: certificates (reported as a warning)")
	return f
}

// turnConfig is what the TURN flags resolve to.
type turnConfig struct {
	servers  []turncheck.Server
	stun     []string // STUN servers (HOST:PORT) from --ice-servers
	opts     turncheck.Options
	warnings []string // to print on stderr
}

// readSecretFile reads a password or secret file, at most
// safefile.MaxSecret bytes, without its trailing newline.
func readSecretFile(flagName, file string) (string, error) {
	b, err := safefile.Read(file, safefile.MaxSecret)
	if err != nil {
		return "", fmt.Errorf("%s: %w", flagName, err)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("%s %s: the file is empty", flagName, file)
	}
	return s, nil
}

// config validates the flags and reads the files they name. extra are
// further TURN URLs (natcheck turn's arguments).
func (f *turnFlags) config(getenv func(string) string, extra []string) (turnConfig, error) {
	var c turnConfig
	urls := append(append([]string(nil), f.urls...), extra...)
	if f.lifetime < time.Second { // REST expiries are whole seconds: less is already past
		return c, fmt.Errorf("--turn-credential-lifetime %v: give a positive duration such as 1h", f.lifetime)
	}
	// --ca-file serves every TLS connection, STUN over TLS included: read
	// it whatever else is given, so that a missing or bad file is an error.
	if f.caFile != "" {
		pool, err := turncheck.LoadCAFile(f.caFile)
		if err != nil {
			return c, fmt.Errorf("--ca-file: %w", err)
		}
		c.opts.RootCAs = pool
	}
	credFlags := f.user != "" || f.password != "" || f.passwordFile != "" || f.secretFile != ""
	if len(urls) == 0 && f.iceServers == "" {
		if credFlags || f.insecure {
			return c, errors.New("TURN credentials or --insecure given without a TURN server: add --turn URL or --ice-servers FILE")
		}
		return c, nil
	}
	if len(urls) == 0 && credFlags {
		return c, errors.New("--turn-user, --turn-password and their files apply to --turn URLs only: the --ice-servers entries carry their own username and credential")
	}
	if f.password != "" && f.passwordFile != "" {
		return c, errors.New("--turn-password and --turn-password-file: give one")
	}
	creds := turncheck.Credentials{User: f.user, Lifetime: f.lifetime}
	password := getenv(envTURNPassword)
	switch {
	case f.passwordFile != "":
		p, err := readSecretFile("--turn-password-file", f.passwordFile)
		if err != nil {
			return c, err
		}
		password = p
	case f.password != "":
		password = f.password
		c.warnings = append(c.warnings, "--turn-password is visible to other users of this machine in the process list: use "+envTURNPassword+" or --turn-password-file")
	}
	secret := getenv(envTURNSecret)
	if f.secretFile != "" {
		s, err := readSecretFile("--turn-secret-file", f.secretFile)
		if err != nil {
			return c, err
		}
		secret = s
	}
	if len(urls) > 0 {
		switch {
		case password != "" && secret != "":
			return c, errors.New("both a TURN password and a shared secret are set: give one (unset " + envTURNPassword + " or " + envTURNSecret + ")")
		case secret != "":
			creds.SharedSecret = turncheck.NewSecret(secret)
		default:
			creds.Password = turncheck.NewSecret(password)
		}
		if err := creds.Validate(); err != nil {
			return c, fmt.Errorf("--turn: %w", err)
		}
	}
	for _, raw := range urls {
		u, err := turncheck.ParseURL(raw)
		if err != nil {
			return c, fmt.Errorf("--turn: %w", err)
		}
		c.servers = append(c.servers, turncheck.Server{URL: u, Credentials: creds})
	}
	if f.iceServers != "" {
		data, err := safefile.Read(f.iceServers, safefile.MaxConfig)
		if err != nil {
			return c, fmt.Errorf("--ice-servers: %w", err)
		}
		ice, err := turncheck.ParseICEServers(bytes.NewReader(data))
		if err != nil {
			return c, fmt.Errorf("--ice-servers %s: %w", f.iceServers, err)
		}
		if len(ice.TURN) == 0 {
			return c, fmt.Errorf("--ice-servers %s: no turn: or turns: URL in it", f.iceServers)
		}
		for i := range ice.TURN {
			ice.TURN[i].Credentials.Lifetime = f.lifetime
		}
		c.servers = append(c.servers, ice.TURN...)
		c.stun = ice.STUN
	}
	c.opts.Insecure = f.insecure
	if f.insecure {
		c.warnings = append(c.warnings, "--insecure: TURN server certificates are not verified")
	}
	return c, nil
}

// turnTrace prints TURN messages on stderr, for -v.
func turnTrace(stderr io.Writer) func(turncheck.Event) {
	var mu sync.Mutex
	start := time.Now()
	return func(e turncheck.Event) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(stderr, "%8.1fms turn %s\n", float64(e.Time.Sub(start).Microseconds())/1000, e)
	}
}

// startTURN runs the TURN checks and candidate gathering of the main
// diagnosis alongside it; the function it returns waits for them and adds
// them to the report. Without TURN servers it does nothing.
func startTURN(ctx context.Context, o options, stderr io.Writer) func(*report.Report) {
	c := o.turn
	if len(c.servers) == 0 {
		return func(*report.Report) {}
	}
	for _, w := range c.warnings {
		fmt.Fprintf(stderr, "natcheck: warning: %s\n", w)
	}
	opts := c.opts
	opts.EndToEnd = true
	if o.verbose {
		opts.Trace = turnTrace(stderr)
	}
	var stun []string
	for _, t := range o.servers {
		if t.UDP() {
			stun = append(stun, net.JoinHostPort(t.Host, strconv.Itoa(int(t.Port))))
		}
	}
	stun = append(stun, c.stun...)
	var (
		checks []natclass.TURNCheck
		g      natclass.Gathering
		wg     sync.WaitGroup
	)
	wg.Go(func() {
		opts.NAT64 = turnNAT64(ctx, c.servers)
		checks = turncheck.CheckAll(ctx, c.servers, opts)
	})
	wg.Go(func() { g = turncheck.Gather(ctx, stun, c.servers, c.opts) })
	return func(r *report.Report) {
		wg.Wait()
		turncheck.ExplainGathering(&g, checks)
		diagnose.AddTURN(r, checks, &g)
	}
}

// turnNAT64 is the NAT64 prefix through which to reach TURN servers
// given as IPv4 literals or as names with IPv4 addresses only, on a host
// with no IPv4 route (probe.FindNAT64: DNS64, else the well-known prefix
// if a UDP server answers through it); the zero Prefix when no server
// needs it, the host has an IPv4 route, or no NAT64 was found.
func turnNAT64(ctx context.Context, servers []turncheck.Server) netip.Prefix {
	targets := make([]probe.Target, 0, len(servers))
	for _, s := range servers {
		t := probe.Target{Host: s.URL.Host, Port: uint16(s.URL.Port)}
		if s.URL.Transport != natclass.TURNTransportUDP {
			t.Transport = probe.TransportTCP // no Binding request to it
		}
		targets = append(targets, t)
	}
	if n := probe.FindNAT64(ctx, probe.Config{Servers: targets}); n != nil && n.Detected {
		return n.Prefix
	}
	return netip.Prefix{}
}

const turnUsageText = `Usage: natcheck turn [flags] URL...

natcheck turn checks TURN servers, for CI and monitoring. For each URL
(turn:HOST[:PORT][?transport=udp|tcp] or turns:HOST[:PORT], RFC 7065) it
connects (TCP connect and TLS handshake, certificate verified), allocates a
relay, creates a permission, sends packets through the relay to a local peer
socket and back (round-trip time and loss), releases the allocation, and
connects two relay-only ICE agents to each other through the server. Only
data through the relay counts as working.

With --duration D (a TURN soak, e.g. --duration 6m), each allocation is
kept alive for D after the check: the client refreshes the allocation,
the permission and the channel binding as they come due, and 20 packets a
second go through the relay to local peer sockets and back, half as
ChannelData and half as Send indications. The report has each refresh's
result and loss, RTT percentiles and jitter per minute; progress goes to
stderr. Ctrl-C ends the soak early with the partial result.

Credentials: --turn-user with the password in NATCHECK_TURN_PASSWORD or
--turn-password-file; or a REST-API shared secret (coturn use-auth-secret) in
NATCHECK_TURN_SECRET or --turn-secret-file; or per server from --ice-servers.
No password, secret or derived credential is ever printed.

Flags:
`

const turnExitText = `
Exit codes:
  0  every check passed (and every --require transport works)
  1  a check failed, or a --require transport does not work; with
     --duration, also a failed refresh or a loss above --max-loss
  2  usage or configuration error
  3  no TURN server answered at all (takes precedence over 1)

Examples:
  NATCHECK_TURN_PASSWORD=... natcheck turn --turn-user alice turn:turn.example.com turns:turn.example.com:443
  NATCHECK_TURN_SECRET=... natcheck turn --turn-user ci --require udp,tls turn:turn.example.com?transport=tcp
  natcheck turn --ice-servers ice.json --json
  natcheck turn --turn-user alice --duration 6m --max-loss 1% turn:turn.example.com
`

// turnOptions are natcheck turn's own flags.
type turnOptions struct {
	turn    turnConfig
	require []string
	timeout time.Duration
	format  string
	color   bool
	verbose bool
	noE2E   bool
	packets int
	// duration of the soak; 0: none.
	duration time.Duration
	maxLoss  float64
}

// defaultMaxLoss is --max-loss: 2% is where real-time audio and video
// begin to suffer audibly and visibly.
const defaultMaxLoss = 0.02

// maxSoak bounds --duration: the soak keeps a record of every packet
// (20 a second, 72,000 in an hour) and summarises them once a second.
const maxSoak = time.Hour

// parseLoss reads a loss limit: a fraction (0.02) or a percentage (2%).
func parseLoss(s string) (float64, error) {
	t := strings.TrimSpace(s)
	pct := strings.HasSuffix(t, "%")
	v, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(t, "%")), 64)
	if err == nil && pct {
		v /= 100
	}
	if err != nil || v < 0 || v > 1 || v != v {
		return 0, fmt.Errorf("--max-loss %q: give a fraction from 0 to 1 (0.02) or a percentage (2%%)", s)
	}
	return v, nil
}

func parseTurnArgs(args []string, stdout io.Writer, getenv func(string) string) (turnOptions, error) {
	var o turnOptions
	fs := flag.NewFlagSet("natcheck turn", flag.ContinueOnError)
	tf := addTURNFlags(fs)
	var require listFlag
	fs.Var(&require, "require", "exit 1 unless TURN works over each `TRANSPORT[,...]`: udp, tcp, tls")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "cap on the whole run")
	asJSON := fs.Bool("json", false, "same as --format json")
	fs.StringVar(&o.format, "format", "text", "output `FORMAT`: text, json, json-line or prometheus")
	noColor := fs.Bool("no-color", false, "no colour in text output (also NO_COLOR, or when stdout is not a terminal)")
	fs.BoolVar(&o.verbose, "v", false, "trace every TURN message on stderr")
	fs.BoolVar(&o.noE2E, "no-end-to-end", false, "skip the end-to-end check with two ICE agents")
	fs.IntVar(&o.packets, "packets", 5, "`N` packets through each relay (1 to 100)")
	fs.DurationVar(&o.duration, "duration", 0, "keep each allocation alive this long with packets through the relay (a soak, e.g. 6m; 0: quick check only)")
	maxLoss := fs.String("max-loss", "2%", "with --duration, fail above this `LOSS`: a fraction (0.02) or a percentage (2%)")
	// Flags may come after URLs: parse, take one URL, parse the rest.
	var urls []string
	rest := args
	for range len(args) + 1 {
		if err := parseFlags(fs, rest, stdout, "natcheck turn", turnUsageText, turnExitText); err != nil {
			return o, err
		}
		if fs.NArg() == 0 {
			break
		}
		urls = append(urls, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(urls) == 0 && len(tf.urls) == 0 && tf.iceServers == "" {
		return o, errors.New("no TURN server: give URLs such as turn:turn.example.com:3478 (see natcheck turn --help)")
	}
	var err error
	if o.turn, err = tf.config(getenv, urls); err != nil {
		return o, err
	}
	if len(o.turn.servers) == 0 {
		return o, fmt.Errorf("--ice-servers %s: no turn: or turns: URL in it", tf.iceServers)
	}
	if o.timeout <= 0 {
		return o, fmt.Errorf("--timeout %v: give a positive duration such as 30s", o.timeout)
	}
	if o.packets < 1 || o.packets > 100 {
		return o, fmt.Errorf("--packets %d: give 1 to 100", o.packets)
	}
	if o.maxLoss, err = parseLoss(*maxLoss); err != nil {
		return o, err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	formatGiven := given["format"]
	if o.duration < 0 || o.duration > maxSoak {
		return o, fmt.Errorf("--duration %v: give 0 (no soak) up to %v, such as 6m", o.duration, maxSoak)
	}
	if given["max-loss"] && o.duration == 0 {
		return o, errors.New("--max-loss applies to a soak: give --duration too, such as --duration 6m")
	}
	if o.duration > 0 {
		// The quick check, the soak, the release and the end-to-end check.
		switch {
		case !given["timeout"]:
			o.timeout = o.duration + time.Minute
		case o.timeout < o.duration+10*time.Second:
			return o, fmt.Errorf("--timeout %v leaves no time for --duration %v: give at least --duration plus 10s, or leave --timeout out", o.timeout, o.duration)
		}
	}
	if err := jsonFlag(*asJSON, formatGiven, &o.format); err != nil {
		return o, err
	}
	switch o.format {
	case "text", "json", "json-line", "prometheus":
	default:
		return o, fmt.Errorf("--format %q: use text, json, json-line or prometheus", o.format)
	}
	for _, r := range require {
		for _, t := range strings.Split(r, ",") {
			t = strings.ToLower(strings.TrimSpace(t))
			switch t {
			case natclass.TURNTransportUDP, natclass.TURNTransportTCP, natclass.TURNTransportTLS:
				o.require = append(o.require, t)
			default:
				return o, fmt.Errorf("--require %q: use udp, tcp or tls", t)
			}
		}
	}
	o.color = !*noColor && getenv("NO_COLOR") == "" && isTerminal(stdout)
	return o, nil
}

// runTurn is `natcheck turn`.
func runTurn(ctx context.Context, args []string, stdout, stderr io.Writer, e env) int {
	o, err := parseTurnArgs(args, stdout, e.getenv)
	if errors.Is(err, errHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "natcheck turn: %v\n", err)
		return exitUsage
	}
	for _, w := range o.turn.warnings {
		fmt.Fprintf(stderr, "natcheck turn: warning: %s\n", w)
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	opts := o.turn.opts
	opts.EndToEnd = !o.noE2E
	opts.Packets = o.packets
	if o.verbose {
		opts.Trace = turnTrace(stderr)
	}
	var prog *progress.Reporter
	if o.duration > 0 {
		prog = progress.New(stderr, progress.Live(stderr), fmt.Sprintf("natcheck turn: soak of %v", o.duration), o.duration)
		opts.Soak = &turncheck.SoakOptions{Duration: o.duration, MaxLoss: o.maxLoss, Progress: soakProgress(prog, o.turn.servers)}
	}
	start := time.Now()
	opts.NAT64 = turnNAT64(ctx, o.turn.servers)
	checks := turncheck.CheckAll(ctx, o.turn.servers, opts)
	if prog != nil {
		prog.Done(soakResult(checks, ctx.Err() != nil))
	}
	r := diagnose.TURNReport(version, start, time.Since(start), checks)
	switch o.format {
	case "json":
		err = report.WriteTURNJSON(stdout, r, false)
	case "json-line":
		err = report.WriteTURNJSON(stdout, r, true)
	case "prometheus":
		err = report.WriteTURNPrometheus(stdout, r)
	default:
		err = report.WriteTURNText(stdout, r, report.TextOptions{Color: o.color, Verbose: o.verbose})
	}
	if err != nil {
		fmt.Fprintf(stderr, "natcheck turn: writing the report: %v\n", err)
		return exitUsage
	}
	answered := false
	for _, c := range checks {
		answered = answered || c.Answered()
	}
	if !answered {
		return exitNotMeasured
	}
	code := exitOK
	if !r.OK {
		code = exitRequire
	}
	for _, t := range o.require {
		if msg, ok := turnUnmet(t, checks); !ok {
			fmt.Fprintf(stderr, "natcheck turn: --require %s not met: %s\n", t, msg)
			code = exitRequire
		}
	}
	return code
}

// soakProgress returns a SoakOptions.Progress that shows the latest partial
// result of every server on one line.
func soakProgress(prog *progress.Reporter, servers []turncheck.Server) func(url, partial string) {
	var mu sync.Mutex
	latest := map[string]string{}
	return func(url, partial string) {
		mu.Lock()
		defer mu.Unlock()
		latest[url] = partial
		var parts []string
		for _, s := range servers {
			u := s.URL.String()
			if p, ok := latest[u]; ok {
				if len(servers) > 1 {
					p = u + ": " + p
				}
				parts = append(parts, p)
			}
		}
		prog.Update(strings.Join(parts, " | "))
	}
}

// soakResult is the last progress line: each soak's refreshes and loss.
func soakResult(checks []natclass.TURNCheck, interrupted bool) string {
	var parts []string
	for _, c := range checks {
		s := c.Soak
		if s == nil {
			parts = append(parts, c.URL+": no soak (the check failed at "+c.FailedStep+")")
			continue
		}
		parts = append(parts, fmt.Sprintf("%s: %d refreshes, %d failed, loss %.2f%%", c.URL, len(s.Refreshes), s.RefreshFailures(), 100*s.Total.Loss()))
	}
	r := strings.Join(parts, "; ")
	if interrupted {
		r = "stopped early: " + r
	}
	return r
}

// turnUnmet checks that TURN over transport works: at least one check over
// it passed.
func turnUnmet(transport string, checks []natclass.TURNCheck) (string, bool) {
	var failed []string
	for _, c := range checks {
		if c.Transport != transport {
			continue
		}
		if c.OK {
			return "", true
		}
		failed = append(failed, c.URL+": "+c.Error)
	}
	if len(failed) == 0 {
		return "no TURN URL over " + transport + " was given", false
	}
	return strings.Join(failed, "; "), false
}
