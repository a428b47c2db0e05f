package probe

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pion/transport/v5/vnet"

	"github.com/natcheck/natcheck/internal/vnettest"
	"github.com/natcheck/natcheck/natclass"
	"github.com/natcheck/natcheck/stunserver"
)

// vlab is a virtual internet: an RFC 5780 server on 1.2.3.4 and 1.2.3.5, a
// plain server on 5.6.7.9, and one client, behind a NAT or not.
type vlab struct {
	client  *vnet.Net
	servers []Target
	extIP   netip.Addr
}

type vlabOpts struct {
	nat        *vnet.NATType // nil: client directly on the WAN
	loss       int           // percent, each way, for the client's traffic
	blockUDP   bool
	noPlain    bool
	serverConf stunserver.Config
	// lanServer adds a plain STUN server on the client's side of the NAT
	// (10.0.0.3:3478): it sees the client's own address, the others the
	// NAT's, so no single mapping behaviour explains what one socket sees.
	lanServer bool
}

func newVlab(t testing.TB, o vlabOpts) *vlab {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	wan := vnettest.NewWAN(t)
	l := &vlab{extIP: netip.MustParseAddr("27.1.1.1")}
	rfcNet := wan.Host("1.2.3.4", "1.2.3.5")
	var plainNet *vnet.Net
	if !o.noPlain {
		plainNet = wan.Host("5.6.7.9")
	}
	if o.nat == nil {
		l.client = wan.LossyHost(o.loss, "27.1.1.1")
	} else {
		lan := wan.NAT("10.0.0.0/24", l.extIP.String(), o.nat)
		l.client = lan.LossyHost(o.loss, "10.0.0.2")
		if o.lanServer {
			lanNet := lan.Host("10.0.0.3")
			ls, err := stunserver.Start(context.Background(), stunserver.Config{Net: lanNet, Primary: netip.MustParseAddrPort("10.0.0.3:3478")})
			must(err)
			t.Cleanup(func() { _ = ls.Close() })
		}
	}
	if o.loss > 0 {
		// Loss towards the servers too: requests are lost as well as replies.
		wan.AddChunkFilter(func(c vnet.Chunk) bool {
			return c.Network() != "udp" || lossRand(o.loss)
		})
	}
	if o.blockUDP {
		wan.AddChunkFilter(func(c vnet.Chunk) bool { return c.Network() != "udp" })
	}
	wan.Start()

	sc := o.serverConf
	sc.Net = rfcNet
	sc.Primary = netip.MustParseAddrPort("1.2.3.4:3478")
	if !sc.Alternate.IsValid() {
		sc.Alternate = netip.MustParseAddrPort("1.2.3.5:3479")
	}
	sc.ReflectionRate = -1 // repeated runs from one NAT address must not be rate limited
	rs, err := stunserver.Start(context.Background(), sc)
	must(err)
	t.Cleanup(func() { _ = rs.Close() })
	l.servers = append(l.servers, Target{Host: "1.2.3.4", Port: 3478})
	if !o.noPlain {
		ps, err := stunserver.Start(context.Background(), stunserver.Config{Net: plainNet, Primary: netip.MustParseAddrPort("5.6.7.9:3478")})
		must(err)
		t.Cleanup(func() { _ = ps.Close() })
		l.servers = append(l.servers, Target{Host: "5.6.7.9", Port: 3478})
	}
	if o.lanServer && o.nat != nil {
		l.servers = append(l.servers, Target{Host: "10.0.0.3", Port: 3478})
	}
	return l
}

func (l *vlab) run(t testing.TB, timeout time.Duration) (natclass.Observations, natclass.Result) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	runs := Measure(ctx, Config{Servers: l.servers, Net: l.client}, IPv4)
	if runs[0].Skipped != "" {
		t.Fatalf("skipped: %s", runs[0].Skipped)
	}
	return runs[0].Observations, natclass.Classify(runs[0].Observations)
}

// TestVnetNineCombinations runs the whole engine through vnet NATs of every
// mapping x filtering combination. The expected answers are written out,
// one row per cell: filtering is measured in every cell (behind a mapping
// that varies by destination the controls carry RESPONSE-PORT, so they
// prove the server's alternate address there too), and the classic type
// follows RFC 3489's names.
func TestVnetNineCombinations(t *testing.T) {
	const (
		eim, adm, apdm = vnet.EndpointIndependent, vnet.EndpointAddrDependent, vnet.EndpointAddrPortDependent
		ei, ad, apd    = natclass.BehaviorEndpointIndependent, natclass.BehaviorAddressDependent, natclass.BehaviorAddressAndPortDependent
	)
	for _, c := range []struct {
		mapping, filtering         vnet.EndpointDependencyType
		wantMapping, wantFiltering natclass.Behavior
		wantType                   natclass.Type
	}{
		{eim, eim, ei, ei, natclass.TypeFullCone},
		{eim, adm, ei, ad, natclass.TypeRestrictedCone},
		{eim, apdm, ei, apd, natclass.TypePortRestrictedCone},
		{adm, eim, ad, ei, natclass.TypeSymmetric},
		{adm, adm, ad, ad, natclass.TypeSymmetric},
		{adm, apdm, ad, apd, natclass.TypeSymmetric},
		{apdm, eim, apd, ei, natclass.TypeSymmetric},
		{apdm, adm, apd, ad, natclass.TypeSymmetric},
		{apdm, apdm, apd, apd, natclass.TypeSymmetric},
	} {
		t.Run(fmt.Sprintf("%s/%s", c.wantMapping, c.wantFiltering), func(t *testing.T) {
			l := newVlab(t, vlabOpts{nat: &vnet.NATType{MappingBehavior: c.mapping, FilteringBehavior: c.filtering}})
			obs, r := l.run(t, 10*time.Second)
			if r.Mapping != c.wantMapping || r.Filtering != c.wantFiltering || r.Type != c.wantType || !r.UDP {
				t.Fatalf("mapping %s filtering %s type %s udp %v; want %s %s %s\nreasons %q",
					r.Mapping, r.Filtering, r.Type, r.UDP, c.wantMapping, c.wantFiltering, c.wantType, r.Reasons)
			}
			if r.BehindNAT != natclass.TriYes || r.PublicAddresses[0].Addr() != l.extIP {
				t.Errorf("behind NAT %s, public %v", r.BehindNAT, r.PublicAddresses)
			}
			if r.PortPreservation != natclass.TriNo {
				t.Errorf("port preservation %s: vnet does not preserve ports", r.PortPreservation)
			}
			for _, s := range obs.Servers {
				if !s.Binding.Replied() {
					t.Errorf("server %s did not answer", s.Name)
				}
			}
		})
	}
}

func TestVnetNoNAT(t *testing.T) {
	l := newVlab(t, vlabOpts{})
	_, r := l.run(t, 10*time.Second)
	if r.Type != natclass.TypeOpenInternet || r.BehindNAT != natclass.TriNo || r.CGNAT != natclass.TriNo {
		t.Fatalf("type %s behind NAT %s cgnat %s; reasons %q", r.Type, r.BehindNAT, r.CGNAT, r.Reasons)
	}
}

func TestVnetUDPBlocked(t *testing.T) {
	l := newVlab(t, vlabOpts{blockUDP: true, nat: &vnet.NATType{}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	runs := Measure(ctx, Config{Servers: l.servers, Net: l.client, FirstWait: 600 * time.Millisecond}, IPv4)
	r := natclass.Classify(runs[0].Observations)
	if r.UDP || r.Type != natclass.TypeUDPBlocked || r.Verdict.DirectUDP != natclass.LikelihoodImpossible {
		t.Fatalf("udp %v type %s direct %s; reasons %q", r.UDP, r.Type, r.Verdict.DirectUDP, r.Reasons)
	}
}

func TestVnetCGNAT(t *testing.T) {
	// A NAT whose outside is itself in the shared address space.
	wan := vnettest.NewWAN(t)
	srvNet := wan.Host("1.2.3.4", "1.2.3.5")
	cgn := wan.NAT("100.64.0.0/24", "27.1.1.1", &vnet.NATType{})
	client := cgn.NAT("10.0.0.0/24", "100.64.0.5", &vnet.NATType{}).Host("10.0.0.2")
	wan.Start()
	s, err := stunserver.Start(context.Background(), stunserver.Config{Net: srvNet,
		Primary: netip.MustParseAddrPort("1.2.3.4:3478"), Alternate: netip.MustParseAddrPort("1.2.3.5:3479")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	runs := Measure(ctx, Config{Servers: []Target{{Host: "1.2.3.4", Port: 3478}}, Net: client}, IPv4)
	r := natclass.Classify(runs[0].Observations)
	// vnet NATs chain: the public server sees 27.1.1.1 and cannot know
	// about the inner NAT. CGNAT is flagged only when the mapped address
	// itself is private or shared; "no" would be a guess, so: unknown.
	if r.CGNAT != natclass.TriUnknown || r.BehindNAT != natclass.TriYes {
		t.Errorf("cgnat %s behind NAT %s", r.CGNAT, r.BehindNAT)
	}
}

// TestVnetLossNoWrongVerdict repeats the diagnosis with 20% loss each way
// behind the four kinds of issue 10 (full cone, restricted, port-restricted,
// symmetric): unknown is allowed, a wrong answer is not.
func TestVnetLossNoWrongVerdict(t *testing.T) {
	if testing.Short() {
		t.Skip("loss test repeats the diagnosis")
	}
	const runs, loss = 8, 20
	cases := []struct {
		nat       vnet.NATType
		mapping   natclass.Behavior
		filtering natclass.Behavior
	}{
		{vnet.NATType{MappingBehavior: vnet.EndpointIndependent, FilteringBehavior: vnet.EndpointIndependent},
			natclass.BehaviorEndpointIndependent, natclass.BehaviorEndpointIndependent},
		{vnet.NATType{MappingBehavior: vnet.EndpointIndependent, FilteringBehavior: vnet.EndpointAddrDependent},
			natclass.BehaviorEndpointIndependent, natclass.BehaviorAddressDependent},
		{vnet.NATType{MappingBehavior: vnet.EndpointIndependent, FilteringBehavior: vnet.EndpointAddrPortDependent},
			natclass.BehaviorEndpointIndependent, natclass.BehaviorAddressAndPortDependent},
		{vnet.NATType{MappingBehavior: vnet.EndpointAddrPortDependent, FilteringBehavior: vnet.EndpointAddrPortDependent},
			natclass.BehaviorAddressAndPortDependent, natclass.BehaviorAddressAndPortDependent},
	}
	for _, c := range cases {
		unknown, lossSeen, mostSilentSends := 0, 0, 0
		for i := range runs {
			l := newVlab(t, vlabOpts{nat: &c.nat, loss: loss})
			obs, r := l.run(t, 10*time.Second)
			for _, tt := range obs.RFC5780 {
				if f := tt.FilteringII; f.Status == natclass.StatusNoReply {
					mostSilentSends = max(mostSilentSends, f.Sent)
				}
			}
			if (r.Mapping != natclass.BehaviorUnknown && r.Mapping != c.mapping) ||
				(r.Filtering != natclass.BehaviorUnknown && r.Filtering != c.filtering) {
				t.Errorf("run %d: wrong answer mapping %s filtering %s (want %s %s); reasons %q",
					i, r.Mapping, r.Filtering, c.mapping, c.filtering, r.Reasons)
			}
			if r.Mapping == natclass.BehaviorUnknown || r.Filtering == natclass.BehaviorUnknown {
				unknown++
			}
			if r.UDPLoss != nil && r.UDPLoss.Lost > 0 {
				lossSeen++
			}
		}
		t.Logf("%s/%s with %d%% loss each way: %d of %d runs unknown, none wrong; loss measured in %d runs", c.mapping, c.filtering, loss, unknown, runs, lossSeen)
		if unknown > runs/2 {
			t.Errorf("%d of %d runs unknown: retransmission is not doing its job", unknown, runs)
		}
		if lossSeen == 0 {
			t.Errorf("no run measured any loss at %d%% each way", loss)
		}
		// Where the change-IP test is meant to go unanswered, the loss
		// seen must have made the engine send more than one window's worth
		// before reading the silence.
		if c.filtering != natclass.BehaviorEndpointIndependent && mostSilentSends <= changeRetransPerWin {
			t.Errorf("silent filtering tests sent at most %d times at %d%% loss: the window was never extended", mostSilentSends, loss)
		}
	}
}

// TestVnetHairpin runs the opt-in hairpinning test. A vnet NAT sends a
// packet for its own public address up to its parent, which sends it back:
// it hairpins, and the mapping socket's opener makes that visible whatever
// the filtering (without it, filtering would decide the answer).
func TestVnetHairpin(t *testing.T) {
	for _, filtering := range []vnet.EndpointDependencyType{vnet.EndpointIndependent, vnet.EndpointAddrPortDependent} {
		l := newVlab(t, vlabOpts{nat: &vnet.NATType{MappingBehavior: vnet.EndpointIndependent, FilteringBehavior: filtering}})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		runs := Measure(ctx, Config{Servers: l.servers, Net: l.client, Hairpin: true}, IPv4)
		cancel()
		obs := runs[0].Observations
		if obs.Hairpin == nil || obs.Hairpin.Dest.Addr() != l.extIP {
			t.Fatalf("hairpin probe %+v: want one sent to the public address %s", obs.Hairpin, l.extIP)
		}
		if r := natclass.Classify(obs); r.Hairpin != natclass.TriYes {
			t.Errorf("filtering %v: hairpin %s, want yes", filtering, r.Hairpin)
		}
	}
	// Without --hairpin nothing is sent to our own address.
	l := newVlab(t, vlabOpts{nat: &vnet.NATType{}})
	if obs, r := l.run(t, 10*time.Second); obs.Hairpin != nil || r.Hairpin != natclass.TriUnknown {
		t.Errorf("hairpin ran without being asked: %+v", obs.Hairpin)
	}
}

// TestVnetNoUnsolicitedReplies holds the ordering rule: no server endpoint
// is asked to send to a socket's public address before that socket has had
// an answer from that endpoint, if the socket ever talks to it. (A router
// that accepts unsolicited input would otherwise record the early packet in
// conntrack and give the socket another port towards that endpoint.) The
// filtering socket is asked for replies from endpoints it never talks to,
// which the rule allows.
func TestVnetNoUnsolicitedReplies(t *testing.T) {
	p := netip.MustParseAddrPort("1.2.3.4:3478")
	a := netip.MustParseAddrPort("1.2.3.5:3479")
	for _, nat := range []*vnet.NATType{
		nil,
		{MappingBehavior: vnet.EndpointIndependent, FilteringBehavior: vnet.EndpointIndependent},
		{MappingBehavior: vnet.EndpointAddrPortDependent, FilteringBehavior: vnet.EndpointIndependent},
	} {
		l := newVlab(t, vlabOpts{nat: nat})
		var mu sync.Mutex
		var events []Event
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		runs := Measure(ctx, Config{Servers: l.servers, Net: l.client, Trace: func(e Event) {
			mu.Lock()
			events = append(events, e)
			mu.Unlock()
		}}, IPv4)
		cancel()
		if r := natclass.Classify(runs[0].Observations); r.Filtering == natclass.BehaviorUnknown {
			t.Fatalf("NAT %+v: filtering unknown, the controls did not run; reasons %q", nat, r.Reasons)
		}
		mu.Lock()
		// The endpoints each socket sends plain requests to, at any time.
		talks := map[[2]netip.AddrPort]bool{}
		for _, e := range events {
			if (e.Kind == EventSend || e.Kind == EventRetransmit) && !e.ChangeIP && !e.ChangePort {
				talks[[2]netip.AddrPort{e.Socket, e.Peer}] = true
			}
		}
		answered := map[[2]netip.AddrPort]bool{}
		checked := 0
		for _, e := range events {
			switch e.Kind {
			case EventReply:
				answered[[2]netip.AddrPort{e.Socket, e.Peer}] = true
			case EventSend, EventRetransmit:
				if !e.ChangeIP && !e.ChangePort {
					continue
				}
				if e.Peer != p {
					t.Fatalf("change request sent to %v, want the primary %v", e.Peer, p)
				}
				from := a
				if !e.ChangeIP {
					from = netip.AddrPortFrom(p.Addr(), a.Port())
				}
				key := [2]netip.AddrPort{e.Socket, from}
				if talks[key] {
					checked++
					if !answered[key] {
						t.Errorf("NAT %+v: socket %s (%v) asked for a reply from %v (%s) before %v had answered it", nat, e.SocketName, e.Socket, from, e.Test, from)
					}
				}
			}
		}
		mu.Unlock()
		t.Logf("NAT %+v: %d events, %d controls checked", nat, len(events), checked)
		if checked == 0 {
			t.Errorf("NAT %+v: no control was sent from a socket that talks to the alternate address: the rule was not exercised", nat)
		}
	}
}

// TestVnetResample: when the mapping socket's samples contradict each other
// (here a STUN server on the LAN sees the host's own address and the
// public ones the NAT's), the engine samples again on a fresh socket; as
// that contradicts itself too, the mapping is unknown and said to have
// changed, never "symmetric".
func TestVnetResample(t *testing.T) {
	l := newVlab(t, vlabOpts{nat: &vnet.NATType{MappingBehavior: vnet.EndpointIndependent, FilteringBehavior: vnet.EndpointAddrPortDependent}, lanServer: true})
	obs, r := l.run(t, 10*time.Second)
	if len(obs.Resample) < 3 {
		t.Fatalf("resample %+v: want Test I to each server again", obs.Resample)
	}
	first := obs.Servers[0].Binding.Local
	for _, p := range obs.Resample {
		if p.Local == first || !p.Local.IsValid() {
			t.Errorf("resample from %v: want a fresh socket, not the mapping socket %v", p.Local, first)
		}
	}
	if r.Mapping != natclass.BehaviorUnknown || r.Type != natclass.TypeUnknown || !r.MappingChanged || r.MappingVariesByDestination != natclass.TriUnknown {
		t.Errorf("mapping %s type %s changed %v varies %s; reasons %q", r.Mapping, r.Type, r.MappingChanged, r.MappingVariesByDestination, r.Reasons)
	}
	// Without the LAN server nothing contradicts and nothing is resampled.
	l = newVlab(t, vlabOpts{nat: &vnet.NATType{MappingBehavior: vnet.EndpointIndependent, FilteringBehavior: vnet.EndpointAddrPortDependent}})
	if obs, _ := l.run(t, 10*time.Second); obs.Resample != nil {
		t.Errorf("resampled without a contradiction: %+v", obs.Resample)
	}
}
