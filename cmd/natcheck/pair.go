package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/pion/transport/v5"

	"github.com/natcheck/natcheck/internal/diagnose"
	"github.com/natcheck/natcheck/internal/progress"
	"github.com/natcheck/natcheck/pair"
	"github.com/natcheck/natcheck/probe"
	"github.com/natcheck/natcheck/rendezvous"
	"github.com/natcheck/natcheck/report"
	natstun "github.com/natcheck/natcheck/stun"
)

func init() {
	subcommands["pair"] = runPair
	servePairPeerStart = startPairPeer
}

const pairUsageText = `Usage: natcheck pair --rendezvous URL --room NAME [flags]
       natcheck pair --rendezvous URL --room NAME --peer server [flags]

natcheck pair connects two networks for real and checks natcheck's
prediction against the outcome. Run it on two machines with the same
rendezvous (natcheck serve --http) and room, in any order; the first waits
for the second (--wait). Each side diagnoses its own network and sends the
summary to the other; both state the path they expect (direct or relay,
and the rule that gave it); then they connect with ICE as WebRTC does: an
SDP offer and answer, trickled candidates, a direct phase (host and
server-reflexive candidates) and, when either side has TURN servers
(--turn), a relay phase. Over the selected candidate pair each side sends a
burst of packets the other echoes: round-trip time and loss.

With --peer server, natcheck serve itself is the second peer, a public
peer like an SFU (natcheck serve --pair-ice): one person alone can test
whether UDP, or ICE-TCP, to a public peer works from here.

The rendezvous URL is ws://HOST[:PORT]/pair or wss://HOST[:PORT]/pair
(http://, https:// and a bare HOST:PORT also work). The diagnosis uses the
STUN server on the rendezvous host, port 3478, unless --stun is given.

Flags:
`

const pairExitText = `
Exit codes:
  0  connected (directly, or through a relay)
  1  no connection, the peer did not come or left, or --require direct
     is not met
  2  usage or configuration error, or the rendezvous refused the token
  3  the rendezvous could not be reached or refused the room (full, limits,
     no server peer)

Examples:
  natcheck pair --rendezvous wss://natcheck.example.com/pair --room alice-bob
  NATCHECK_TURN_PASSWORD=... natcheck pair --rendezvous ws://192.0.2.10:8080 --room r1 \
      --turn turn:turn.example.com --turn-user alice --json
  natcheck pair --rendezvous wss://natcheck.example.com/pair --room me --peer server --require direct
`

// pairOptions are natcheck pair's flags.
type pairOptions struct {
	rendezvous   string
	room         string
	peerServer   bool
	wait         time.Duration
	phaseTimeout time.Duration
	timeout      time.Duration
	servers      []probe.Target
	stunGiven    bool
	turn         turnConfig
	token        string
	format       string
	color        bool
	verbose      bool
	requireDir   bool
}

func parsePairArgs(args []string, stdout io.Writer, getenv func(string) string) (pairOptions, error) {
	var o pairOptions
	fs := flag.NewFlagSet("natcheck pair", flag.ContinueOnError)
	var stun listFlag
	fs.StringVar(&o.rendezvous, "rendezvous", "", "the rendezvous `URL`: ws://HOST[:PORT]/pair or wss://... (natcheck serve --http)")
	fs.StringVar(&o.room, "room", "", "the room `NAME` both sides give: 1 to 64 of A-Z a-z 0-9 . _ -")
	peer := fs.String("peer", "", "\"server\": the rendezvous server itself is the second peer (natcheck serve --pair-ice)")
	fs.DurationVar(&o.wait, "wait", 2*time.Minute, "how long to wait for the peer to join and send its diagnosis")
	fs.DurationVar(&o.phaseTimeout, "phase-timeout", pair.DefaultPhaseTimeout, "bound on each ICE phase, from the offer to connected")
	fs.DurationVar(&o.timeout, "timeout", 0, "cap on the whole run (default: --wait plus 2m)")
	fs.Var(&stun, "stun", "STUN server `HOST[:PORT]` for the diagnosis and for server-reflexive candidates (repeatable; default: the rendezvous host, port 3478)")
	tokenFile := fs.String("pair-token-file", "", "read the rendezvous's shared token from `FILE` (natcheck serve --pair-token-file)")
	asJSON := fs.Bool("json", false, "same as --format json")
	fs.StringVar(&o.format, "format", "text", "output `FORMAT`: text, json or json-line")
	noColor := fs.Bool("no-color", false, "no colour in text output (also NO_COLOR, or when stdout is not a terminal)")
	fs.BoolVar(&o.verbose, "v", false, "also list every STUN transaction of the diagnosis in text output")
	require := fs.String("require", "", "exit 1 unless the outcome is `direct`")
	tf := addTURNFlags(fs)
	if err := parseFlags(fs, args, stdout, "natcheck pair", pairUsageText, pairExitText); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q: give the rendezvous with --rendezvous and the room with --room", natstun.RedactURI(fs.Arg(0)))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if o.rendezvous == "" {
		return o, errors.New("no rendezvous: give --rendezvous ws://HOST[:PORT]/pair (natcheck serve --http)")
	}
	u, err := rendezvous.ParseURL(o.rendezvous)
	if err != nil {
		return o, fmt.Errorf("--rendezvous: %w", err)
	}
	if o.room == "" {
		return o, errors.New("no room: give --room NAME, the same on both sides")
	}
	if !rendezvous.ValidRoom(o.room) {
		return o, fmt.Errorf("--room %q: give 1 to 64 characters of A-Z a-z 0-9 . _ -", o.room)
	}
	switch *peer {
	case "":
	case "server":
		o.peerServer = true
	default:
		return o, fmt.Errorf("--peer %q: the only peer to ask for is server", *peer)
	}
	switch *require {
	case "":
	case "direct":
		o.requireDir = true
	default:
		return o, fmt.Errorf("--require %q: use direct", *require)
	}
	if o.wait <= 0 || o.wait > time.Hour {
		return o, fmt.Errorf("--wait %v: give a duration up to 1h, such as 2m", o.wait)
	}
	if o.phaseTimeout < time.Second || o.phaseTimeout > 5*time.Minute {
		return o, fmt.Errorf("--phase-timeout %v: give 1s to 5m, such as 10s", o.phaseTimeout)
	}
	switch {
	case !given["timeout"]:
		o.timeout = o.wait + 2*time.Minute
	case o.timeout <= o.wait:
		return o, fmt.Errorf("--timeout %v leaves no time after --wait %v: give more, or leave --timeout out", o.timeout, o.wait)
	}
	if len(stun) == 0 {
		stun = listFlag{net.JoinHostPort(u.Hostname(), "3478")}
	} else {
		o.stunGiven = true
	}
	for _, s := range stun {
		t, err := probe.ParseTarget(s)
		if err != nil {
			return o, fmt.Errorf("--stun: %w", err)
		}
		o.servers = append(o.servers, t)
	}
	if *tokenFile != "" {
		if o.token, err = readSecretFile("--pair-token-file", *tokenFile); err != nil {
			return o, err
		}
	}
	if err := jsonFlag(*asJSON, given["format"], &o.format); err != nil {
		return o, err
	}
	switch o.format {
	case "text", "json", "json-line":
	default:
		return o, fmt.Errorf("--format %q: use text, json or json-line", o.format)
	}
	if o.turn, err = tf.config(getenv, nil); err != nil {
		return o, err
	}
	o.color = !*noColor && getenv("NO_COLOR") == "" && isTerminal(stdout)
	return o, nil
}

// runPair is `natcheck pair`.
func runPair(ctx context.Context, args []string, stdout, stderr io.Writer, e env) int {
	o, err := parsePairArgs(args, stdout, e.getenv)
	if errors.Is(err, errHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "natcheck pair: %v\n", err)
		return exitUsage
	}
	for _, w := range o.turn.warnings {
		fmt.Fprintf(stderr, "natcheck pair: warning: %s\n", w)
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	// 1. The rendezvous.
	var tlsConf *tls.Config
	if o.turn.opts.RootCAs != nil || o.turn.opts.Insecure {
		tlsConf = &tls.Config{RootCAs: o.turn.opts.RootCAs, InsecureSkipVerify: o.turn.opts.Insecure, MinVersion: tls.VersionTLS12} //nolint:gosec // the user asked, and is warned
	}
	dctx, dcancel := context.WithTimeout(ctx, 30*time.Second)
	client, err := rendezvous.Dial(dctx, o.rendezvous, o.room, rendezvous.DialOptions{Token: o.token, PeerServer: o.peerServer, TLS: tlsConf})
	dcancel()
	if err != nil {
		switch {
		case errors.Is(err, rendezvous.ErrUnauthorized):
			fmt.Fprintf(stderr, "natcheck pair: %v: check --pair-token-file\n", err)
			return exitUsage
		case errors.Is(err, rendezvous.ErrBadRequest):
			fmt.Fprintf(stderr, "natcheck pair: %v\n", err)
			return exitUsage
		}
		fmt.Fprintf(stderr, "natcheck pair: %v\n", err)
		return exitNotMeasured
	}
	defer client.Close()
	role := client.Role()

	// 2. The diagnosis, while the peer comes.
	prog := progress.New(stderr, progress.Live(stderr), "natcheck pair: room "+o.room, o.wait)
	prog.Update(fmt.Sprintf("joined as %s; diagnosing this network", role))
	cfg := probe.Config{Servers: o.servers, Net: e.net, TLSPorts: []uint16{443, 5349}}
	if o.turn.opts.RootCAs != nil {
		cfg.TLS = &tls.Config{RootCAs: o.turn.opts.RootCAs}
	}
	start := time.Now()
	// Both families: ICE tries both at once, and a pair symmetric over
	// IPv4 may connect directly over IPv6.
	r := diagnose.Run(ctx, cfg, version)

	// 3. The pair.
	var stunUDP []string
	for _, t := range o.servers {
		if t.UDP() {
			stunUDP = append(stunUDP, net.JoinHostPort(t.Host, strconv.Itoa(int(t.Port))))
		}
	}
	pcfg := pair.Config{
		Room: o.room, Role: role, Wait: o.wait, Summary: pair.SummaryOf(r, len(o.turn.servers) > 0),
		STUN: stunUDP, TURN: o.turn.servers, TURNOptions: o.turn.opts, ActiveTCP: o.peerServer,
		PhaseTimeout: o.phaseTimeout, Net: e.net, PeerSince: client.PeerSince,
		Progress: func(s string) { prog.Update(s) },
	}
	res, runErr := pair.Run(ctx, pcfg, client)
	r.Pair = &res
	r.DurationMS = time.Since(start).Milliseconds()
	done := res.Outcome
	if runErr != nil {
		done += ": " + runErr.Error()
	}
	prog.Done(done)

	switch o.format {
	case "json":
		err = report.WriteJSON(stdout, r)
	case "json-line":
		err = report.WriteJSONLine(stdout, r)
	default:
		err = report.WritePairText(stdout, r, report.TextOptions{Color: o.color, Verbose: o.verbose})
	}
	if err != nil {
		fmt.Fprintf(stderr, "natcheck pair: writing the report: %v\n", err)
		return exitUsage
	}
	if res.Outcome == report.PairFailed {
		return exitRequire
	}
	if o.requireDir && res.Outcome != report.PairDirect {
		fmt.Fprintf(stderr, "natcheck pair: --require direct not met: the outcome is %s\n", res.Outcome)
		return exitRequire
	}
	return exitOK
}

// startPairPeer is natcheck serve's server peer (--pair-ice): the pair
// engine's ServePeer on ice, each session logged.
func startPairPeer(_ context.Context, ice netip.AddrPort, nw transport.Net, log *slog.Logger) (rendezvous.PeerFunc, func() error, error) {
	ps, err := pair.ListenPeer(ice, pair.PeerServerConfig{Version: version, Net: nw})
	if err != nil {
		return nil, nil, err
	}
	serve := func(ctx context.Context, remote netip.Addr, c rendezvous.Conn) {
		res, err := ps.ServeResult(ctx, remote, c)
		attrs := []any{"remote", remote.String(), "outcome", res.Outcome}
		if res.Selected != nil {
			attrs = append(attrs, "selected", res.Selected.Local.Protocol+" "+res.Selected.Remote.Address)
		}
		if err != nil && !errors.Is(err, pair.ErrPeerLeft) {
			log.Info("pair peer session ended early", append(attrs, "error", strings.TrimSpace(err.Error()))...)
			return
		}
		log.Info("pair peer session", attrs...)
	}
	return serve, ps.Close, nil
}
