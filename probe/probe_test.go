package probe

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/natcheck/natcheck/natclass"
	"github.com/natcheck/natcheck/stunserver"
)

// startServer starts an RFC 5780 server on 127.0.0.1 and 127.0.0.2.
func startServer(t *testing.T, cfg stunserver.Config) *stunserver.Server {
	t.Helper()
	if !cfg.Primary.IsValid() {
		cfg.Primary = netip.MustParseAddrPort("127.0.0.1:0")
	}
	if !cfg.Alternate.IsValid() && cfg.AdvertiseOther == (netip.AddrPort{}) {
		cfg.Alternate = netip.MustParseAddrPort("127.0.0.2:0")
	}
	s, err := stunserver.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start STUN server: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func target(a netip.AddrPort) Target { return Target{Host: a.Addr().String(), Port: a.Port()} }

func diagnose(t *testing.T, cfg Config) (natclass.Observations, natclass.Result) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	runs := Measure(ctx, cfg, IPv4)
	if len(runs) != 1 || runs[0].Skipped != "" {
		t.Fatalf("runs = %+v", runs)
	}
	return runs[0].Observations, natclass.Classify(runs[0].Observations)
}

func TestLoopbackNoNAT(t *testing.T) {
	s := startServer(t, stunserver.Config{})
	obs, r := diagnose(t, Config{Servers: []Target{target(s.Primary())}})
	if r.Mapping != natclass.BehaviorNone || r.Filtering != natclass.BehaviorNone || r.Type != natclass.TypeOpenInternet {
		t.Fatalf("mapping %s filtering %s type %s; reasons %q", r.Mapping, r.Filtering, r.Type, r.Reasons)
	}
	b := obs.Servers[0].Binding
	if b.Local.Addr().IsUnspecified() || b.Mapped != b.Local {
		t.Errorf("binding local %s mapped %s: want a concrete local address equal to the mapped one", b.Local, b.Mapped)
	}
	if b.Other != s.Alternate() {
		t.Errorf("OTHER-ADDRESS %s, want %s", b.Other, s.Alternate())
	}
	if got := natclass.ChangeRequestSupport(obs, 0); got != natclass.ChangeRequestHonoured {
		t.Errorf("change request support = %q", got)
	}
	if r.ALG != natclass.TriNo {
		t.Errorf("ALG = %s, want no (server sends matching MAPPED-ADDRESS)", r.ALG)
	}
	tests := obs.RFC5780[0]
	if tests.FilteringII.From != s.Alternate() || tests.FilteringIII.From != netip.AddrPortFrom(s.Primary().Addr(), s.Alternate().Port()) {
		t.Errorf("filtering replies from %s and %s", tests.FilteringII.From, tests.FilteringIII.From)
	}
	if tests.FilteringI.Local == b.Local {
		t.Error("filtering tests ran on the mapping socket; they need a fresh one")
	}
}

func TestServerIgnoringChangeRequest(t *testing.T) {
	s := startServer(t, stunserver.Config{IgnoreChangeRequest: true})
	obs, r := diagnose(t, Config{Servers: []Target{target(s.Primary())}})
	if r.Filtering != natclass.BehaviorUnknown || r.Type != natclass.TypeUnknown {
		t.Fatalf("filtering %s type %s; want unknown, never EIF", r.Filtering, r.Type)
	}
	if natclass.ChangeRequestSupport(obs, 0) != natclass.ChangeRequestIgnored {
		t.Errorf("change request support = %q, want ignored", natclass.ChangeRequestSupport(obs, 0))
	}
	if !strings.Contains(strings.Join(r.Reasons, " "), "does not honour CHANGE-REQUEST") {
		t.Errorf("reasons %q", r.Reasons)
	}
}

func TestBogusOtherAddress(t *testing.T) {
	// Single-address server that advertises OTHER-ADDRESS on its own IP.
	s := startServer(t, stunserver.Config{AdvertiseOther: netip.MustParseAddrPort("127.0.0.1:1")})
	obs, r := diagnose(t, Config{Servers: []Target{target(s.Primary())}})
	if len(obs.RFC5780) != 0 {
		t.Errorf("ran RFC 5780 tests against an unusable OTHER-ADDRESS")
	}
	if r.Filtering != natclass.BehaviorUnknown {
		t.Errorf("filtering = %s, want unknown", r.Filtering)
	}
	if r.Mapping != natclass.BehaviorNone {
		t.Errorf("mapping = %s, want none (loopback has no NAT)", r.Mapping)
	}
}

func TestSilentServersAreUDPBlocked(t *testing.T) {
	// Nothing listens on these: the requests go unanswered.
	servers := []Target{{Host: "127.0.0.3", Port: 9}, {Host: "127.0.0.4", Port: 9}}
	obs, r := diagnose(t, Config{Servers: servers, FirstWait: 400 * time.Millisecond})
	if r.UDP || r.Type != natclass.TypeUDPBlocked || r.Verdict.DirectUDP != natclass.LikelihoodImpossible {
		t.Fatalf("udp %v type %s direct %s; reasons %q; binding %+v", r.UDP, r.Type, r.Verdict.DirectUDP, r.Reasons, obs.Servers[0].Binding)
	}
	if b := obs.Servers[0].Binding; b.Sent < 3 || b.Status != natclass.StatusNoReply {
		t.Errorf("binding sent %d times, status %s: want retransmissions and no-reply", b.Sent, b.Status)
	}
}

func TestTimeoutCutsShort(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	runs := Measure(ctx, Config{Servers: []Target{{Host: "127.0.0.3", Port: 9}, {Host: "127.0.0.4", Port: 9}}}, IPv4)
	r := natclass.Classify(runs[0].Observations)
	if r.Type == natclass.TypeUDPBlocked {
		t.Fatalf("a run cut short by its deadline concluded udp-blocked")
	}
	if !strings.Contains(strings.Join(r.Reasons, " "), "--timeout") {
		t.Errorf("reasons %q do not point at --timeout", r.Reasons)
	}
}

type fakeResolver map[string][]netip.Addr

func (f fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := f[host]; ok {
		return a, nil
	}
	return nil, errors.New("no such host")
}

func TestDNSFailureAndNames(t *testing.T) {
	s := startServer(t, stunserver.Config{})
	res := fakeResolver{"stun.test": {s.Primary().Addr()}}
	obs, r := diagnose(t, Config{
		Servers:  []Target{{Host: "stun.test", Port: s.Primary().Port()}, {Host: "missing.test", Port: 3478}},
		Resolver: res,
	})
	if !r.UDP || obs.Servers[0].Address != s.Primary() {
		t.Fatalf("named server not probed: %+v", obs.Servers[0])
	}
	if obs.Servers[1].ResolveError == "" || obs.Servers[1].Binding.Sent != 0 {
		t.Errorf("unresolvable server: %+v", obs.Servers[1])
	}

	_, r = diagnose(t, Config{Servers: []Target{{Host: "missing.test", Port: 3478}}, Resolver: res})
	if r.UDP || !strings.Contains(strings.Join(r.Reasons, " "), "DNS") {
		t.Errorf("DNS failure: udp %v reasons %q", r.UDP, r.Reasons)
	}
}

func TestFamilySkipping(t *testing.T) {
	s := startServer(t, stunserver.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	runs := Measure(ctx, Config{Servers: []Target{target(s.Primary())}})
	if len(runs) != 2 || runs[0].Skipped != "" || runs[1].Skipped == "" {
		t.Fatalf("runs: %+v", runs)
	}
	// Asked for explicitly, IPv6 is reported rather than skipped.
	runs = Measure(ctx, Config{Servers: []Target{target(s.Primary())}}, IPv6)
	if runs[0].Skipped != "" {
		t.Fatalf("explicit IPv6 skipped: %s", runs[0].Skipped)
	}
	if r := natclass.Classify(runs[0].Observations); r.UDP {
		t.Errorf("IPv6 run against an IPv4-only server found UDP")
	}
}

func TestTraceEvents(t *testing.T) {
	s := startServer(t, stunserver.Config{})
	kinds := map[EventKind]int{}
	var mu = make(chan struct{}, 1)
	mu <- struct{}{}
	diagnose(t, Config{Servers: []Target{target(s.Primary())}, Trace: func(e Event) {
		<-mu
		kinds[e.Kind]++
		mu <- struct{}{}
	}})
	<-mu
	if kinds[EventSend] < 7 || kinds[EventReply] < 5 {
		t.Errorf("trace kinds %v: want a send per transaction and replies", kinds)
	}
}

func TestIPv6Loopback(t *testing.T) {
	s, err := stunserver.Start(context.Background(), stunserver.Config{Primary: netip.MustParseAddrPort("[::1]:0")})
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	runs := Measure(ctx, Config{Servers: []Target{target(s.Primary())}, TLSPorts: []uint16{}})
	if len(runs) != 2 || runs[0].Skipped == "" || runs[1].Skipped != "" {
		t.Fatalf("want IPv4 skipped and IPv6 run: %+v", runs)
	}
	r := natclass.Classify(runs[1].Observations)
	if !r.UDP || r.Mapping != natclass.BehaviorNone || r.Family != "ipv6" {
		t.Errorf("IPv6: udp %v mapping %s family %s; reasons %q", r.UDP, r.Mapping, r.Family, r.Reasons)
	}
	if b := runs[1].Observations.Servers[0].Binding; b.Local.Addr() != netip.IPv6Loopback() {
		t.Errorf("IPv6 socket bound to %s, want ::1", b.Local)
	}
}

// TestTwoRFC5780Servers runs the behaviour tests against two servers at
// once: each gets its own fresh filtering socket, and they agree.
func TestTwoRFC5780Servers(t *testing.T) {
	a := startServer(t, stunserver.Config{})
	b := startServer(t, stunserver.Config{Primary: netip.MustParseAddrPort("127.0.0.3:0"), Alternate: netip.MustParseAddrPort("127.0.0.4:0")})
	obs, r := diagnose(t, Config{Servers: []Target{target(a.Primary()), target(b.Primary())}})
	if len(obs.RFC5780) != 2 || obs.RFC5780[0].FilteringI.Local == obs.RFC5780[1].FilteringI.Local {
		t.Fatalf("want two RFC 5780 test sets on separate sockets: %+v", obs.RFC5780)
	}
	if r.Type != natclass.TypeOpenInternet || r.MappingVariesByDestination != natclass.TriNo {
		t.Errorf("type %s varies %s; reasons %q", r.Type, r.MappingVariesByDestination, r.Reasons)
	}
}

// TestALG: a MAPPED-ADDRESS that differs from XOR-MAPPED-ADDRESS is what an
// ALG rewriting packets looks like; no MAPPED-ADDRESS leaves ALG untested.
func TestALG(t *testing.T) {
	rewrite := func(a netip.AddrPort) netip.AddrPort {
		return netip.AddrPortFrom(netip.MustParseAddr("10.9.9.9"), a.Port())
	}
	s := startServer(t, stunserver.Config{MappedAddressOverride: rewrite})
	if _, r := diagnose(t, Config{Servers: []Target{target(s.Primary())}, NoPaths: true}); r.ALG != natclass.TriYes {
		t.Errorf("rewritten MAPPED-ADDRESS: ALG %s, want yes", r.ALG)
	}
	s = startServer(t, stunserver.Config{OmitMappedAddress: true})
	if _, r := diagnose(t, Config{Servers: []Target{target(s.Primary())}, NoPaths: true}); r.ALG != natclass.TriUnknown {
		t.Errorf("no MAPPED-ADDRESS: ALG %s, want unknown (not tested)", r.ALG)
	}
}
