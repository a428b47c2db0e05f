package diagnose

import (
	"context"
	"net"
	"net/netip"
	"time"

	"github.com/natcheck/natcheck/natclass"
	"github.com/natcheck/natcheck/portmap"
	"github.com/natcheck/natcheck/probe"
	"github.com/natcheck/natcheck/report"
)

// PortMap configures port mapping in RunWith.
type PortMap struct {
	// Config says where the gateway is (its zero value: the default
	// gateways from the routing table); nil turns port mapping off.
	Config *portmap.Config
	// Map also makes a mapping, tests from outside that a stranger's
	// packet arrives through it, and deletes it (natcheck --portmap).
	Map bool
	// InboundTimeout bounds the inbound test (zero: 2 s).
	InboundTimeout time.Duration
}

// RunWith is Run with port mapping: detection runs in parallel with the
// STUN probes (within portmap's budget); with pm.Map a mapping is made
// after them, tested from outside and deleted again, also when ctx ends.
func RunWith(ctx context.Context, cfg probe.Config, pm PortMap, version string, families ...probe.Family) report.Report {
	if pm.Config == nil {
		return Run(ctx, cfg, version, families...)
	}
	det := make(chan portmap.Result, 1)
	go func() { det <- portmap.Detect(ctx, *pm.Config) }()
	start := time.Now()
	runs := probe.Measure(ctx, cfg, families...)
	in := make([]report.Input, 0, len(runs))
	results := make([]natclass.Result, 0, len(runs))
	for _, run := range runs {
		res := natclass.Result{Family: string(run.Family), Skipped: run.Skipped, NAT64: run.Observations.NAT64}
		if run.Skipped == "" {
			res = natclass.Classify(run.Observations)
		}
		in = append(in, report.Input{Observations: run.Observations, Result: res})
		results = append(results, res)
	}
	d := <-det
	r := report.Build(version, start, time.Since(start), in, natclass.Combine(results))

	p := portMapping(d)
	var public netip.Addr
	for _, res := range results {
		if res.Family == string(probe.IPv4) && len(res.PublicAddresses) > 0 {
			public = res.PublicAddresses[0].Addr()
		}
	}
	if pm.Map {
		mapAndVerify(ctx, pm, d, r, &p)
	}
	j := natclass.JudgePortMapping(p, public)
	if r.Family == string(probe.IPv4) {
		r.Verdict = natclass.FoldPortMapping(r.Verdict, j)
	}
	r.AddPortMapping(p, j)
	r.DurationMS = time.Since(start).Milliseconds()
	return r
}

func portMapping(d portmap.Result) natclass.PortMapping {
	conv := func(x portmap.ProtocolResult) natclass.PortMappingProtocol {
		return natclass.PortMappingProtocol{Answered: x.Answered, External: x.External, Error: x.Error, ResultCode: x.ResultCode}
	}
	return natclass.PortMapping{UPnP: conv(d.UPnP), NATPMP: conv(d.NATPMP), PCP: conv(d.PCP), NoGateway: d.NoGateway}
}

// inboundServer is an IPv4 server that advertised OTHER-ADDRESS (RFC
// 5780) and so should honour RESPONSE-PORT.
func inboundServer(r report.Report) (netip.AddrPort, bool) {
	for _, s := range r.Servers {
		if s.Family != string(probe.IPv4) || s.RFC5780 != natclass.TriYes {
			continue
		}
		if a, err := netip.ParseAddrPort(s.Address); err == nil {
			return a, true
		}
	}
	return netip.AddrPort{}, false
}

// mapAndVerify maps a fresh local socket with the first protocol that
// answered detection (then the others), tests it from outside and deletes
// the mapping before returning.
func mapAndVerify(ctx context.Context, pm PortMap, d portmap.Result, r report.Report, p *natclass.PortMapping) {
	server, ok := inboundServer(r)
	if !ok {
		p.MapError = "no IPv4 STUN server that honours RESPONSE-PORT (RFC 5780) answered, so a mapping could not be tested from outside; none was made"
		return
	}
	var order []portmap.Protocol
	for _, proto := range []portmap.Protocol{portmap.PCP, portmap.NATPMP, portmap.UPnP} {
		if d.Get(proto).Answered {
			order = append(order, proto)
		}
	}
	if len(order) == 0 {
		p.MapError = "no port mapping protocol answered"
		return
	}
	sock, err := net.ListenUDP("udp4", nil)
	if err != nil {
		p.MapError = err.Error()
		return
	}
	defer sock.Close()
	port := uint16(sock.LocalAddr().(*net.UDPAddr).Port)
	m, err := portmap.Map(ctx, *pm.Config, portmap.MapRequest{InternalPort: port, Lifetime: portmap.MaxLifetime, Protocols: order})
	if err != nil {
		p.MapError = err.Error()
		return
	}
	defer m.Delete(ctx)
	p.Mapped = string(m.Protocol)
	p.MappedExternal = m.External
	proto := protoOf(p, m.Protocol)
	if !proto.External.IsValid() && m.External.Addr().IsValid() {
		proto.External = m.External.Addr()
	}
	timeout := pm.InboundTimeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	got, err := probe.VerifyInbound(ctx, sock, server, m.External.Port(), timeout)
	proto.InboundVerified = got
	if err != nil {
		proto.Error = err.Error()
	}
	if err := m.Delete(ctx); err != nil {
		proto.Error = joinErr(proto.Error, "deleting the mapping: "+err.Error())
	}
}

func protoOf(p *natclass.PortMapping, proto portmap.Protocol) *natclass.PortMappingProtocol {
	switch proto {
	case portmap.UPnP:
		return &p.UPnP
	case portmap.NATPMP:
		return &p.NATPMP
	}
	return &p.PCP
}

func joinErr(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}
