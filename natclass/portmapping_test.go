package natclass

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestJudgePortMapping(t *testing.T) {
	pub := netip.MustParseAddr("203.0.113.5")
	cases := []struct {
		name      string
		pm        PortMapping
		public    netip.Addr
		notPublic Tri
		verified  string
		summary   string
	}{
		{"nothing", PortMapping{NoGateway: "no default gateway"}, pub, TriUnknown, "",
			"no port mapping protocol answered (no default gateway)"},
		{"same address", PortMapping{NATPMP: PortMappingProtocol{Answered: true, External: pub}, PCP: PortMappingProtocol{Answered: true}}, pub, TriNo, "",
			"the gateway answers nat-pmp, pcp"},
		{"double NAT", PortMapping{UPnP: PortMappingProtocol{Answered: true, External: netip.MustParseAddr("192.168.0.2")}}, pub, TriYes, "",
			"the gateway answers upnp; its external address is not the public one"},
		{"private, no STUN", PortMapping{UPnP: PortMappingProtocol{Answered: true, External: netip.MustParseAddr("100.64.1.2")}}, netip.Addr{}, TriYes, "",
			"the gateway answers upnp; its external address is not the public one"},
		{"public, no STUN", PortMapping{UPnP: PortMappingProtocol{Answered: true, External: pub}}, netip.Addr{}, TriUnknown, "",
			"the gateway answers upnp"},
		{"verified", PortMapping{PCP: PortMappingProtocol{Answered: true, External: pub, InboundVerified: TriYes}, Mapped: PortMapPCP}, pub, TriNo, PortMapPCP,
			"the gateway answers pcp; a pcp mapping let a stranger's packet in"},
		// An exposed host behind a modem: the claim is not public, but the
		// inbound test came from beyond both NATs.
		{"verified behind another NAT", PortMapping{PCP: PortMappingProtocol{Answered: true, External: netip.MustParseAddr("100.64.0.2"), InboundVerified: TriYes}, Mapped: PortMapPCP}, pub, TriYes, PortMapPCP,
			"the gateway answers pcp; a pcp mapping let a stranger's packet in; its external address is not the public one"},
		{"network failure", PortMapping{NATPMP: PortMappingProtocol{Answered: true, ResultCode: 3, Error: "the gateway refused: nat-pmp result 3 (network failure)"}}, pub, TriUnknown, "",
			"the gateway answers nat-pmp"},
		{"not verified", PortMapping{UPnP: PortMappingProtocol{Answered: true, External: pub, InboundVerified: TriNo}, Mapped: PortMapUPnP}, pub, TriNo, "",
			"the gateway answers upnp; a upnp mapping was made, but no stranger's packet came through it"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			j := JudgePortMapping(c.pm, c.public)
			if j.ExternalNotPublic != c.notPublic || j.Verified != c.verified || j.Summary != c.summary {
				t.Fatalf("got %+v", j)
			}
			reasons := strings.Join(j.Reasons, "\n")
			if c.verified != "" && strings.Contains(reasons, "helps nobody") {
				t.Errorf("a verified mapping, yet the reasons say it helps nobody: %s", reasons)
			}
			if c.name == "network failure" && !strings.Contains(reasons, "probably lies beyond it") {
				t.Errorf("NAT-PMP network failure without the double NAT hint: %q", reasons)
			}
		})
	}
}

func TestFoldPortMapping(t *testing.T) {
	sym := Verdict{Summary: "Direct UDP unlikely: symmetric NAT.", Peers: []PeerRoute{
		{Peer: PeerOpen, Route: RouteDirect}, {Peer: PeerPortRestrictedCone, Route: RouteRelay}, {Peer: PeerSymmetric, Route: RouteRelay}, {Peer: PeerUDPBlocked, Route: RouteRelay}}}
	orig := slices.Clone(sym.Peers)
	v := FoldPortMapping(sym, PortMappingJudgement{Verified: PortMapNATPMP, ExternalNotPublic: TriNo})
	want := []PeerRoute{{Peer: PeerOpen, Route: RouteDirect}, {Peer: PeerPortRestrictedCone, Route: RouteDirect}, {Peer: PeerSymmetric, Route: RouteDirect}, {Peer: PeerUDPBlocked, Route: RouteRelay}}
	if !slices.Equal(v.Peers, want) || !strings.Contains(v.Summary, "browsers' WebRTC does not") {
		t.Fatalf("got %+v", v)
	}
	if !slices.Equal(sym.Peers, orig) {
		t.Fatal("the input verdict's peers changed")
	}
	// In a verdict over both families, the rows made direct name IPv4.
	both := Verdict{Peers: []PeerRoute{{Peer: PeerOpen, Route: RouteDirect, Family: "ipv4"},
		{Peer: PeerPortRestrictedCone, Route: RouteProbablyDirect, Family: "ipv6"}, {Peer: PeerUDPBlocked, Route: RouteRelay, Family: "ipv6"}}}
	v = FoldPortMapping(both, PortMappingJudgement{Verified: PortMapPCP, ExternalNotPublic: TriNo})
	want = []PeerRoute{{Peer: PeerOpen, Route: RouteDirect, Family: "ipv4"},
		{Peer: PeerPortRestrictedCone, Route: RouteDirect, Family: "ipv4"}, {Peer: PeerUDPBlocked, Route: RouteRelay, Family: "ipv6"}}
	if !slices.Equal(v.Peers, want) {
		t.Errorf("both families: got %+v; want %+v", v.Peers, want)
	}
	if v := FoldPortMapping(sym, PortMappingJudgement{}); !slices.Equal(v.Peers, orig) || v.Summary != sym.Summary {
		t.Fatalf("no mapping changed the verdict: %+v", v)
	}
	// Verified behind another NAT (an exposed host): the proof came from
	// beyond both NATs, so it folds all the same.
	if v := FoldPortMapping(sym, PortMappingJudgement{Verified: PortMapUPnP, ExternalNotPublic: TriYes}); !slices.Equal(v.Peers, []PeerRoute{{Peer: PeerOpen, Route: RouteDirect}, {Peer: PeerPortRestrictedCone, Route: RouteDirect}, {Peer: PeerSymmetric, Route: RouteDirect}, {Peer: PeerUDPBlocked, Route: RouteRelay}}) {
		t.Fatalf("verified behind another NAT: got %+v", v.Peers)
	}
}
