package pair

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/transport/v5/vnet"
	"github.com/pion/turn/v5"

	"github.com/natcheck/natcheck/internal/vnettest"
	"github.com/natcheck/natcheck/natclass"
	"github.com/natcheck/natcheck/rendezvous"
	"github.com/natcheck/natcheck/report"
	"github.com/natcheck/natcheck/stunserver"
	"github.com/natcheck/natcheck/turncheck"
	"github.com/natcheck/natcheck/turnserver"
)

const (
	vnetUser     = "pair"
	vnetPassword = "pw-Do-Not-Print-4e1d"
	vnetRealm    = "natcheck.test"
)

// twoNATs is a virtual internet: a STUN server on 1.2.3.4, a TURN server
// on 1.2.3.6, and two sites, A (10.0.1.2 behind 27.1.1.1) and B
// (10.0.2.2 behind 28.1.1.1), each behind a NAT of its own type.
func twoNATs(t *testing.T, natA, natB *vnet.NATType) (a, b *vnet.Net) {
	t.Helper()
	wan := vnettest.NewWAN(t)
	stunNet := wan.Host("1.2.3.4")
	turnNet := wan.Host("1.2.3.6")
	a = wan.NAT("10.0.1.0/24", "27.1.1.1", natA).Host("10.0.1.2")
	b = wan.NAT("10.0.2.0/24", "28.1.1.1", natB).Host("10.0.2.2")
	wan.Start()
	ss, err := stunserver.Start(context.Background(), stunserver.Config{Net: stunNet, Primary: netip.MustParseAddrPort("1.2.3.4:3478")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ss.Close() })
	ts, err := turnserver.Start(context.Background(), turnserver.Config{
		Net: turnNet, UDP: []netip.AddrPort{netip.MustParseAddrPort("1.2.3.6:3478")}, Realm: vnetRealm,
		Users:     map[string][]byte{vnetUser: turn.GenerateAuthKey(vnetUser, vnetRealm, vnetPassword)},
		Unlimited: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ts.Close() })
	return a, b
}

var (
	fullCone       = &vnet.NATType{MappingBehavior: vnet.EndpointIndependent, FilteringBehavior: vnet.EndpointIndependent}
	portRestricted = &vnet.NATType{MappingBehavior: vnet.EndpointIndependent, FilteringBehavior: vnet.EndpointAddrPortDependent}
	symmetric      = &vnet.NATType{MappingBehavior: vnet.EndpointAddrPortDependent, FilteringBehavior: vnet.EndpointAddrPortDependent}
)

// natSummary is the summary a diagnosis behind nat gives, written out by
// hand.
func natSummary(nat *vnet.NATType) Summary {
	s := testSummary("vnet")
	s.BehindNAT = natclass.TriYes
	switch nat {
	case fullCone:
		s.NATType, s.Mapping, s.Filtering = natclass.TypeFullCone, natclass.BehaviorEndpointIndependent, natclass.BehaviorEndpointIndependent
	case portRestricted:
		s.NATType, s.Mapping, s.Filtering = natclass.TypePortRestrictedCone, natclass.BehaviorEndpointIndependent, natclass.BehaviorAddressAndPortDependent
	case symmetric:
		s.NATType, s.Mapping, s.Filtering = natclass.TypeSymmetric, natclass.BehaviorAddressAndPortDependent, natclass.BehaviorAddressAndPortDependent
		s.MappingVaries = natclass.TriYes
	}
	return s
}

func vnetConfig(role string, n *vnet.Net, nat *vnet.NATType, withTURN bool) Config {
	c := Config{
		Room: "vnet", Role: role, PeerPresent: true, Summary: natSummary(nat), Net: n,
		STUN: []string{"1.2.3.4:3478"}, PhaseTimeout: 4 * time.Second, Wait: 10 * time.Second,
		Burst: 10, BurstInterval: 5 * time.Millisecond,
	}
	if withTURN {
		u, err := turncheck.ParseURL("turn:1.2.3.6:3478")
		if err != nil {
			panic(err)
		}
		c.TURN = []turncheck.Server{{URL: u, Credentials: turncheck.Credentials{User: vnetUser, Password: turncheck.NewSecret(vnetPassword)}}}
		c.Summary.HasTURN = true
	}
	return c
}

// TestVnetNATs: two sites behind pion's NATs. Where hole punching works
// (an endpoint-independent mapping on both sides) the direct phase
// connects over server-reflexive or peer-reflexive candidates; between two
// symmetric NATs it fails, and then only the relay phase connects, and
// only when a side has a TURN server.
func TestVnetNATs(t *testing.T) {
	cases := []struct {
		name       string
		natA, natB *vnet.NATType
		turnA      bool
		want       string
		wantPhases int
		predicted  string
	}{
		{"full cone both", fullCone, fullCone, false, report.PairDirect, 1, "direct"},
		{"port restricted both", portRestricted, portRestricted, false, report.PairDirect, 1, "direct"},
		{"port restricted and full cone, TURN unused", portRestricted, fullCone, true, report.PairDirect, 1, "direct"},
		{"symmetric both", symmetric, symmetric, false, report.PairFailed, 1, "relay"},
		{"symmetric both, TURN at A", symmetric, symmetric, true, report.PairRelay, 2, "relay"},
		{"symmetric and port restricted, TURN at A", symmetric, portRestricted, true, report.PairRelay, 2, "relay"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			na, nb := twoNATs(t, c.natA, c.natB)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			pa, pb := newPipe()
			defer pa.Close()
			ra, rb := runPair(t, ctx, vnetConfig(rendezvous.RoleFirst, na, c.natA, c.turnA), vnetConfig(rendezvous.RoleSecond, nb, c.natB, false), pa, pb)
			for _, r := range []runResult{ra, rb} {
				if r.err != nil {
					t.Fatalf("%s: %v", r.res.Role, r.err)
				}
				if r.res.Outcome != c.want || len(r.res.Phases) != c.wantPhases {
					t.Fatalf("%s: outcome %q after %d phases, want %q after %d; phases %+v", r.res.Role, r.res.Outcome, len(r.res.Phases), c.want, c.wantPhases, r.res.Phases)
				}
				// The NAT types here behave as the diagnosis says, so the
				// prediction holds.
				if r.res.Predicted != c.predicted || !r.res.Matched || r.res.PredictionRule == "" {
					t.Errorf("%s: predicted %q (matched %v, rule %q), want %q, matched", r.res.Role, r.res.Predicted, r.res.Matched, r.res.PredictionRule, c.predicted)
				}
			}
			switch c.want {
			case report.PairDirect:
				// Through the NATs: no host candidate is reachable from the
				// other site, so A's remote is at B's public address.
				if !strings.HasPrefix(ra.res.Selected.Remote.Address, "28.1.1.1:") {
					t.Errorf("A's remote %+v, want at B's NAT 28.1.1.1", ra.res.Selected.Remote)
				}
			case report.PairRelay:
				if ra.res.Selected.Local.Type != "relay" || !strings.HasPrefix(ra.res.Selected.Local.Address, "1.2.3.6:") ||
					rb.res.Selected.Remote.Type != "relay" {
					t.Errorf("selected A %+v, B %+v: want A's relay candidate on 1.2.3.6", ra.res.Selected, rb.res.Selected)
				}
				// ICE gives up at the phase timeout, or earlier once every
				// pair failed after end-of-candidates: either says why.
				if e := ra.res.Phases[0].Error; !strings.Contains(e, "did not connect") && !strings.Contains(e, "failed on every candidate pair") {
					t.Errorf("direct phase error %q", e)
				}
			case report.PairFailed:
				if ra.res.Selected != nil || ra.res.Phases[0].Error == "" {
					t.Errorf("failed: selected %+v, error %q", ra.res.Selected, ra.res.Phases[0].Error)
				}
			}
			if c.want != report.PairFailed && (ra.res.Loss == nil || *ra.res.Loss != 0) {
				t.Errorf("loss %v, want 0 in a lossless vnet", ra.res.Loss)
			}
		})
	}
}
