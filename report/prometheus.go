package report

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/natcheck/natcheck/natclass"
)

// Prometheus metrics. The metrics of a run are built once, by
// RegisterMetrics and RegisterTURNMetrics, and used both by
// WritePrometheus (natcheck --format prometheus, for node_exporter's
// textfile collector) and by the exporter's /probe endpoint. docs/prometheus.md
// lists them.
//
// Conventions: times are in seconds, timestamps in Unix seconds; a yes/no
// answer is 1 or 0, and its series is absent when the answer is unknown
// (not tested, or the run ended first); an enumeration is an "_info" gauge
// whose value is always 1 and whose label carries the value, with the
// vocabulary of the JSON report. No label ever holds a credential: TURN
// checks are labelled by their URL, which never holds one, and never by
// their user name.

// metricSet is one registry's worth of natcheck gauges. It is created per
// report, so that nothing outlives one run.
type metricSet struct {
	duration      prometheus.Gauge
	udpOK         *prometheus.GaugeVec
	mapping       *prometheus.GaugeVec
	filtering     *prometheus.GaugeVec
	natType       *prometheus.GaugeVec
	natFlag       *prometheus.GaugeVec
	directUDP     *prometheus.GaugeVec
	wayOut        *prometheus.GaugeVec
	udpLoss       *prometheus.GaugeVec
	publicAddrs   *prometheus.GaugeVec
	stunAnswered  *prometheus.GaugeVec
	stunRTT       *prometheus.GaugeVec
	stunRFC5780   *prometheus.GaugeVec
	pathOK        *prometheus.GaugeVec
	pathReachable *prometheus.GaugeVec
	pathTime      *prometheus.GaugeVec
	pathCertValid *prometheus.GaugeVec
	pathCertExp   *prometheus.GaugeVec
	candidates    *prometheus.GaugeVec
	turn          *turnMetrics
}

// turnMetrics are the gauges of TURN checks, shared by the main report
// (natcheck --turn) and the report of natcheck turn.
type turnMetrics struct {
	ok           *prometheus.GaugeVec
	failedStep   *prometheus.GaugeVec
	errorCode    *prometheus.GaugeVec
	connect      *prometheus.GaugeVec
	tlsHandshake *prometheus.GaugeVec
	certExpiry   *prometheus.GaugeVec
	certVerified *prometheus.GaugeVec
	credExpiry   *prometheus.GaugeVec
	allocate     *prometheus.GaugeVec
	allocateRTT  *prometheus.GaugeVec
	permission   *prometheus.GaugeVec
	relaySent    *prometheus.GaugeVec
	relayRecv    *prometheus.GaugeVec
	relayLoss    *prometheus.GaugeVec
	relayRTT     *prometheus.GaugeVec
	released     *prometheus.GaugeVec
	e2eOK        *prometheus.GaugeVec
	e2eTime      *prometheus.GaugeVec
	duration     *prometheus.GaugeVec

	soakLoss      *prometheus.GaugeVec
	soakSent      *prometheus.GaugeVec
	soakReceived  *prometheus.GaugeVec
	soakRTT       *prometheus.GaugeVec
	soakJitter    *prometheus.GaugeVec
	soakRefreshes *prometheus.GaugeVec
	soakFailures  *prometheus.GaugeVec
	soakElapsed   *prometheus.GaugeVec
}

func gauge(name, help string, labels ...string) *prometheus.GaugeVec {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "natcheck_" + name, Help: help}, labels)
}

func newTURNMetrics() *turnMetrics {
	return &turnMetrics{
		ok:           gauge("turn_ok", "1 when data went through the TURN relay and back (and the end-to-end check, when run, connected), else 0.", "url", "transport"),
		failedStep:   gauge("turn_failed_step_info", "The step at which a failed TURN check stopped: resolve, connect, tls, allocate, permission, data, end-to-end or soak. Always 1.", "url", "step"),
		errorCode:    gauge("turn_error_code", "STUN error code of the response that failed the TURN check (e.g. 401, 403, 486); absent without one.", "url"),
		connect:      gauge("turn_connect_seconds", "TCP connect time to the TURN server (tcp and tls URLs).", "url"),
		tlsHandshake: gauge("turn_tls_handshake_seconds", "TLS handshake time with the TURN server (turns: URLs).", "url"),
		certExpiry:   gauge("turn_tls_cert_expiry_timestamp_seconds", "Expiry (notAfter) of the TURN server's leaf TLS certificate, in Unix seconds.", "url"),
		certVerified: gauge("turn_tls_cert_verified", "1 when the TURN server's TLS certificate chain and name were verified, 0 when not (insecure mode).", "url"),
		credExpiry:   gauge("turn_credential_expiry_timestamp_seconds", "Expiry of the TURN REST credentials made for the check, in Unix seconds.", "url"),
		allocate:     gauge("turn_allocate_seconds", "Time of the whole Allocate exchange, the 401 challenge included.", "url"),
		allocateRTT:  gauge("turn_allocate_rtt_seconds", "Round-trip time of the authenticated Allocate request.", "url"),
		permission:   gauge("turn_permission_seconds", "Round-trip time of the CreatePermission request.", "url"),
		relaySent:    gauge("turn_relay_packets_sent", "Packets sent through the relay to the peer socket.", "url"),
		relayRecv:    gauge("turn_relay_packets_received", "Packets that came back through the relay.", "url"),
		relayLoss:    gauge("turn_relay_loss_ratio", "Fraction of packets through the relay that did not come back, 0 to 1.", "url"),
		relayRTT:     gauge("turn_relay_rtt_seconds", "Round-trip time through the relay to the peer and back: min, avg and max.", "url", "stat"),
		released:     gauge("turn_released", "1 when the server confirmed the release of the allocation, 0 when it refused; absent when it did not answer.", "url"),
		e2eOK:        gauge("turn_end_to_end_ok", "1 when two relay-only ICE agents connected through the server, else 0; absent when not run.", "url"),
		e2eTime:      gauge("turn_end_to_end_seconds", "Time for two relay-only ICE agents to connect through the server.", "url"),
		duration:     gauge("turn_duration_seconds", "Duration of the whole TURN check.", "url"),

		soakLoss:      gauge("turn_soak_loss_ratio", "Fraction of the soak's packets through the relay that did not come back, 0 to 1 (natcheck turn --duration).", "url"),
		soakSent:      gauge("turn_soak_packets_sent", "Packets sent through the relay during the soak, by stream: channel (ChannelData) or indication (Send indications).", "url", "stream"),
		soakReceived:  gauge("turn_soak_packets_received", "Packets of the soak that came back through the relay, by stream.", "url", "stream"),
		soakRTT:       gauge("turn_soak_rtt_seconds", "Round-trip time through the relay during the soak: quantile 0.5, 0.95 and 0.99.", "url", "quantile"),
		soakJitter:    gauge("turn_soak_jitter_seconds", "Mean absolute difference between the round trips of consecutive soak packets of a stream.", "url"),
		soakRefreshes: gauge("turn_soak_refreshes_total", "Refreshes during the soak, by kind (allocation, permission, channel) and result (ok, failed).", "url", "kind", "result"),
		soakFailures:  gauge("turn_soak_refresh_failures_total", "Refreshes that failed during the soak (refused, or due and never answered).", "url"),
		soakElapsed:   gauge("turn_soak_seconds", "How long the soak ran.", "url"),
	}
}

func (m *turnMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.ok, m.failedStep, m.errorCode, m.connect, m.tlsHandshake, m.certExpiry, m.certVerified,
		m.credExpiry, m.allocate, m.allocateRTT, m.permission, m.relaySent, m.relayRecv, m.relayLoss, m.relayRTT,
		m.released, m.e2eOK, m.e2eTime, m.duration,
		m.soakLoss, m.soakSent, m.soakReceived, m.soakRTT, m.soakJitter, m.soakRefreshes, m.soakFailures, m.soakElapsed}
}

func newMetricSet() *metricSet {
	return &metricSet{
		duration:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "natcheck_duration_seconds", Help: "Duration of the natcheck run."}),
		udpOK:         gauge("udp_ok", "1 when a UDP STUN reply arrived in the address family, else 0. Families not tested are absent.", "family"),
		mapping:       gauge("nat_mapping_info", "NAT mapping behaviour (RFC 4787): unknown, none, endpoint-independent, address-dependent or address-and-port-dependent. Always 1.", "family", "mapping"),
		filtering:     gauge("nat_filtering_info", "NAT filtering behaviour (RFC 4787): unknown, none, endpoint-independent, address-dependent or address-and-port-dependent. Always 1.", "family", "filtering"),
		natType:       gauge("nat_type_info", "Classic NAT type: unknown, open-internet, firewall, full-cone, restricted-cone, port-restricted-cone, symmetric or udp-blocked. Always 1.", "family", "type"),
		natFlag:       gauge("nat_flag", "Yes/no findings about the NAT, named as in the JSON report's nat object (behind_nat, cgnat, alg, hairpin, ...): 1 yes, 0 no, absent when unknown.", "family", "flag"),
		directUDP:     gauge("direct_udp_info", "Verdict on direct UDP to typical peers: unknown, likely, possible, unlikely or impossible. Always 1.", "family", "likelihood"),
		wayOut:        gauge("way_out_info", "First way out that works, in ICE order: direct-udp, turn-udp, turn-tcp, turn-tls, none or unknown. Always 1.", "family", "via"),
		udpLoss:       gauge("udp_loss_ratio", "UDP loss measured in the run: the fraction of sends of answered STUN transactions that went unanswered (Test I left out); absent when UDP did not get out.", "family"),
		publicAddrs:   gauge("public_addresses", "Number of distinct public addresses the mapping socket got (more than one under a symmetric NAT).", "family"),
		stunAnswered:  gauge("stun_answered", "1 when the STUN server answered a Binding request over UDP, else 0.", "server", "family"),
		stunRTT:       gauge("stun_rtt_seconds", "Round-trip time of the Binding request to the STUN server over UDP; absent without a reply.", "server", "family"),
		stunRFC5780:   gauge("stun_rfc5780", "1 when the STUN server advertised a usable OTHER-ADDRESS (RFC 5780), 0 when not; absent without a reply.", "server", "family"),
		pathOK:        gauge("path_ok", "1 when a STUN Binding request over the transport (udp, tcp, tls) to the server's port got a response, else 0.", "transport", "server", "port", "family"),
		pathReachable: gauge("path_reachable", "1 when packets got through to the server's port (a UDP reply, or a completed TCP handshake), else 0.", "transport", "server", "port", "family"),
		pathTime:      gauge("path_seconds", "Time to the Binding response over the transport; absent when nothing came back.", "transport", "server", "port", "family"),
		pathCertValid: gauge("path_tls_cert_verified", "1 when the STUN server's TLS certificate was verified, 0 when verification failed; absent without a handshake.", "server", "port", "family"),
		pathCertExp:   gauge("path_tls_cert_expiry_timestamp_seconds", "Expiry (notAfter) of the STUN server's leaf TLS certificate, in Unix seconds.", "server", "port", "family"),
		candidates:    gauge("ice_candidates", "Number of ICE candidates gathered, by type (host, srflx, prflx, relay) and protocol.", "type", "protocol"),
		turn:          newTURNMetrics(),
	}
}

func (m *metricSet) collectors() []prometheus.Collector {
	return append([]prometheus.Collector{m.duration, m.udpOK, m.mapping, m.filtering, m.natType, m.natFlag, m.directUDP,
		m.wayOut, m.udpLoss, m.publicAddrs, m.stunAnswered, m.stunRTT, m.stunRFC5780, m.pathOK, m.pathReachable, m.pathTime,
		m.pathCertValid, m.pathCertExp, m.candidates}, m.turn.collectors()...)
}

func register(reg prometheus.Registerer, cs []prometheus.Collector) error {
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register natcheck metrics: %w", err)
		}
	}
	return nil
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// setTri sets g to 1 for Yes and 0 for No, and leaves it absent when t is
// Unknown.
func setTri(g *prometheus.GaugeVec, t natclass.Tri, labels ...string) {
	if t != natclass.TriUnknown {
		g.WithLabelValues(labels...).Set(b2f(t == natclass.TriYes))
	}
}

// setMS sets g to v milliseconds, in seconds, when v is not null. The
// report's milliseconds hold whole microseconds; rounding to them keeps
// 0.043 ms from becoming 4.2999999999999995e-05 s.
func setMS(g *prometheus.GaugeVec, v *float64, labels ...string) {
	if v != nil {
		g.WithLabelValues(labels...).Set(math.Round(*v*1000) / 1e6)
	}
}

// RegisterMetrics registers the natcheck_* metrics of r with reg: NAT
// behaviour and verdict per family, each STUN server, each path, and the
// TURN checks and ICE candidates when there are any. It registers neither a
// success metric nor a timestamp: WritePrometheus and the exporter add
// their own.
func RegisterMetrics(reg prometheus.Registerer, r Report) error {
	m := newMetricSet()
	m.duration.Set(float64(r.DurationMS) / 1000)
	for _, f := range r.Families {
		if f.Skipped != "" {
			continue
		}
		fam := f.Family
		m.udpOK.WithLabelValues(fam).Set(b2f(f.UDP))
		m.mapping.WithLabelValues(fam, f.NAT.Mapping.String()).Set(1)
		m.filtering.WithLabelValues(fam, f.NAT.Filtering.String()).Set(1)
		m.natType.WithLabelValues(fam, f.NAT.Type.String()).Set(1)
		for _, fl := range natFlags(f.NAT) {
			setTri(m.natFlag, fl.v, fam, fl.name)
		}
		m.directUDP.WithLabelValues(fam, f.Verdict.DirectUDP.String()).Set(1)
		if via := f.Verdict.WayOut.Via; via != "" {
			m.wayOut.WithLabelValues(fam, via).Set(1)
		}
		m.publicAddrs.WithLabelValues(fam).Set(float64(len(f.PublicAddresses)))
		if l := f.UDPLoss; l != nil && l.Sends > 0 {
			m.udpLoss.WithLabelValues(fam).Set(l.Fraction)
		}
	}
	for _, s := range r.Servers {
		if s.Address == "" && s.Error == "" {
			continue
		}
		m.stunAnswered.WithLabelValues(s.Name, s.Family).Set(b2f(s.Answered))
		if s.Answered {
			setMS(m.stunRTT, s.RTTMS, s.Name, s.Family)
		}
		setTri(m.stunRFC5780, s.RFC5780, s.Name, s.Family)
	}
	for _, p := range r.Paths {
		port := strconv.Itoa(p.Port)
		m.pathOK.WithLabelValues(p.Transport, p.Server, port, p.Family).Set(b2f(p.OK))
		m.pathReachable.WithLabelValues(p.Transport, p.Server, port, p.Family).Set(b2f(p.Reachable))
		if p.OK {
			setMS(m.pathTime, p.TimeMS, p.Transport, p.Server, port, p.Family)
		}
		if p.Transport == natclass.TransportTLS {
			if p.CertNotAfter != nil {
				m.pathCertExp.WithLabelValues(p.Server, port, p.Family).Set(unix(*p.CertNotAfter))
			}
			switch {
			case p.CertError != "":
				m.pathCertValid.WithLabelValues(p.Server, port, p.Family).Set(0)
			case p.OK || p.HandshakeMS != nil:
				m.pathCertValid.WithLabelValues(p.Server, port, p.Family).Set(1)
			}
		}
	}
	if c := r.Candidates; c != nil {
		for _, x := range c.Gathered {
			m.candidates.WithLabelValues(x.Type, x.Protocol).Add(1)
		}
	}
	m.turn.set(r.TURN)
	cs := append(m.collectors(), lifetimeCollectors(r.Lifetime)...)
	cs = append(cs, portMappingCollectors(r.PortMapping)...)
	return register(reg, append(cs, nat64Collectors(r.NAT64)...))
}

// RegisterTURNMetrics registers the metrics of the report of natcheck turn
// with reg: natcheck_duration_seconds and the natcheck_turn_* metrics of
// every check.
func RegisterTURNMetrics(reg prometheus.Registerer, r TURNReport) error {
	d := prometheus.NewGauge(prometheus.GaugeOpts{Name: "natcheck_duration_seconds", Help: "Duration of the natcheck run."})
	d.Set(float64(r.DurationMS) / 1000)
	m := newTURNMetrics()
	m.set(r.TURN)
	return register(reg, append([]prometheus.Collector{d}, m.collectors()...))
}

func (m *turnMetrics) set(checks []TURNResult) {
	for _, t := range checks {
		u := t.URL
		m.ok.WithLabelValues(u, t.Transport).Set(b2f(t.OK))
		if !t.OK && t.FailedStep != "" {
			m.failedStep.WithLabelValues(u, t.FailedStep).Set(1)
		}
		if t.ErrorCode != 0 {
			m.errorCode.WithLabelValues(u).Set(float64(t.ErrorCode))
		}
		setMS(m.connect, t.ConnectMS, u)
		setMS(m.tlsHandshake, t.TLSHandshakeMS, u)
		if t.TLS != nil && !t.TLS.NotAfter.IsZero() {
			m.certExpiry.WithLabelValues(u).Set(unix(t.TLS.NotAfter))
			m.certVerified.WithLabelValues(u).Set(b2f(t.TLS.Verified))
		}
		if t.CredentialExpires != nil {
			m.credExpiry.WithLabelValues(u).Set(unix(*t.CredentialExpires))
		}
		setMS(m.allocate, t.AllocateMS, u)
		setMS(m.allocateRTT, t.AllocateRTTMS, u)
		setMS(m.permission, t.PermissionMS, u)
		if d := t.Data; d != nil {
			m.relaySent.WithLabelValues(u).Set(float64(d.Sent))
			m.relayRecv.WithLabelValues(u).Set(float64(d.Received))
			if d.Sent > 0 {
				m.relayLoss.WithLabelValues(u).Set(d.Loss)
			}
			setMS(m.relayRTT, d.RTTMinMS, u, "min")
			setMS(m.relayRTT, d.RTTAvgMS, u, "avg")
			setMS(m.relayRTT, d.RTTMaxMS, u, "max")
		}
		setTri(m.released, t.Released, u)
		if e := t.EndToEnd; e != nil {
			m.e2eOK.WithLabelValues(u).Set(b2f(e.Connected))
			setMS(m.e2eTime, e.TimeMS, u)
		}
		setMS(m.duration, t.DurationMS, u)
		if sk := t.Soak; sk != nil {
			m.setSoak(u, *sk)
		}
	}
}

func (m *turnMetrics) setSoak(u string, sk TURNSoak) {
	tot := sk.Total
	if tot.Sent > 0 {
		m.soakLoss.WithLabelValues(u).Set(tot.Loss)
	}
	m.soakSent.WithLabelValues(u, "channel").Set(float64(tot.ChannelSent))
	m.soakSent.WithLabelValues(u, "indication").Set(float64(tot.IndicationSent))
	m.soakReceived.WithLabelValues(u, "channel").Set(float64(tot.ChannelReceived))
	m.soakReceived.WithLabelValues(u, "indication").Set(float64(tot.IndicationReceived))
	setMS(m.soakRTT, tot.RTTP50MS, u, "0.5")
	setMS(m.soakRTT, tot.RTTP95MS, u, "0.95")
	setMS(m.soakRTT, tot.RTTP99MS, u, "0.99")
	setMS(m.soakJitter, tot.JitterMS, u)
	for _, k := range []string{natclass.RefreshAllocation, natclass.RefreshPermission, natclass.RefreshChannel} {
		m.soakRefreshes.WithLabelValues(u, k, "ok").Set(0)
		m.soakRefreshes.WithLabelValues(u, k, "failed").Set(0)
	}
	for _, r := range sk.Refreshes {
		res := "ok"
		if !r.OK {
			res = "failed"
		}
		m.soakRefreshes.WithLabelValues(u, r.Kind, res).Add(1)
	}
	m.soakFailures.WithLabelValues(u).Set(float64(sk.RefreshFailures))
	m.soakElapsed.WithLabelValues(u).Set(sk.ElapsedS)
}

type natFlag struct {
	name string
	v    natclass.Tri
}

// natFlags lists the yes/no fields of NAT by their JSON names.
func natFlags(n NAT) []natFlag {
	return []natFlag{
		{"behind_nat", n.BehindNAT},
		{"mapping_varies_by_destination", n.MappingVariesByDestination},
		{"port_preservation", n.PortPreservation},
		{"cgnat", n.CGNAT},
		{"alg", n.ALG},
		{"hairpin", n.Hairpin},
		{"tcp", n.TCP},
		{"tcp_mapping_endpoint_independent", n.TCPMappingEndpointIndependent},
		{"tcp_port_preservation", n.TCPPortPreservation},
	}
}

func unix(t time.Time) float64 { return float64(t.UnixMilli()) / 1000 }

// WritePrometheus writes r in the Prometheus text exposition format, for
// node_exporter's textfile collector: the metrics of RegisterMetrics, plus
// natcheck_probe_success (1 when some STUN server answered, as exit code 3
// tells otherwise) and natcheck_run_timestamp_seconds (when the run
// started, to alert on a stale file).
func WritePrometheus(w io.Writer, r Report) error {
	reg := prometheus.NewRegistry()
	success := prometheus.NewGauge(prometheus.GaugeOpts{Name: "natcheck_probe_success",
		Help: "1 when some STUN server answered (the run measured something; exit code other than 3), else 0."})
	success.Set(b2f(r.Measured))
	started := prometheus.NewGauge(prometheus.GaugeOpts{Name: "natcheck_run_timestamp_seconds",
		Help: "When the natcheck run started, in Unix seconds."})
	started.Set(unix(r.StartedAt))
	if err := register(reg, []prometheus.Collector{success, started}); err != nil {
		return err
	}
	if err := RegisterMetrics(reg, r); err != nil {
		return err
	}
	return writeGathered(w, reg)
}

// WriteTURNPrometheus writes the report of natcheck turn in the Prometheus
// text exposition format: the metrics of RegisterTURNMetrics, plus
// natcheck_probe_success (1 when every check passed) and
// natcheck_run_timestamp_seconds.
func WriteTURNPrometheus(w io.Writer, r TURNReport) error {
	reg := prometheus.NewRegistry()
	success := prometheus.NewGauge(prometheus.GaugeOpts{Name: "natcheck_probe_success",
		Help: "1 when every TURN check passed, else 0."})
	success.Set(b2f(r.OK))
	started := prometheus.NewGauge(prometheus.GaugeOpts{Name: "natcheck_run_timestamp_seconds",
		Help: "When the natcheck run started, in Unix seconds."})
	started.Set(unix(r.StartedAt))
	if err := register(reg, []prometheus.Collector{success, started}); err != nil {
		return err
	}
	if err := RegisterTURNMetrics(reg, r); err != nil {
		return err
	}
	return writeGathered(w, reg)
}

func writeGathered(w io.Writer, g prometheus.Gatherer) error {
	mfs, err := g.Gather()
	if err != nil {
		return fmt.Errorf("gather natcheck metrics: %w", err)
	}
	enc := expfmt.NewEncoder(w, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return fmt.Errorf("write natcheck metrics: %w", err)
		}
	}
	return nil
}

// nat64Collectors is natcheck_nat64_detected: 1 with the prefix when the
// run found NAT64 on an IPv6-only network, 0 (prefix "") when it looked
// and found none; none when it did not look (the host has an IPv4 route).
func nat64Collectors(n *natclass.NAT64) []prometheus.Collector {
	if n == nil {
		return nil
	}
	g := gauge("nat64_detected", "1 when this IPv6-only network has NAT64 (prefix from DNS64, RFC 7050, or the well-known prefix a server answered through), 0 when natcheck looked and found none; absent when the host has an IPv4 route.", "prefix", "source")
	prefix := ""
	if n.Detected {
		prefix = n.Prefix.String()
	}
	g.WithLabelValues(prefix, n.Source).Set(b2f(n.Detected))
	return []prometheus.Collector{g}
}
