package turncheck

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/natcheck/natcheck/natclass"
	"github.com/natcheck/natcheck/stunserver"
	"github.com/natcheck/natcheck/stunserver/stuntest"
	"github.com/natcheck/natcheck/turncheck/turntest"
)

var loop6 = netip.MustParseAddr("::1")

// TestCheckIPv6 checks a TURN server on [::1] over UDP, TCP and TLS: the
// allocation over IPv6, an IPv6 relayed address, data to a peer on ::1
// and back, and the end-to-end check between two IPv6 relayed addresses.
func TestCheckIPv6(t *testing.T) {
	t.Parallel()
	srv := turntest.NewServer(t, turntest.Options{IPv6: true})
	for _, raw := range srv.URLs() {
		u := mustURL(t, raw)
		t.Run(u.Transport, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			res := Check(ctx, Server{URL: u, Credentials: longTerm()}, Options{RootCAs: srv.CAPool, EndToEnd: true})
			t.Logf("%+v data=%+v e2e=%+v", res, res.Data, res.EndToEnd)
			if !res.OK {
				t.Fatalf("check failed at %s: %s (%s)", res.FailedStep, res.Error, res.Hint)
			}
			if res.Family != "ipv6" || res.RelayedFamily != "ipv6" || res.Relayed.Addr() != loop6 || res.Server.Addr() != loop6 {
				t.Errorf("family %q relayed %q at %v via server %v; want ipv6 relays on ::1", res.Family, res.RelayedFamily, res.Relayed, res.Server)
			}
			if res.Data == nil || res.Data.Peer.Addr() != loop6 || res.Data.Received != res.Data.Sent {
				t.Errorf("data %+v: want every packet back from a peer on ::1", res.Data)
			}
			e := res.EndToEnd
			if e == nil || !e.Connected || e.Received != e.Sent || !strings.Contains(e.Local, "[::1]:") || !strings.Contains(e.Remote, "[::1]:") {
				t.Errorf("end-to-end %+v: want connected between two relays on ::1", e)
			}
			if w := strings.Join(res.Warnings, "\n"); strings.Contains(w, "TURN clients") {
				t.Errorf("warnings %q: want the end-to-end check done by two ICE agents", w)
			}
		})
	}
}

// TestCheckRelayFamily asks for the relayed address family (RFC 6156
// REQUESTED-ADDRESS-FAMILY) of the other family than the transport's.
func TestCheckRelayFamily(t *testing.T) {
	t.Parallel()
	both := turntest.NewServer(t, turntest.Options{BothFamilies: true})
	v4only := turntest.NewServer(t, turntest.Options{})
	v6 := turntest.NewServer(t, turntest.Options{IPv6: true, BothFamilies: true})
	check := func(t *testing.T, server netip.AddrPort, relayFamily int) natclass.TURNCheck {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		res := Check(ctx, Server{URL: mustURL(t, "turn:"+server.String()), Credentials: longTerm()},
			Options{EndToEnd: true, RelayFamily: relayFamily, StepTimeout: 2 * time.Second})
		t.Logf("%+v data=%+v e2e=%+v", res, res.Data, res.EndToEnd)
		return res
	}
	t.Run("ipv6-relay-over-ipv4", func(t *testing.T) {
		t.Parallel()
		res := check(t, both.UDP, 6)
		if !res.OK {
			t.Fatalf("check failed at %s: %s (%s)", res.FailedStep, res.Error, res.Hint)
		}
		if res.Family != "ipv4" || res.RelayedFamily != "ipv6" || res.Relayed.Addr() != loop6 {
			t.Errorf("family %q relayed %q at %v; want an IPv6 relay on ::1 over IPv4", res.Family, res.RelayedFamily, res.Relayed)
		}
		if res.Data == nil || res.Data.Peer.Addr() != loop6 {
			t.Errorf("data %+v: want a peer on ::1", res.Data)
		}
		if e := res.EndToEnd; e == nil || !e.Connected || !strings.Contains(e.Local, "[::1]:") {
			t.Errorf("end-to-end %+v: want connected between two relays on ::1", e)
		}
		if w := strings.Join(res.Warnings, "\n"); strings.Contains(w, "TURN clients") {
			t.Errorf("warnings %q: want the end-to-end check done by two ICE agents", w)
		}
	})
	t.Run("ipv6-relay-not-offered", func(t *testing.T) {
		t.Parallel()
		res := check(t, v4only.UDP, 6)
		if res.OK || res.FailedStep != natclass.TURNStepAllocate || res.ErrorCode != 508 || !strings.Contains(res.Hint, "ipv6 relay address") {
			t.Errorf("got ok=%v step %q code %d: %s (%s); want allocate failed with 508 and a hint about the family", res.OK, res.FailedStep, res.ErrorCode, res.Error, res.Hint)
		}
	})
	t.Run("ipv4-relay-over-ipv6", func(t *testing.T) {
		t.Parallel()
		// pion/turn's client sends no REQUESTED-ADDRESS-FAMILY for IPv4,
		// and a pion/turn server then relays in the transport's family:
		// the check says it did not get what it asked for.
		res := check(t, v6.UDP, 4)
		if res.RelayedFamily != "ipv6" || !strings.Contains(strings.Join(res.Warnings, "\n"), "asked for an ipv4 relayed address, the server gave ipv6") {
			t.Errorf("relayed %q, warnings %q: want an IPv6 relay and a warning that IPv4 was asked for", res.RelayedFamily, res.Warnings)
		}
	})
}

// TestGatherIPv6 gathers server-reflexive candidates from a STUN server on
// [::1], and relayed candidates on ::1 from a TURN server on [::1], reached
// over IPv6 by the ICE agent.
func TestGatherIPv6(t *testing.T) {
	t.Parallel()
	turntest.SkipWithoutIPv6(t)
	st := stuntest.StartSingle(t, stunserver.Config{Primary: netip.MustParseAddrPort("[::1]:0")})
	srv := turntest.NewServer(t, turntest.Options{IPv6: true})
	stunAddr := st.Primary()
	g := Gather(context.Background(), []string{stunAddr.String()}, []Server{{URL: mustURL(t, srv.URLs()[0]), Credentials: longTerm()}}, Options{StepTimeout: 2 * time.Second})
	t.Logf("%+v", g)
	srflx6, relay6 := 0, 0
	for _, c := range g.Candidates {
		if c.Family != Family(c.Address) || c.Family == "" {
			t.Errorf("candidate %+v: family %q for address %v", c, c.Family, c.Address)
		}
		if c.Type == "srflx" && c.Family == "ipv6" && c.Server == "stun:"+stunAddr.String() {
			srflx6++
		}
		if c.Type == "relay" && c.Family == "ipv6" && c.Address == loop6 {
			relay6++
		}
	}
	if srflx6 == 0 {
		t.Errorf("no IPv6 srflx candidate from stun:%s in %+v", stunAddr, g.Candidates)
	}
	if relay6 == 0 {
		t.Errorf("no IPv6 relay candidate on ::1 in %+v", g.Candidates)
	}
	for _, s := range g.Servers {
		if s.Want == "relay" && (s.Produced == 0 || s.Error != "") {
			t.Errorf("TURN server %+v: want a relay candidate and no error", s)
		}
	}
}

// TestCheckCoturnIPv6 checks a real coturn listening and relaying on ::1
// over UDP, TCP and TLS.
func TestCheckCoturnIPv6(t *testing.T) {
	t.Parallel()
	c := turntest.StartCoturn(t, turntest.CoturnOptions{IPv6: true})
	pool, err := LoadCAFile(c.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, raw := range c.URLs() {
		u := mustURL(t, raw)
		t.Run(u.Transport, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			res := Check(ctx, Server{URL: u, Credentials: longTerm()}, Options{RootCAs: pool, EndToEnd: true})
			t.Logf("%+v data=%+v e2e=%+v", res, res.Data, res.EndToEnd)
			if !res.OK {
				t.Fatalf("check failed at %s: %s (%s)", res.FailedStep, res.Error, res.Hint)
			}
			if res.Family != "ipv6" || res.RelayedFamily != "ipv6" || res.Relayed.Addr() != loop6 {
				t.Errorf("family %q relayed %q at %v; want an IPv6 relay on ::1", res.Family, res.RelayedFamily, res.Relayed)
			}
			if e := res.EndToEnd; e == nil || !e.Connected {
				t.Errorf("end-to-end %+v", e)
			}
		})
	}
}

// TestICERelayTransports: the pair's relay agents reach a server over
// IPv6 only when it is named by an IPv6 literal or by a name with IPv6
// addresses only; IPv4 servers, dual-stack names and names that do not
// resolve stay on IPv4 as before, also with a NAT64 prefix.
func TestICERelayTransports(t *testing.T) {
	r := hostsResolver{
		"turn4.example":  {netip.MustParseAddr("198.19.0.2")},
		"turn46.example": {netip.MustParseAddr("2001:db8::2"), netip.MustParseAddr("198.19.0.2")},
		"turn6.example":  {netip.MustParseAddr("2001:db8::2")},
	}
	const v4, v6, both = "udp4 tcp4", "udp6 tcp6", "udp4 tcp4 udp6 tcp6"
	cases := []struct {
		hosts []string
		nat64 bool
		want  string
	}{
		{[]string{"198.19.0.2"}, false, v4},
		{[]string{"turn4.example"}, false, v4},
		{[]string{"turn46.example"}, false, v4},
		{[]string{"nowhere.example"}, false, v4},
		{[]string{"::ffff:198.19.0.2"}, false, v4},
		{[]string{"turn4.example"}, true, v4},
		{[]string{"2001:db8::2"}, false, v6},
		{[]string{"turn6.example"}, false, v6},
		{[]string{"turn6.example", "2001:db8::3"}, false, v6},
		{[]string{"198.19.0.2", "2001:db8::2"}, false, both},
		{[]string{"turn6.example", "turn46.example"}, false, both},
	}
	for _, c := range cases {
		var servers []Server
		for _, h := range c.hosts {
			u, err := ParseURL("turn:" + bracket(h) + ":3478")
			if err != nil {
				t.Fatal(err)
			}
			servers = append(servers, Server{URL: u})
		}
		o := Options{Resolver: r}
		if c.nat64 {
			o.NAT64 = netip.MustParsePrefix("64:ff9b::/96")
		}
		var got []string
		for _, n := range ICERelayTransports(context.Background(), servers, o) {
			got = append(got, n.String())
		}
		if g := strings.Join(got, " "); g != c.want {
			t.Errorf("%v (NAT64 %v): %s, want %s", c.hosts, c.nat64, g, c.want)
		}
	}
}
