// Package exporter is natcheck's Prometheus exporter: it probes STUN and
// TURN servers on request, in the manner of blackbox_exporter.
//
// GET /probe?module=NAME&target=TARGET runs the module's check against
// the target and answers with its metrics: probe_success,
// probe_duration_seconds and the natcheck_* metrics of report.RegisterMetrics
// or report.RegisterTURNMetrics. /metrics serves the exporter's own
// metrics. Modules come from a YAML file (see Config); the probe's time is
// bounded by the module's timeout and by the scrape timeout Prometheus
// sends in X-Prometheus-Scrape-Timeout-Seconds, less an offset; at most
// Options.MaxConcurrent probes run at once.
package exporter

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pion/transport/v5/stdnet"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/natcheck/natcheck/probe"
)

// Defaults of Options.
const (
	DefaultMaxConcurrent = 16
	DefaultQueueTimeout  = time.Second
	DefaultTimeoutOffset = 500 * time.Millisecond
)

// ScrapeTimeoutHeader is the header in which Prometheus sends its scrape
// timeout, in seconds.
const ScrapeTimeoutHeader = "X-Prometheus-Scrape-Timeout-Seconds"

// maxTargetLen bounds the target parameter.
const maxTargetLen = 512

// Options configure an Exporter. The zero value is usable.
type Options struct {
	// MaxConcurrent is the most probes that run at once; zero means
	// DefaultMaxConcurrent.
	MaxConcurrent int
	// QueueTimeout is how long a probe waits for a free slot before the
	// exporter answers 503 Service Unavailable; zero means
	// DefaultQueueTimeout, negative means no wait.
	QueueTimeout time.Duration
	// TimeoutOffset is taken off the scrape timeout that Prometheus sends,
	// so that the answer arrives in time; zero means DefaultTimeoutOffset.
	// The probe always gets at least half the scrape timeout.
	TimeoutOffset time.Duration
	// Logger receives one debug line per probe and the errors; nil
	// discards. No credential is ever logged.
	Logger *slog.Logger
	// Version is the natcheck version put into reports and
	// natcheck_exporter_build_info.
	Version string
	// Resolver looks up target names, always fully qualified (with a
	// trailing dot); nil means net.DefaultResolver. A public_only probe
	// then uses the addresses this lookup returned, and no other.
	Resolver probe.Resolver

	// public is what public_only lets through; nil means isPublic. Tests
	// set it to call part of loopback public.
	public publicPolicy
}

// Exporter serves probes. Create it with New.
type Exporter struct {
	cfg     *Config
	o       Options
	log     *slog.Logger
	sem     chan struct{}
	reg     *prometheus.Registry
	m       selfMetrics
	modules []string // sorted
	// run runs a prepared check; tests replace it to hold probes.
	run func(ctx context.Context, c check) outcome
}

// selfMetrics are the exporter's own metrics, served on /metrics.
type selfMetrics struct {
	probes   *prometheus.CounterVec
	rejected *prometheus.CounterVec
	inFlight prometheus.Gauge
	duration *prometheus.HistogramVec
}

// Reasons a /probe request was refused, the reason label of
// natcheck_exporter_requests_rejected_total.
const (
	rejectBusy            = "busy"
	rejectUnknownModule   = "unknown_module"
	rejectBadTarget       = "bad_target"
	rejectForbiddenTarget = "forbidden_target"
	rejectBadTimeout      = "bad_timeout"
)

// New returns an Exporter for the modules of cfg.
func New(cfg *Config, o Options) (*Exporter, error) {
	if cfg == nil || len(cfg.Modules) == 0 {
		return nil, fmt.Errorf("exporter: no modules")
	}
	if o.MaxConcurrent <= 0 {
		o.MaxConcurrent = DefaultMaxConcurrent
	}
	if o.QueueTimeout == 0 {
		o.QueueTimeout = DefaultQueueTimeout
	}
	if o.TimeoutOffset <= 0 {
		o.TimeoutOffset = DefaultTimeoutOffset
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	e := &Exporter{cfg: cfg, o: o, log: log, sem: make(chan struct{}, o.MaxConcurrent), reg: prometheus.NewRegistry()}
	for name := range cfg.Modules {
		e.modules = append(e.modules, name)
	}
	slices.Sort(e.modules)
	if e.o.Resolver == nil {
		e.o.Resolver = net.DefaultResolver
	}
	if e.o.public == nil {
		e.o.public = isPublic
	}
	e.run = func(ctx context.Context, c check) outcome { return c.run(ctx, c.policy) }

	e.m = selfMetrics{
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "natcheck_exporter_probes_total",
			Help: "Probes run, by module and result (success or failure)."}, []string{"module", "result"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "natcheck_exporter_requests_rejected_total",
			Help: "Probe requests refused, by reason: busy (503: every probe slot taken), unknown_module, bad_target, bad_timeout (400), forbidden_target (403: not in the module's allowed_targets, or not public with public_only)."}, []string{"reason"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{Name: "natcheck_exporter_probes_in_flight",
			Help: "Probes running now."}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "natcheck_exporter_probe_duration_seconds",
			Help: "Duration of probes, by module.", Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}, []string{"module"}),
	}
	for _, name := range e.modules {
		e.m.probes.WithLabelValues(name, "success")
		e.m.probes.WithLabelValues(name, "failure")
		e.m.duration.WithLabelValues(name)
	}
	for _, r := range []string{rejectBusy, rejectUnknownModule, rejectBadTarget, rejectBadTimeout, rejectForbiddenTarget} {
		e.m.rejected.WithLabelValues(r)
	}
	maxProbes := prometheus.NewGauge(prometheus.GaugeOpts{Name: "natcheck_exporter_max_concurrent_probes",
		Help: "The most probes that run at once (--max-concurrent)."})
	maxProbes.Set(float64(o.MaxConcurrent))
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "natcheck_exporter_build_info",
		Help: "Always 1; the labels say which natcheck is running."}, []string{"version", "goversion"})
	build.WithLabelValues(o.Version, runtime.Version()).Set(1)
	for _, c := range []prometheus.Collector{e.m.probes, e.m.rejected, e.m.inFlight, e.m.duration, maxProbes, build,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		if err := e.reg.Register(c); err != nil {
			return nil, fmt.Errorf("exporter: register metrics: %w", err)
		}
	}
	return e, nil
}

// Modules returns the names of the configured modules, sorted.
func (e *Exporter) Modules() []string { return slices.Clone(e.modules) }

// Unrestricted returns the modules, sorted, that probe any target a scrape
// names: stun modules with neither allowed_targets nor public_only
// (blackbox_exporter's convention).
func (e *Exporter) Unrestricted() []string {
	var out []string
	for _, name := range e.modules {
		if !e.cfg.Modules[name].restricted() {
			out = append(out, name)
		}
	}
	return out
}

// Handler returns the exporter's HTTP handler: /probe, /metrics,
// /-/healthy and a landing page on /.
func (e *Exporter) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/probe", e.serveProbe)
	mux.Handle("/metrics", promhttp.InstrumentMetricHandler(e.reg, promhttp.HandlerFor(e.reg, promhttp.HandlerOpts{Registry: e.reg})))
	mux.HandleFunc("/-/healthy", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "OK\n") })
	mux.HandleFunc("/{$}", e.serveLanding)
	return mux
}

func (e *Exporter) serveLanding(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	var b strings.Builder
	fmt.Fprintf(&b, "natcheck exporter %s\n\n", e.o.Version)
	b.WriteString("/probe?module=NAME&target=TARGET  probe a STUN or TURN server (add &debug=true to see why)\n")
	b.WriteString("/metrics                          the exporter's own metrics\n\nModules:\n")
	for _, name := range e.modules {
		m := e.cfg.Modules[name]
		fmt.Fprintf(&b, "  %s: %s, timeout %v\n", name, m.Kind, m.Timeout)
	}
	io.WriteString(w, b.String())
}

// badRequest answers 400 with a one-line message.
func (e *Exporter) badRequest(w http.ResponseWriter, reason, msg string) {
	e.m.rejected.WithLabelValues(reason).Inc()
	http.Error(w, msg, http.StatusBadRequest)
}

func (e *Exporter) serveProbe(w http.ResponseWriter, r *http.Request) {
	arrival := time.Now()
	q := r.URL.Query()
	name := q.Get("module")
	if name == "" {
		e.badRequest(w, rejectUnknownModule, "missing module parameter: /probe?module=NAME&target=TARGET; modules: "+strings.Join(e.modules, ", "))
		return
	}
	m, ok := e.cfg.Modules[name]
	if !ok {
		e.badRequest(w, rejectUnknownModule, fmt.Sprintf("unknown module %q; modules: %s", name, strings.Join(e.modules, ", ")))
		return
	}
	target := q.Get("target")
	if target == "" {
		e.badRequest(w, rejectBadTarget, "missing target parameter: /probe?module="+name+"&target=TARGET")
		return
	}
	shown := redactTarget(target) // what errors and logs may quote
	c, err := prepare(name, m, target, e.o.Version)
	if err != nil {
		if m.restricted() {
			// Whatever it is, it is not an allowed target.
			e.forbid(w, name, shown, err.Error())
			return
		}
		e.badRequest(w, rejectBadTarget, err.Error())
		return
	}
	if bad, ok := m.permits(c.endpoints); !ok {
		e.forbid(w, name, shown, bad.String()+" is not in the module's allowed_targets")
		return
	}
	scrape, err := scrapeBudget(r.Header, e.o.TimeoutOffset)
	if err != nil {
		e.badRequest(w, rejectBadTimeout, err.Error())
		return
	}
	debug := q.Get("debug") == "true"

	wait := e.o.QueueTimeout
	if scrape > 0 {
		wait = min(wait, scrape)
	}
	if !e.acquire(r.Context(), wait) {
		if r.Context().Err() != nil {
			return // Prometheus gave up
		}
		e.m.rejected.WithLabelValues(rejectBusy).Inc()
		e.log.Warn("probe refused: every probe slot is taken", "module", name, "target", shown, "max_concurrent", e.o.MaxConcurrent)
		http.Error(w, fmt.Sprintf("too many probes at once (%d running): try again, or raise --max-concurrent", e.o.MaxConcurrent), http.StatusServiceUnavailable)
		return
	}
	defer e.release()

	// The module's timeout runs from now; the scrape's from the request's
	// arrival, so time spent waiting for a slot counts against it.
	start := time.Now()
	deadline := start.Add(m.Timeout)
	if scrape > 0 {
		deadline = minTime(deadline, arrival.Add(scrape))
	}
	ctx, cancel := context.WithDeadline(r.Context(), deadline)
	defer cancel()
	if c.policy, err = e.policyFor(ctx, m, c); err != nil {
		e.forbid(w, name, shown, err.Error())
		return
	}
	out := e.run(ctx, c)
	took := time.Since(start)

	result := "failure"
	if out.success {
		result = "success"
	}
	e.m.probes.WithLabelValues(name, result).Inc()
	e.m.duration.WithLabelValues(name).Observe(took.Seconds())
	e.log.Debug("probe", "module", name, "target", shown, "success", out.success, "duration", took.Round(time.Millisecond), "timeout", deadline.Sub(start).Round(time.Millisecond), "why", out.why)

	reg := prometheus.NewRegistry()
	success := prometheus.NewGauge(prometheus.GaugeOpts{Name: "probe_success", Help: "1 when the probe succeeded, else 0."})
	success.Set(b2f(out.success))
	dur := prometheus.NewGauge(prometheus.GaugeOpts{Name: "probe_duration_seconds", Help: "How long the probe took."})
	dur.Set(took.Seconds())
	reg.MustRegister(success, dur)
	if out.register != nil {
		if err := out.register(reg); err != nil {
			e.log.Error("probe metrics", "module", name, "err", err)
			http.Error(w, "internal error building the probe's metrics", http.StatusInternalServerError)
			return
		}
	}
	if debug {
		e.serveDebug(w, name, shown, deadline.Sub(start), out, reg)
		return
	}
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(w, r)
}

// forbid answers 403 for a target the module does not probe; target is
// already redacted.
func (e *Exporter) forbid(w http.ResponseWriter, module, target, why string) {
	e.m.rejected.WithLabelValues(rejectForbiddenTarget).Inc()
	e.log.Debug("probe refused", "module", module, "target", target, "why", why)
	http.Error(w, fmt.Sprintf("module %q does not probe target %q: %s", module, target, why), http.StatusForbidden)
}

// policyFor returns the resolver and network check c runs with. Names are
// always looked up fully qualified. A module with allowed_targets sends
// only to what its allowlist admits (see allowlist), whatever the servers
// it contacts name in their answers. A public_only module looks the
// target up once, refuses it when any address found is not public, pins
// the addresses found, and sends to public addresses only; its error is
// the refusal. A lookup that fails is no refusal: the probe reports it.
func (e *Exporter) policyFor(ctx context.Context, m *Module, c check) (dialPolicy, error) {
	var resolver probe.Resolver = fqdnResolver{next: e.o.Resolver}
	var rules []func(netip.AddrPort) error
	if m.PublicOnly {
		var addrs []netip.Addr
		var lookupErr error
		host := c.host
		if a, err := netip.ParseAddr(host); err == nil {
			addrs = []netip.Addr{a}
		} else {
			lctx, cancel := context.WithTimeout(ctx, lookupTimeout)
			addrs, lookupErr = resolver.LookupNetIP(lctx, "ip", host)
			cancel()
		}
		for _, a := range addrs {
			if !e.o.public(a) {
				if a.Unmap().String() == strings.Trim(host, "[]") {
					return dialPolicy{}, fmt.Errorf("%s is not a public address, and the module has public_only", a.Unmap())
				}
				return dialPolicy{}, fmt.Errorf("%s resolves to %s, which is not a public address, and the module has public_only", host, a.Unmap())
			}
		}
		resolver = pinnedResolver{host: host, addrs: addrs, err: lookupErr, next: resolver}
		rules = append(rules, allowPublic(e.o.public))
	}
	if len(m.patterns) > 0 {
		al := newAllowlist(m, c)
		resolver = al.recorder(resolver)
		rules = append(rules, al.allow)
	}
	p := dialPolicy{resolver: resolver}
	if len(rules) == 0 {
		return p, nil
	}
	p.allow = allowBoth(rules...)
	if m.Kind == KindSTUN {
		base, err := stdnet.NewNet()
		if err != nil {
			return dialPolicy{}, fmt.Errorf("open the host's network: %w", err)
		}
		p.net = &guardedNet{Net: base, allow: p.allow}
	}
	return p, nil
}

// lookupTimeout bounds the look-up of a public_only target.
const lookupTimeout = 5 * time.Second

// serveDebug answers ?debug=true: what was probed, why it failed, the
// report and the metrics, as text.
func (e *Exporter) serveDebug(w http.ResponseWriter, module, target string, timeout time.Duration, out outcome, reg *prometheus.Registry) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	var b strings.Builder
	fmt.Fprintf(&b, "module: %s\ntarget: %s\ntimeout: %v\nsuccess: %v\n", module, target, timeout.Round(time.Millisecond), out.success)
	if out.why != "" {
		fmt.Fprintf(&b, "why: %s\n", out.why)
	}
	if out.report != nil {
		js, err := json.MarshalIndent(out.report, "", "  ")
		if err == nil {
			fmt.Fprintf(&b, "\nReport:\n%s\n", js)
		}
	}
	b.WriteString("\nMetrics:\n")
	io.WriteString(w, b.String())
	mfs, err := reg.Gather()
	if err != nil {
		fmt.Fprintf(w, "gather: %v\n", err)
		return
	}
	writeText(w, mfs)
}

// acquire takes a probe slot, waiting at most wait (no wait when wait is
// not positive). It returns false when no slot came free in time.
func (e *Exporter) acquire(ctx context.Context, wait time.Duration) bool {
	select {
	case e.sem <- struct{}{}:
		e.m.inFlight.Inc()
		return true
	default:
	}
	if wait <= 0 {
		return false
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case e.sem <- struct{}{}:
		e.m.inFlight.Inc()
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}

func (e *Exporter) release() {
	e.m.inFlight.Dec()
	<-e.sem
}

// scrapeBudget returns the time a probe may take according to the scrape
// timeout in h, less offset but at least half of it; zero when the header
// is absent.
func scrapeBudget(h http.Header, offset time.Duration) (time.Duration, error) {
	v := h.Get(ScrapeTimeoutHeader)
	if v == "" {
		return 0, nil
	}
	s, err := strconv.ParseFloat(v, 64)
	if err != nil || s <= 0 || math.IsInf(s, 0) || math.IsNaN(s) || s > 24*3600 {
		return 0, fmt.Errorf("%s %q: want a positive number of seconds", ScrapeTimeoutHeader, v)
	}
	scrape := time.Duration(s * float64(time.Second))
	return max(scrape-offset, scrape/2), nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
