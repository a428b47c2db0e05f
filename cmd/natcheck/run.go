package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/pion/transport/v5"

	"github.com/natcheck/natcheck/internal/diagnose"
	"github.com/natcheck/natcheck/internal/progress"
	"github.com/natcheck/natcheck/natclass"
	"github.com/natcheck/natcheck/portmap"
	"github.com/natcheck/natcheck/probe"
	"github.com/natcheck/natcheck/report"
	natstun "github.com/natcheck/natcheck/stun"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

// Exit codes.
const (
	exitOK          = 0 // diagnosis done
	exitRequire     = 1 // a --require condition was not met
	exitUsage       = 2 // usage or configuration error
	exitNotMeasured = 3 // nothing could be measured: no server answered at all
)

// defaultServers mixes plain servers (Google, Cloudflare) with one that
// implements RFC 5780 (stunprotocol.org runs stuntman), on different IP
// addresses so mapping can be compared across destinations.
var defaultServers = []string{
	"stun.l.google.com:19302",
	"stun.cloudflare.com:3478",
	"stun.stunprotocol.org:3478",
}

// requirements are the conditions --require accepts.
var requirements = map[string]string{
	"udp":        "UDP gets out to at least one STUN server",
	"direct-udp": "direct UDP to typical peers is expected (verdict direct_udp is likely)",
}

const usageText = `Usage: natcheck [flags]
       natcheck turn [flags] URL...     check TURN servers (natcheck turn --help)
       natcheck serve [flags]           run an RFC 5780 STUN server, optionally TURN
       natcheck pair [flags]            connect to a peer on another network (natcheck pair --help)
       natcheck exporter [flags]        serve probes to Prometheus, like blackbox_exporter

natcheck tells how real-time traffic (WebRTC, VoIP, games, VPNs) gets out of
this network: directly over UDP or only through a TURN relay, and why. It
sends STUN requests from several local sockets to several servers, runs the
RFC 5780 NAT behaviour tests where a server supports them, and classifies the
NAT's mapping and filtering behaviour.

Flags:
`

const exitText = `
Exit codes:
  0  diagnosis done
  1  a --require condition was not met
  2  usage or configuration error
  3  nothing could be measured: no server answered at all
     (takes precedence over 1)

Examples:
  natcheck
  natcheck --stun 127.0.0.1:3478 --stun [::1]:3478 --json
  natcheck --require udp,direct-udp --format json-line
  natcheck --every 1m --format json-line >>natcheck.log
  cd /var/lib/node_exporter/textfile && natcheck --format prometheus >natcheck.tmp; mv natcheck.tmp natcheck.prom
`

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

type options struct {
	servers  []probe.Target
	families []probe.Family
	timeout  time.Duration
	format   string
	color    bool
	verbose  bool
	hairpin  bool
	require  []string
	tlsPorts []uint16
	udpOnly  bool
	turn     turnConfig // TURN servers and options, from turn.go's flags
	// every and count are --every and --count (repeat.go): 0 runs once.
	every time.Duration
	count int
	// lifetime is --lifetime, with --lifetime-max and --lifetime-precision.
	lifetime          bool
	lifetimeMax       time.Duration
	lifetimePrecision time.Duration
	// portmap is --portmap; noPortmapDetect is --no-portmap-detect.
	portmap         bool
	noPortmapDetect bool
}

// errHelp means -h was given: usage was printed, exit 0.
var errHelp = errors.New("help requested")

// env is what run takes from the process: the environment and the
// network (nil for the host's; tests pass a pion/transport vnet).
type env struct {
	getenv func(string) string
	net    transport.Net
	// portmap is where port mapping detection finds the gateway; nil
	// turns it off (tests: no traffic to the host's real gateway).
	portmap *portmap.Config
}

func parseArgs(args []string, stdout io.Writer, getenv func(string) string) (options, error) {
	var o options
	fs := flag.NewFlagSet("natcheck", flag.ContinueOnError)
	var stun, require listFlag
	fs.Var(&stun, "stun", "STUN server `HOST[:PORT]` (repeatable; replaces the defaults; IPv6 in brackets)")
	v4 := fs.Bool("4", false, "test IPv4 only (not with -6; without either, both families)")
	v6 := fs.Bool("6", false, "test IPv6 only (not with -4)")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "cap on the whole run")
	asJSON := fs.Bool("json", false, "same as --format json")
	fs.StringVar(&o.format, "format", "text", "output `FORMAT`: text, json, json-line (one compact object per run), or prometheus (text exposition for node_exporter's textfile collector)")
	noColor := fs.Bool("no-color", false, "no colour in text output (also NO_COLOR, or when stdout is not a terminal)")
	fs.BoolVar(&o.verbose, "v", false, "trace every STUN transaction on stderr, and list them in text output")
	fs.BoolVar(&o.hairpin, "hairpin", false, "also test hairpinning (some firewalls flag it as an attack)")
	fs.Var(&require, "require", "exit 1 unless `CONDITION[,...]` holds: udp, direct-udp")
	tcpPorts := fs.String("tcp-ports", "443,5349", "`PORTS` tried with STUN over TLS for each server, besides TCP on its STUN port; \"none\" for none")
	fs.BoolVar(&o.udpOnly, "udp-only", false, "skip the TCP and TLS path probes")
	fs.DurationVar(&o.every, "every", 0, "repeat the diagnosis every `DURATION` (at least 1s) until interrupted; Ctrl-C ends after the run in progress; one report per run")
	fs.IntVar(&o.count, "count", 0, "with --every, stop after `N` runs (0: until interrupted)")
	fs.BoolVar(&o.lifetime, "lifetime", false, "also measure how long the NAT keeps an idle UDP mapping (needs a server that honours RESPONSE-PORT, RFC 5780); takes up to --lifetime-max, progress on stderr")
	fs.DurationVar(&o.lifetimeMax, "lifetime-max", probe.DefaultLifetimeMax, "with --lifetime, the longest idle time tested; the measurement ends within it plus a few seconds")
	fs.DurationVar(&o.lifetimePrecision, "lifetime-precision", probe.DefaultLifetimePrecision, "with --lifetime, the width of the lower-upper bracket aimed at")
	fs.BoolVar(&o.portmap, "portmap", false, "also ask the gateway for a UDP port mapping (UPnP, NAT-PMP or PCP; at most 2 minutes), test from outside that a stranger's packet arrives through it (needs an RFC 5780 server), and delete it again; this changes the gateway's state")
	fs.BoolVar(&o.noPortmapDetect, "no-portmap-detect", false, "do not ask the default gateway which port mapping protocols it speaks")
	showVersion := fs.Bool("version", false, "print the version and exit")
	tf := addTURNFlags(fs)
	var err error
	if err = parseFlags(fs, args, stdout, "natcheck", usageText, exitText); err != nil {
		return o, err
	}
	if *showVersion {
		fmt.Fprintf(stdout, "natcheck %s\n", version)
		return o, errHelp
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q: servers go after --stun (see natcheck --help)", natstun.RedactURI(fs.Arg(0)))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if len(stun) == 0 {
		stun = defaultServers
	}
	for _, s := range stun {
		t, err := probe.ParseTarget(s)
		if err != nil {
			return o, fmt.Errorf("--stun: %w", err)
		}
		o.servers = append(o.servers, t)
	}
	switch {
	case *v4 && *v6:
		return o, errors.New("give -4 or -6, not both (without either, both families are tested)")
	case *v4:
		o.families = []probe.Family{probe.IPv4}
	case *v6:
		o.families = []probe.Family{probe.IPv6}
	}
	if o.tlsPorts, err = parsePorts(*tcpPorts); err != nil {
		return o, fmt.Errorf("--tcp-ports: %w", err)
	}
	if o.udpOnly && given["tcp-ports"] {
		return o, errors.New("--tcp-ports with --udp-only: --udp-only skips the TLS probes; give one")
	}
	if o.timeout <= 0 {
		return o, fmt.Errorf("--timeout %v: give a positive duration such as 5s", o.timeout)
	}
	if err := jsonFlag(*asJSON, given["format"], &o.format); err != nil {
		return o, err
	}
	switch o.format {
	case "text", "json", "json-line", "prometheus":
	default:
		return o, fmt.Errorf("--format %q: use text, json or json-line, or prometheus for metrics", o.format)
	}
	if err := checkRepeat(o); err != nil {
		return o, err
	}
	if err := checkLifetime(o, given); err != nil {
		return o, err
	}
	if o.portmap && o.noPortmapDetect {
		return o, errors.New("--portmap and --no-portmap-detect: a mapping needs detection; give one of them")
	}
	for _, r := range require {
		for _, c := range strings.Split(r, ",") {
			c = strings.TrimSpace(c)
			if _, ok := requirements[c]; !ok {
				return o, fmt.Errorf("--require %q: unknown condition; use udp or direct-udp", c)
			}
			o.require = append(o.require, c)
		}
	}
	if o.turn, err = tf.config(getenv, nil); err != nil {
		return o, err
	}
	o.color = !*noColor && getenv("NO_COLOR") == "" && isTerminal(stdout)
	return o, nil
}

// jsonFlag applies --json to format: it means --format json, and contradicts
// any other --format.
func jsonFlag(asJSON, formatGiven bool, format *string) error {
	if !asJSON {
		return nil
	}
	if formatGiven && *format != "json" {
		return fmt.Errorf("--json and --format %q: give one", *format)
	}
	*format = "json"
	return nil
}

// parseFlags parses args with fs. -h prints usage, the flags and exitText
// on stdout and returns errHelp; a bad flag gives one line that names the
// command's --help.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer, cmd, usage, exitText string) error {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {} // errors are reported in one line, by the caller
	err := fs.Parse(args)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, usage)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		fmt.Fprint(stdout, exitText)
		return errHelp
	}
	return fmt.Errorf("%s (see %s --help)", redactQuoted(err.Error()), cmd)
}

// redactQuoted passes every quoted string in msg, such as the value in
// package flag's `invalid value "..." for flag -timeout`, through
// natstun.RedactURI: a server URL given to the wrong flag must not show its
// credentials.
func redactQuoted(msg string) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(msg, '"')
		if i < 0 {
			break
		}
		q, err := strconv.QuotedPrefix(msg[i:])
		if err != nil {
			// An unterminated quote: hide the rest.
			b.WriteString(msg[:i] + `"` + natstun.Redacted + `"`)
			return b.String()
		}
		v, _ := strconv.Unquote(q)
		b.WriteString(msg[:i] + strconv.Quote(natstun.RedactURI(v)))
		msg = msg[i+len(q):]
	}
	b.WriteString(msg)
	return b.String()
}

// parseLogFlags reads the servers' --log-level and --log-format values.
func parseLogFlags(level, format string) (slog.Level, bool, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return l, false, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	switch format {
	case "text":
		return l, false, nil
	case "json":
		return l, true, nil
	}
	return l, false, fmt.Errorf("--log-format %q: use text or json", format)
}

// newLogger logs to w at level, as text or JSON lines (the servers' logs).
func newLogger(w io.Writer, level slog.Level, asJSON bool) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if asJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// parsePorts parses a comma-separated list of ports, or "none".
func parsePorts(s string) ([]uint16, error) {
	ports := []uint16{}
	if strings.TrimSpace(s) == "none" {
		return ports, nil
	}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		p, err := strconv.ParseUint(f, 10, 16)
		if err != nil || p == 0 {
			return nil, fmt.Errorf("%q is not a port from 1 to 65535 (give a list such as 443,5349, or none)", f)
		}
		ports = append(ports, uint16(p))
	}
	return ports, nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

// subcommand is a command such as "natcheck serve"; each registers itself
// in subcommands from its own file.
type subcommand func(ctx context.Context, args []string, stdout, stderr io.Writer, e env) int

// subcommands maps a first argument to its command. It is filled by init
// functions of this package only and never changed after.
var subcommands = map[string]subcommand{}

// run is natcheck without the process: arguments in, exit code out.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, e env) int {
	if len(args) > 0 {
		if sub, ok := subcommands[args[0]]; ok {
			return sub(ctx, args[1:], stdout, stderr, e)
		}
	}
	o, err := parseArgs(args, stdout, e.getenv)
	if errors.Is(err, errHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "natcheck: %v\n", err)
		return exitUsage
	}
	if o.every > 0 {
		return repeat(ctx, o, stdout, stderr, e)
	}
	dctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	if o.lifetime {
		// --timeout bounds the diagnosis; the lifetime measurement has
		// --lifetime-max and ends early, with its partial result, on ctx.
		return diagnoseOnce(dctx, ctx, o, stdout, stderr, e)
	}
	return once(dctx, o, stdout, stderr, e)
}

// checkLifetime validates the --lifetime flags.
func checkLifetime(o options, given map[string]bool) error {
	switch {
	case !o.lifetime && (given["lifetime-max"] || given["lifetime-precision"]):
		return errors.New("--lifetime-max and --lifetime-precision need --lifetime")
	case !o.lifetime:
		return nil
	case o.every > 0:
		return errors.New("--lifetime with --every: a lifetime measurement takes minutes; run it once")
	case o.lifetimeMax < probe.MinLifetimeMax || o.lifetimeMax > time.Hour:
		return fmt.Errorf("--lifetime-max %v: give a duration from %v to 1h, such as 5m", o.lifetimeMax, probe.MinLifetimeMax)
	case o.lifetimePrecision < 500*time.Millisecond || o.lifetimePrecision > o.lifetimeMax:
		// An expiry is known only to within its check's sends (3, at least
		// 100 ms apart) and a round trip: a narrower bracket is out of reach.
		return fmt.Errorf("--lifetime-precision %v: give a duration from 500ms to --lifetime-max, such as 1s", o.lifetimePrecision)
	}
	return nil
}

// once runs one diagnosis within ctx, writes its report and returns its
// exit code.
func once(ctx context.Context, o options, stdout, stderr io.Writer, e env) int {
	return diagnoseOnce(ctx, nil, o, stdout, stderr, e)
}

// diagnoseOnce is once with, when lifeCtx is not nil, the binding lifetime
// measured within lifeCtx after the diagnosis.
func diagnoseOnce(ctx, lifeCtx context.Context, o options, stdout, stderr io.Writer, e env) int {
	var err error
	cfg := probe.Config{Servers: o.servers, Hairpin: o.hairpin, Net: e.net, TLSPorts: o.tlsPorts, NoPaths: o.udpOnly}
	if o.turn.opts.RootCAs != nil {
		cfg.TLS = &tls.Config{RootCAs: o.turn.opts.RootCAs}
	}
	if o.verbose {
		var mu sync.Mutex
		start := time.Now()
		cfg.Trace = func(e probe.Event) {
			mu.Lock()
			defer mu.Unlock()
			fmt.Fprintln(stderr, formatEvent(start, e))
		}
	}
	runStart := time.Now()
	finishTURN := startTURN(ctx, o, stderr)
	pm := diagnose.PortMap{Map: o.portmap}
	if !o.noPortmapDetect {
		pm.Config = e.portmap
	}
	r := diagnose.RunWith(ctx, cfg, pm, version, o.families...)
	finishTURN(&r)
	if lifeCtx != nil {
		r.AddLifetime(measureLifetime(lifeCtx, o, cfg, stderr))
	}
	r.DurationMS = time.Since(runStart).Milliseconds() // TURN checks and lifetime included

	switch o.format {
	case "json":
		err = report.WriteJSON(stdout, r)
	case "json-line":
		err = report.WriteJSONLine(stdout, r)
	case "prometheus":
		err = report.WritePrometheus(stdout, r)
	default:
		err = report.WriteText(stdout, r, report.TextOptions{Color: o.color, Verbose: o.verbose})
	}
	if err != nil {
		fmt.Fprintf(stderr, "natcheck: writing the report: %v\n", err)
		return exitUsage
	}
	if !r.Measured {
		return exitNotMeasured
	}
	code := exitOK
	for _, c := range o.require {
		if msg, ok := unmet(c, r); !ok {
			fmt.Fprintf(stderr, "natcheck: --require %s not met: %s\n", c, msg)
			code = exitRequire
		}
	}
	return code
}

// unmet checks one --require condition; it returns why it failed.
func unmet(cond string, r report.Report) (string, bool) {
	switch cond {
	case "udp":
		if !r.UDP {
			return "no UDP STUN reply arrived", false
		}
	case "direct-udp":
		if r.Verdict.DirectUDP != natclass.LikelihoodLikely {
			return fmt.Sprintf("direct UDP is %s (%s)", r.Verdict.DirectUDP, r.Verdict.Summary), false
		}
	}
	return "", true
}

func formatEvent(start time.Time, e probe.Event) string {
	var b strings.Builder
	local := "-"
	if e.Socket.IsValid() {
		local = e.Socket.String()
	}
	fmt.Fprintf(&b, "%8.1fms %-10s %-13s %s", float64(e.Time.Sub(start).Microseconds())/1000, e.Kind, e.Test, local)
	switch e.Kind {
	case probe.EventReply, probe.EventDropped:
		fmt.Fprintf(&b, " <- %s", e.Peer)
	default:
		fmt.Fprintf(&b, " -> %s", e.Peer)
	}
	if e.ID != "" {
		fmt.Fprintf(&b, " id=%s", e.ID)
	}
	if e.Detail != "" {
		fmt.Fprintf(&b, " %s", e.Detail)
	}
	return b.String()
}

// measureLifetime runs natcheck --lifetime's measurement with its progress
// on stderr.
func measureLifetime(ctx context.Context, o options, cfg probe.Config, stderr io.Writer) natclass.Lifetime {
	fam := probe.IPv4
	if len(o.families) == 1 {
		fam = o.families[0]
	}
	pr := progress.New(stderr, progress.Live(stderr), "binding lifetime", o.lifetimeMax)
	lt := probe.MeasureLifetime(ctx, probe.LifetimeConfig{
		Servers: o.servers, Family: fam, Net: cfg.Net, Max: o.lifetimeMax, Precision: o.lifetimePrecision, Trace: cfg.Trace,
		Progress: func(l natclass.Lifetime) { pr.Update("waiting for idle mappings to expire; " + lifetimeProgress(l)) },
	})
	done := lifetimeProgress(lt)
	switch {
	case lt.Error != "":
		done = "not measured: " + lt.Error
	case lt.Partial != "":
		done += " (" + lt.Partial + ")"
	}
	pr.Done(done)
	return lt
}

// lifetimeProgress says what a lifetime measurement found so far.
func lifetimeProgress(l natclass.Lifetime) string {
	s := fmt.Sprintf("%d sockets probed", l.Probes)
	switch {
	case l.Upper > 0:
		s += fmt.Sprintf(", lifetime between %v and %v", l.Lower.Round(100*time.Millisecond), l.Upper.Round(100*time.Millisecond))
	case l.Lower > 0:
		s += fmt.Sprintf(", lifetime more than %v", l.Lower.Round(100*time.Millisecond))
	}
	return s
}
