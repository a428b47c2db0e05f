package report

import (
	"fmt"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/natcheck/natcheck/natclass"
)

// PortMapping is what the default gateway said to the port mapping
// protocols (UPnP IGD, NAT-PMP, PCP), and, with --portmap, whether a
// mapping let a stranger's packet in.
type PortMapping struct {
	// Summary is the one-line answer: which protocols answered, or "no
	// port mapping protocol answered".
	Summary string `json:"summary"`
	// UPnP is UPnP IGD (v1 or v2).
	UPnP PortMappingProtocol `json:"upnp"`
	// NATPMP is NAT-PMP (RFC 6886).
	NATPMP PortMappingProtocol `json:"nat_pmp"`
	// PCP is the Port Control Protocol (RFC 6887).
	PCP PortMappingProtocol `json:"pcp"`
	// ExternalNotPublic is true when the gateway claims an external
	// address that is not the public address STUN saw (or is not public
	// at all): another NAT lies beyond it (double NAT, CGNAT) and its
	// mappings help nobody on the internet; false when it is the same;
	// null when the gateway claimed none or STUN saw none.
	ExternalNotPublic natclass.Tri `json:"external_not_public"`
	// Mapped is the protocol of the mapping made with --portmap; empty
	// when none was made.
	Mapped string `json:"mapped,omitempty"`
	// MappedExternal is the external address and port the mapping got.
	MappedExternal string `json:"mapped_external,omitempty"`
	// MapError is why --portmap could not make a mapping.
	MapError string `json:"map_error,omitempty"`
}

// PortMappingProtocol is one port mapping protocol's result.
type PortMappingProtocol struct {
	// Answered is true when the gateway answered in this protocol.
	Answered bool `json:"answered"`
	// ExternalAddress is the external address the gateway claims, as it
	// says it (natcheck judges it in external_not_public); empty when it
	// claimed none (PCP tells it only for a mapping).
	ExternalAddress string `json:"external_address"`
	// InboundVerified is true when a packet from an address this host
	// never sent to arrived through a mapping made with this protocol,
	// false when it did not, null when no mapping was tried with it.
	InboundVerified natclass.Tri `json:"inbound_verified"`
	// Error says why the protocol did not answer or what failed.
	Error string `json:"error,omitempty"`
}

// AddPortMapping puts port mapping results and natclass's judgement of
// them into r: the port_mapping object and the judgement's reasons. The
// verdict is natclass.FoldPortMapping's business.
func (r *Report) AddPortMapping(p natclass.PortMapping, j natclass.PortMappingJudgement) {
	conv := func(x natclass.PortMappingProtocol) PortMappingProtocol {
		return PortMappingProtocol{Answered: x.Answered, ExternalAddress: addrStr(x.External), InboundVerified: x.InboundVerified, Error: x.Error}
	}
	r.PortMapping = &PortMapping{
		Summary: j.Summary, UPnP: conv(p.UPnP), NATPMP: conv(p.NATPMP), PCP: conv(p.PCP),
		ExternalNotPublic: j.ExternalNotPublic, Mapped: p.Mapped, MappedExternal: str(p.MappedExternal), MapError: p.MapError,
	}
	r.Reasons = append(r.Reasons, j.Reasons...)
}

// protocols returns the three results with their report names.
func (p *PortMapping) protocols() []struct {
	name string
	r    PortMappingProtocol
} {
	return []struct {
		name string
		r    PortMappingProtocol
	}{{"upnp", p.UPnP}, {"nat_pmp", p.NATPMP}, {"pcp", p.PCP}}
}

var portMapNames = map[string]string{"upnp": "UPnP", "nat_pmp": "NAT-PMP", "pcp": "PCP"}

// portMappingText is the text report's lines for p.
func portMappingText(pal palette, p *PortMapping) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Port mapping: %s\n", p.Summary)
	for _, x := range p.protocols() {
		s := "  " + portMapNames[x.name] + ": "
		if x.r.Answered {
			s += pal.good.Sprint("answers")
		} else {
			s += "no answer"
		}
		if x.r.ExternalAddress != "" {
			s += ", external address " + x.r.ExternalAddress
		}
		switch x.r.InboundVerified {
		case natclass.TriYes:
			s += ", " + pal.good.Sprint("inbound verified")
		case natclass.TriNo:
			s += ", " + pal.bad.Sprint("inbound not verified")
		}
		if x.r.Error != "" && (x.r.Answered || x.r.InboundVerified != natclass.TriUnknown) {
			s += " (" + x.r.Error + ")"
		}
		fmt.Fprintln(&b, s)
	}
	if p.ExternalNotPublic == natclass.TriYes {
		fmt.Fprintln(&b, "  "+pal.warn.Sprint("The gateway's external address is not the public one: its mappings help nobody on the internet"))
	}
	if p.MapError != "" {
		fmt.Fprintf(&b, "  No mapping: %s\n", p.MapError)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// portMappingCollectors are the gauges of r's port mapping results, none
// without them.
func portMappingCollectors(p *PortMapping) []prometheus.Collector {
	if p == nil {
		return nil
	}
	answered := gauge("portmap_answered", "1 when the default gateway answered in the port mapping protocol (upnp, nat_pmp, pcp), else 0.", "protocol")
	verified := gauge("portmap_inbound_verified", "1 when a packet from a stranger arrived through a mapping made with the protocol (natcheck --portmap), 0 when it did not; absent when not tried.", "protocol")
	for _, x := range p.protocols() {
		answered.WithLabelValues(x.name).Set(b2f(x.r.Answered))
		setTri(verified, x.r.InboundVerified, x.name)
	}
	notPublic := prometheus.NewGauge(prometheus.GaugeOpts{Name: "natcheck_portmap_external_not_public",
		Help: "1 when the gateway's claimed external address is not the public address STUN saw (double NAT, CGNAT), 0 when it is; absent when unknown."})
	cs := []prometheus.Collector{answered, verified}
	if p.ExternalNotPublic != natclass.TriUnknown {
		notPublic.Set(b2f(p.ExternalNotPublic == natclass.TriYes))
		cs = append(cs, notPublic)
	}
	return cs
}
