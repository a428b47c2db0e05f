package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/natcheck/natcheck/internal/exporter"
)

func init() { subcommands["exporter"] = runExporter }

const exporterUsageText = `Usage: natcheck exporter --config FILE [flags]

natcheck exporter is a Prometheus exporter in the manner of blackbox_exporter:
Prometheus asks /probe?module=NAME&target=TARGET, the exporter runs the
module's check against the target (a STUN server, or a TURN server with the
module's credentials) and answers with probe_success, probe_duration_seconds
and natcheck's metrics. /metrics serves the exporter's own metrics.

The module file (YAML) is described in docs/prometheus.md, with a scrape
configuration; docs/examples/natcheck-exporter.yml is a start. Credentials
come from files or environment variables named there, never from the file
itself, and never appear in a metric, a log or an error page.

Whoever can reach /probe chooses the target. A stun module probes any
host and port unless it sets allowed_targets (whole host names, *.NAME,
IP prefixes, ports) or public_only (no loopback, private or other
special-purpose address, checked after DNS); a turn module must set
allowed_targets, since its credentials go to the target. A refused target
gets 403 before any packet is sent. --listen stays on 127.0.0.1 by default.

A probe's time is the module's timeout, capped by Prometheus's scrape
timeout (X-Prometheus-Scrape-Timeout-Seconds) less --timeout-offset. At most
--max-concurrent probes run at once; a probe that finds no slot within
--queue-timeout gets 503, which Prometheus records as up 0. A keep-alive
connection idle for --idle-timeout is closed; a request's headers must
arrive within 10 s and fit in 16 KiB.

Flags:
`

const exporterExitText = `
Exit codes:
  0  stopped by SIGINT or SIGTERM, after the probes in progress
  2  usage error, a bad module file, or the address cannot be listened on

Example:
  NATCHECK_TURN_PASSWORD=... natcheck exporter --listen :9469 --config natcheck-exporter.yml
  curl '127.0.0.1:9469/probe?module=stun&target=stun.example.com:3478'
`

// Limits of the exporter's HTTP server. A scrape is a GET with a few
// headers: reading it takes no time, and nothing a client sends needs more
// than a few kilobytes. The answer can take the longest module timeout
// (plus the wait for a slot); writeSlack leaves room to send it.
const (
	defaultIdleTimeout = 2 * time.Minute
	readHeaderTimeout  = 10 * time.Second
	readTimeout        = 15 * time.Second
	maxHeaderBytes     = 16 << 10
	writeSlack         = 30 * time.Second
)

// exporterOptions are natcheck exporter's flags.
type exporterOptions struct {
	listen        string
	config        string
	maxConcurrent int
	queueTimeout  time.Duration
	timeoutOffset time.Duration
	idleTimeout   time.Duration
	logLevel      slog.Level
	logJSON       bool
}

func parseExporterArgs(args []string, stdout io.Writer) (exporterOptions, error) {
	var o exporterOptions
	fs := flag.NewFlagSet("natcheck exporter", flag.ContinueOnError)
	fs.StringVar(&o.listen, "listen", "127.0.0.1:9469", "listen on `ADDR` (HOST:PORT; \":9469\" for every interface)")
	fs.StringVar(&o.config, "config", "", "module `FILE` (YAML; required)")
	fs.IntVar(&o.maxConcurrent, "max-concurrent", exporter.DefaultMaxConcurrent, "most probes at once")
	fs.DurationVar(&o.queueTimeout, "queue-timeout", exporter.DefaultQueueTimeout, "how long a probe waits for a free slot before 503 (0: no wait)")
	fs.DurationVar(&o.timeoutOffset, "timeout-offset", exporter.DefaultTimeoutOffset, "taken off Prometheus's scrape timeout to leave time for the answer")
	fs.DurationVar(&o.idleTimeout, "idle-timeout", defaultIdleTimeout, "close a keep-alive connection idle this long (more than the scrape interval)")
	level := fs.String("log-level", "info", "log `LEVEL`: debug (one line per probe), info, warn or error")
	format := fs.String("log-format", "text", "log `FORMAT`: text or json")
	if err := parseFlags(fs, args, stdout, "natcheck exporter", exporterUsageText, exporterExitText); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q (see natcheck exporter --help)", fs.Arg(0))
	}
	if o.config == "" {
		return o, errors.New("--config FILE is required: the modules to probe with (see docs/examples/natcheck-exporter.yml)")
	}
	if o.maxConcurrent < 1 {
		return o, fmt.Errorf("--max-concurrent %d: give at least 1", o.maxConcurrent)
	}
	if o.queueTimeout < 0 || o.timeoutOffset < 0 {
		return o, errors.New("--queue-timeout and --timeout-offset cannot be negative")
	}
	if o.idleTimeout <= 0 {
		return o, fmt.Errorf("--idle-timeout %v: give a positive duration such as 2m", o.idleTimeout)
	}
	if o.queueTimeout == 0 {
		o.queueTimeout = -1 // exporter.Options: negative means no wait
	}
	var err error
	if o.logLevel, o.logJSON, err = parseLogFlags(*level, *format); err != nil {
		return o, err
	}
	return o, nil
}

// runExporter is natcheck exporter: it serves until ctx is done (SIGINT,
// SIGTERM), then lets the probes in progress finish.
func runExporter(ctx context.Context, args []string, stdout, stderr io.Writer, e env) int {
	o, err := parseExporterArgs(args, stdout)
	if errors.Is(err, errHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "natcheck exporter: %v\n", err)
		return exitUsage
	}
	cfg, err := exporter.LoadConfig(o.config, e.getenv)
	if err != nil {
		fmt.Fprintf(stderr, "natcheck exporter: %v\n", err)
		return exitUsage
	}
	log := newLogger(stderr, o.logLevel, o.logJSON)
	exp, err := exporter.New(cfg, exporter.Options{MaxConcurrent: o.maxConcurrent, QueueTimeout: o.queueTimeout,
		TimeoutOffset: o.timeoutOffset, Logger: log, Version: version})
	if err != nil {
		fmt.Fprintf(stderr, "natcheck exporter: %v\n", err)
		return exitUsage
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		fmt.Fprintf(stderr, "natcheck exporter: --listen: %v\n", err)
		return exitUsage
	}
	var longest time.Duration
	for _, m := range cfg.Modules {
		longest = max(longest, m.Timeout)
	}
	srv := &http.Server{
		Handler:           exp.Handler(),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      readTimeout + max(o.queueTimeout, 0) + longest + writeSlack,
		IdleTimeout:       o.idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("natcheck exporter listening", "address", ln.Addr().String(), "config", o.config, "modules", exp.Modules(), "version", version)
	if open := exp.Unrestricted(); len(open) > 0 {
		log.Info("these modules probe any host and port a scrape names: whoever reaches the exporter can make it send packets anywhere it can reach; restrict them with allowed_targets or public_only", "modules", open)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err := <-served:
		log.Error("natcheck exporter stopped", "err", err)
		return exitUsage
	case <-ctx.Done():
	}
	// Probes in progress end by their own deadlines; wait for the longest.
	log.Info("natcheck exporter shutting down", "waiting_at_most", longest+time.Second)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), longest+time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("natcheck exporter: shutdown", "err", err)
		srv.Close()
	}
	<-served
	log.Info("natcheck exporter stopped")
	return exitOK
}
