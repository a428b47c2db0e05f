package exporter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pion/transport/v5"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/natcheck/natcheck/internal/diagnose"
	"github.com/natcheck/natcheck/probe"
	"github.com/natcheck/natcheck/report"
	"github.com/natcheck/natcheck/turncheck"
)

// check is one module's check of one target, ready to run.
type check struct {
	module string
	m      *Module
	// host is the target's host as the probe looks it up; endpoints are
	// what the check contacts there, for allowed_targets.
	host      string
	endpoints []endpoint
	// contacts are the hosts the check looks up or dials (the target's,
	// and a stun module's own servers), lower-case without a trailing
	// dot, with the ports it contacts at each: what an allowlist lets it
	// send to once they are resolved.
	contacts map[string][]uint16
	// policy is what public_only puts between the probe and the network;
	// zero means the host's resolver and sockets.
	policy dialPolicy
	run    func(ctx context.Context, p dialPolicy) outcome
}

// dialPolicy is the resolver and network a check uses; nil fields mean
// the host's.
type dialPolicy struct {
	resolver probe.Resolver
	net      transport.Net
	// allow, when set, is asked before a turn check sends to or dials an
	// address directly (the stun probe goes through net instead).
	allow func(netip.AddrPort) error
}

// contact records that c contacts host on port.
func (c *check) contact(host string, port uint16) {
	key := strings.TrimSuffix(strings.ToLower(host), ".")
	if a, err := netip.ParseAddr(key); err == nil {
		key = a.Unmap().String()
	}
	if c.contacts == nil {
		c.contacts = map[string][]uint16{}
	}
	if !slices.Contains(c.contacts[key], port) {
		c.contacts[key] = append(c.contacts[key], port)
	}
}

// outcome is the result of a check.
type outcome struct {
	success bool
	// why says in one line why the probe failed; empty on success.
	why string
	// report is the JSON report, for ?debug=true; it holds no credential.
	report any
	// register adds the check's natcheck_* metrics to a registry.
	register func(prometheus.Registerer) error
}

// prepare parses target for module m, as the probe will, and returns its
// check. Its errors are one line and never quote a user part or a query
// value of the target.
func prepare(name string, m *Module, target, version string) (check, error) {
	if len(target) > maxTargetLen {
		return check{}, fmt.Errorf("target: longer than %d bytes", maxTargetLen)
	}
	if strings.ContainsFunc(target, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return check{}, errors.New("target: control characters")
	}
	if strings.Contains(target, "@") {
		// Never quoted back: it may hold a user name and a password.
		return check{}, errors.New("target: credentials do not belong in the target; the module configures them")
	}
	c := check{module: name, m: m}
	var err error
	switch m.Kind {
	case KindSTUN:
		err = prepareSTUN(&c, m.STUN, target, version)
	case KindTURN:
		err = prepareTURN(&c, m.TURN, m.Timeout, target, version)
	default:
		err = fmt.Errorf("module %q: unknown kind %q", name, m.Kind)
	}
	return c, scrub(target, err)
}

// prepareSTUN plans a stun check of target.
func prepareSTUN(c *check, s STUNModule, target, version string) error {
	t, err := probe.ParseTarget(target)
	if err != nil {
		return fmt.Errorf("target: %w (give HOST[:PORT] or a stun: or stuns: URI)", err)
	}
	cfg := probe.Config{TLS: s.tls, Hairpin: s.Hairpin, TLSPorts: []uint16{}}
	transports := s.Transports
	switch {
	case !t.UDP():
		// A URI that names its transport is checked over it only.
		transports = []string{t.Transport}
		cfg.Servers = []probe.Target{t}
	case slices.Contains(transports, probe.TransportUDP):
		cfg.Servers = []probe.Target{t}
		cfg.NoPaths = len(transports) == 1
		if slices.Contains(transports, probe.TransportTLS) {
			cfg.TLSPorts = s.TLSPorts
		}
	default:
		// No UDP: the target as TCP and TLS URIs, so that no UDP test runs.
		if slices.Contains(transports, probe.TransportTCP) {
			cfg.Servers = append(cfg.Servers, probe.Target{Host: t.Host, Port: t.Port, Transport: probe.TransportTCP})
		}
		if slices.Contains(transports, probe.TransportTLS) {
			for _, p := range s.TLSPorts {
				cfg.Servers = append(cfg.Servers, probe.Target{Host: t.Host, Port: p, Transport: probe.TransportTLS})
			}
		}
	}
	// What the probe contacts at the target: each server made of it, and
	// the TLS ports of its path probes.
	c.host = t.Host
	addEndpoint := func(scheme string, port uint16) error {
		e, err := newEndpoint(scheme, t.Host, int(port))
		if err != nil {
			return fmt.Errorf("target: %w", err)
		}
		if !slices.Contains(c.endpoints, e) {
			c.endpoints = append(c.endpoints, e)
		}
		c.contact(t.Host, port)
		return nil
	}
	for _, x := range cfg.Servers {
		scheme := schemeSTUN
		if x.Transport == probe.TransportTLS {
			scheme = schemeSTUNS
		}
		if err := addEndpoint(scheme, x.Port); err != nil {
			return err
		}
	}
	for _, p := range cfg.TLSPorts {
		if err := addEndpoint(schemeSTUNS, p); err != nil {
			return err
		}
	}
	names := map[string]bool{}
	for _, x := range cfg.Servers {
		names[x.String()] = true
	}
	cfg.Servers = append(cfg.Servers, s.servers...)
	for _, x := range s.servers {
		// The module's own servers, chosen by the operator: their port,
		// and the TLS ports of their path probes.
		c.contact(x.Host, x.Port)
		if x.UDP() && !cfg.NoPaths {
			for _, p := range cfg.TLSPorts {
				c.contact(x.Host, p)
			}
		}
	}
	var families []probe.Family
	if s.Family != "" {
		families = []probe.Family{probe.Family(s.Family)}
	}
	var targetPorts []uint16
	for _, e := range c.endpoints {
		targetPorts = append(targetPorts, e.port)
	}
	c.run = func(ctx context.Context, p dialPolicy) outcome {
		cfg := cfg
		cfg.Resolver, cfg.Net = p.resolver, p.net
		r := diagnose.Run(ctx, cfg, version, families...)
		ok, why := stunSuccess(r, names, transports, targetPorts)
		return outcome{success: ok, why: why, report: r, register: func(reg prometheus.Registerer) error {
			return report.RegisterMetrics(reg, r)
		}}
	}
	return nil
}

// stunSuccess decides a stun probe: every (transport, port) tried on the
// target's ports over the module's transports got a Binding response, in
// at least one address family, and every transport was tried. Otherwise
// it says why not. The TCP path probe to the server's alternate address
// (OTHER-ADDRESS, another port) does not decide it.
func stunSuccess(r report.Report, target map[string]bool, transports []string, ports []uint16) (bool, string) {
	type key struct {
		transport string
		port      int
	}
	ok := map[key]bool{}
	errs := map[key]string{}
	var keys []key
	for _, p := range r.Paths {
		if !target[p.Server] || !slices.Contains(transports, p.Transport) || !slices.Contains(ports, uint16(p.Port)) {
			continue
		}
		k := key{p.Transport, p.Port}
		if _, seen := ok[k]; !seen {
			keys = append(keys, k)
		}
		ok[k] = ok[k] || p.OK
		if !p.OK && errs[k] == "" {
			errs[k] = fmt.Sprintf("%s %s: %s", p.Transport, p.Address, orDefault(p.Error, "no Binding response"))
		}
	}
	var why []string
	for _, k := range keys {
		if !ok[k] {
			why = append(why, errs[k])
		}
	}
	for _, t := range transports {
		if !slices.ContainsFunc(keys, func(k key) bool { return k.transport == t }) {
			msg := t + ": not tried"
			for _, s := range r.Servers {
				if target[s.Name] && s.Error != "" {
					msg += " (" + s.Error + ")"
					break
				}
			}
			for _, f := range r.Families {
				if f.Skipped != "" {
					msg += "; " + f.Family + ": " + f.Skipped
				}
			}
			why = append(why, msg)
		}
	}
	return len(why) == 0, strings.Join(why, "; ")
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// prepareTURN plans a turn check of target: a turn:/turns: URL, or
// HOST[:PORT] over each of the module's transports.
func prepareTURN(c *check, t TURNModule, timeout time.Duration, target, version string) error {
	var urls []turncheck.URL
	lower := strings.ToLower(target)
	if strings.HasPrefix(lower, "turn:") || strings.HasPrefix(lower, "turns:") {
		u, err := turncheck.ParseURL(target)
		if err != nil {
			return fmt.Errorf("target: %w", err)
		}
		urls = append(urls, u)
	} else {
		hp, err := probe.ParseTarget(target)
		if err != nil || strings.HasPrefix(lower, "stun:") || strings.HasPrefix(lower, "stuns:") {
			return fmt.Errorf("target %q: give a turn: or turns: URL, or HOST[:PORT]", redactTarget(target))
		}
		for _, tr := range t.Transports {
			var raw string
			switch tr {
			case probe.TransportUDP:
				raw = "turn:" + net.JoinHostPort(hp.Host, strconv.Itoa(int(hp.Port)))
			case probe.TransportTCP:
				raw = "turn:" + net.JoinHostPort(hp.Host, strconv.Itoa(int(hp.Port))) + "?transport=tcp"
			case probe.TransportTLS:
				raw = "turns:" + net.JoinHostPort(hp.Host, strconv.Itoa(int(t.TLSPort)))
			}
			u, err := turncheck.ParseURL(raw)
			if err != nil {
				return fmt.Errorf("target: %w", err)
			}
			urls = append(urls, u)
		}
	}
	for _, u := range urls {
		scheme := schemeTURN
		if u.Secure {
			scheme = schemeTURNS
		}
		e, err := newEndpoint(scheme, u.Host, u.Port)
		if err != nil {
			return fmt.Errorf("target: %w", err)
		}
		c.host = u.Host
		c.endpoints = append(c.endpoints, e)
		c.contact(u.Host, uint16(u.Port))
	}
	servers := make([]turncheck.Server, len(urls))
	for i, u := range urls {
		servers[i] = turncheck.Server{URL: u, Credentials: t.creds}
	}
	opts := turncheck.Options{RootCAs: t.rootCAs, Insecure: t.Insecure, Packets: t.Packets, EndToEnd: t.EndToEnd,
		StepTimeout: min(5*time.Second, timeout)}
	c.run = func(ctx context.Context, p dialPolicy) outcome {
		start := time.Now()
		opts := opts
		opts.Resolver, opts.Allow = p.resolver, p.allow
		checks := turncheck.CheckAll(ctx, servers, opts)
		r := diagnose.TURNReport(version, start, time.Since(start), checks)
		var why []string
		for _, c := range r.TURN {
			if !c.OK {
				why = append(why, c.URL+": "+orDefault(c.FailedStep, "failed")+": "+c.Error)
			}
		}
		for i := range r.TURN {
			r.TURN[i].User = "" // half a credential: not in the debug output either
		}
		return outcome{success: r.OK, why: strings.Join(why, "; "), report: r, register: func(reg prometheus.Registerer) error {
			return report.RegisterTURNMetrics(reg, r)
		}}
	}
	return nil
}

// writeText writes metric families in the text exposition format.
func writeText(w io.Writer, mfs []*dto.MetricFamily) {
	enc := expfmt.NewEncoder(w, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return
		}
	}
}
