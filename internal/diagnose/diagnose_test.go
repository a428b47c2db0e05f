package diagnose

import (
	"context"
	"testing"
	"time"

	"github.com/natcheck/natcheck/natclass"
	"github.com/natcheck/natcheck/probe"
	"github.com/natcheck/natcheck/stunserver"
	"github.com/natcheck/natcheck/stunserver/stuntest"
)

// TestRun runs the whole pipeline against an RFC 5780 server on loopback:
// no NAT, nothing filters, and the report says so with what natclass
// decided (the family that leads, measured, the verdict) copied into it.
func TestRun(t *testing.T) {
	s := stuntest.Start(t, stunserver.Config{ReflectionRate: -1})
	p := s.Primary()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg := probe.Config{Servers: []probe.Target{{Host: p.Addr().String(), Port: p.Port()}}, NoPaths: true}
	r := Run(ctx, cfg, "test") // both families, IPv6 skipped: the server has none
	if !r.Measured || !r.UDP || r.Family != "ipv4" || r.Version != "test" {
		t.Fatalf("measured %v udp %v family %q version %q", r.Measured, r.UDP, r.Family, r.Version)
	}
	if r.NAT.Mapping != natclass.BehaviorNone || r.NAT.Type != natclass.TypeOpenInternet || r.Verdict.DirectUDP != natclass.LikelihoodLikely {
		t.Errorf("nat %+v verdict %+v; reasons %q", r.NAT, r.Verdict, r.Reasons)
	}
	if len(r.Families) != 2 || r.Families[1].Skipped == "" {
		t.Errorf("families %+v: want IPv6 skipped (the server has no IPv6 address)", r.Families)
	}
	if len(r.Servers) != 1 || r.Servers[0].ChangeRequest != natclass.ChangeRequestHonoured || r.Servers[0].RFC5780 != natclass.TriYes {
		t.Errorf("servers %+v", r.Servers)
	}

	// TURN checks fold into the verdict through natclass: none verified.
	AddTURN(&r, []natclass.TURNCheck{{URL: "turn:127.0.0.1:9", Transport: "udp", FailedStep: "allocate"}}, nil)
	if r.Verdict.RelayVerified == nil || len(r.Verdict.RelayVerified) != 0 || len(r.TURN) != 1 {
		t.Errorf("after AddTURN: relay_verified %v, %d TURN results", r.Verdict.RelayVerified, len(r.TURN))
	}
}
