package turncheck

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/turn/v5"

	"github.com/natcheck/natcheck/natclass"
	"github.com/natcheck/natcheck/turncheck/turntest"
)

// soakServer is a pion/turn server on 127.0.0.1 with short lifetimes
// (allocations and permissions of 4 s), so that a soak of a few seconds
// sees several refreshes. refuse makes it refuse every authenticated
// request (401), drop makes relayed addresses swallow every packet.
type soakServer struct {
	url           string
	refuse, drop  atomic.Bool
	authenticated atomic.Int64
}

func newSoakServer(t *testing.T) *soakServer {
	t.Helper()
	s := &soakServer{}
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	key := turn.GenerateAuthKey(turntest.User, turntest.Realm, turntest.Password)
	srv, err := turn.NewServer(turn.ServerConfig{
		Realm: turntest.Realm,
		AuthHandler: func(ra *turn.RequestAttributes) (string, []byte, bool) {
			if s.refuse.Load() || ra.Username != turntest.User {
				return "", nil, false
			}
			s.authenticated.Add(1)
			return ra.Username, key, true
		},
		AllocationLifetime: 4 * time.Second,
		PermissionTimeout:  4 * time.Second,
		PacketConnConfigs: []turn.PacketConnConfig{{
			PacketConn:            pc,
			RelayAddressGenerator: &dropGen{RelayAddressGeneratorStatic: turn.RelayAddressGeneratorStatic{RelayAddress: net.IPv4(127, 0, 0, 1), Address: "127.0.0.1"}, drop: &s.drop},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	s.url = "turn:" + pc.LocalAddr().String()
	return s
}

type dropGen struct {
	turn.RelayAddressGeneratorStatic
	drop *atomic.Bool
}

func (g *dropGen) AllocatePacketConn(c turn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	pc, a, err := g.RelayAddressGeneratorStatic.AllocatePacketConn(c)
	if err != nil {
		return nil, nil, err
	}
	return switchConn{pc, g.drop}, a, nil
}

// switchConn drops everything while drop is set.
type switchConn struct {
	net.PacketConn
	drop *atomic.Bool
}

func (c switchConn) WriteTo(b []byte, to net.Addr) (int, error) {
	if c.drop.Load() {
		return len(b), nil
	}
	return c.PacketConn.WriteTo(b, to)
}

func runSoak(t *testing.T, s *soakServer, d time.Duration, mid func()) natclass.TURNCheck {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	progress := 0
	o := Options{Soak: &SoakOptions{Duration: d, MaxLoss: 0.05, PermissionRefresh: 1500 * time.Millisecond, minute: 2 * time.Second,
		Progress: func(url, partial string) {
			progress++
			if progress == 3 && mid != nil {
				mid()
			}
		}}}
	res := Check(ctx, Server{URL: mustURL(t, s.url), Credentials: longTerm()}, o)
	if res.Soak == nil || res.Data == nil || res.Data.Received == 0 {
		t.Fatalf("quick check failed or no soak: %+v", res)
	}
	if progress < 3 {
		t.Errorf("progress called %d times in a %s soak", progress, d)
	}
	t.Logf("refreshes %+v", res.Soak.Refreshes)
	for _, m := range res.Soak.Minutes {
		t.Logf("span %d: %+v loss %.3f", m.Minute, m.SoakStats, m.Loss())
	}
	t.Logf("total %+v loss %.3f", res.Soak.Total, res.Soak.Total.Loss())
	return res
}

func count(rs []natclass.TURNRefresh, kind string, ok bool) int {
	n := 0
	for _, r := range rs {
		if r.Kind == kind && r.OK == ok {
			n++
		}
	}
	return n
}

func TestSoakRefreshes(t *testing.T) {
	s := newSoakServer(t)
	res := runSoak(t, s, 8*time.Second, nil)
	t.Log(res.Warnings)
	sk := res.Soak
	// Allocations of 4 s are refreshed every 2 s, permissions every 1.5 s:
	// at least 3 of each in 8 s, and the channel bound once.
	if n := count(sk.Refreshes, natclass.RefreshAllocation, true); n < 3 {
		t.Errorf("%d allocation refreshes ok, want >= 3", n)
	}
	if n := count(sk.Refreshes, natclass.RefreshPermission, true); n < 3 {
		t.Errorf("%d permission refreshes ok, want >= 3", n)
	}
	if n := count(sk.Refreshes, natclass.RefreshChannel, true); n < 1 {
		t.Errorf("%d channel bindings ok, want >= 1", n)
	}
	if f := sk.RefreshFailures(); f != 0 || !res.OK {
		t.Errorf("%d refreshes failed on a healthy server (ok %v: %s)", f, res.OK, res.Error)
	}
	tot := sk.Total
	// 10 packets a second per stream for 8 s.
	if tot.ChannelSent < 70 || tot.IndicationSent < 70 || tot.Sent != tot.ChannelSent+tot.IndicationSent {
		t.Errorf("sent %+v, want about 80 per stream", tot)
	}
	if tot.Received != tot.Sent || tot.ChannelReceived == 0 || tot.IndicationReceived == 0 {
		t.Errorf("lost packets on loopback: %+v", tot)
	}
	if tot.RTTP50 <= 0 || tot.RTTP50 > tot.RTTP95 || tot.RTTP95 > tot.RTTP99 {
		t.Errorf("rtt quantiles %v %v %v", tot.RTTP50, tot.RTTP95, tot.RTTP99)
	}
	if len(sk.Minutes) < 4 || sk.Interrupted {
		t.Errorf("%d spans of 2 s in 8 s (interrupted %v)", len(sk.Minutes), sk.Interrupted)
	}
}

func TestSoakRefusedRefresh(t *testing.T) {
	s := newSoakServer(t)
	res := runSoak(t, s, 6*time.Second, func() { s.refuse.Store(true) })
	sk := res.Soak
	if count(sk.Refreshes, natclass.RefreshAllocation, false) == 0 {
		t.Errorf("no failed allocation refresh after the server began refusing: %+v", sk.Refreshes)
	}
	if res.OK || res.FailedStep != natclass.TURNStepSoak || res.Error == "" {
		t.Errorf("ok %v, failed step %q, error %q: want a failed soak", res.OK, res.FailedStep, res.Error)
	}
	for _, r := range sk.Refreshes {
		if !r.OK && r.Error == "" {
			t.Errorf("failed refresh without an error: %+v", r)
		}
	}
}

func TestSoakPathDrops(t *testing.T) {
	s := newSoakServer(t)
	res := runSoak(t, s, 6*time.Second, func() { s.drop.Store(true) })
	sk := res.Soak
	if l := sk.Total.Loss(); l < 0.3 {
		t.Errorf("loss %.2f after the relay began dropping at about 3 s of 6", l)
	}
	if f := sk.RefreshFailures(); f != 0 {
		t.Errorf("%d refreshes failed; only data was dropped", f)
	}
	if res.OK || res.FailedStep != natclass.TURNStepSoak || res.Error == "" {
		t.Errorf("ok %v, failed step %q, error %q: want a failed soak", res.OK, res.FailedStep, res.Error)
	}
	if first, last := sk.Minutes[0], sk.Minutes[len(sk.Minutes)-1]; first.Loss() != 0 || last.Loss() != 1 {
		t.Errorf("loss first span %.2f, last %.2f: want 0 then 1", first.Loss(), last.Loss())
	}
}

// TestSoakCoturn: coturn with allocations of 4 s and permissions of 4 s
// sees several refreshes of each in 8 s, all accepted, and no loss.
func TestSoakCoturn(t *testing.T) {
	c := turntest.StartCoturn(t, turntest.CoturnOptions{Extra: []string{"max-allocate-lifetime=4", "permission-lifetime=4"}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	o := Options{Soak: &SoakOptions{Duration: 8 * time.Second, MaxLoss: 0.05, PermissionRefresh: 1500 * time.Millisecond}}
	res := Check(ctx, Server{URL: mustURL(t, c.URLs()[0]), Credentials: longTerm()}, o)
	if res.Soak == nil {
		t.Fatalf("no soak: %+v", res)
	}
	sk := res.Soak
	t.Logf("lifetime %v, refreshes %+v, total %+v", res.Lifetime, sk.Refreshes, sk.Total)
	if res.Lifetime != 4*time.Second {
		t.Errorf("lifetime %v, want coturn's max-allocate-lifetime of 4s", res.Lifetime)
	}
	if n := count(sk.Refreshes, natclass.RefreshAllocation, true); n < 3 {
		t.Errorf("%d allocation refreshes ok, want >= 3", n)
	}
	if n := count(sk.Refreshes, natclass.RefreshPermission, true); n < 3 {
		t.Errorf("%d permission refreshes ok, want >= 3", n)
	}
	if !res.OK || sk.RefreshFailures() != 0 || sk.Total.Received != sk.Total.Sent || sk.Total.ChannelReceived == 0 || sk.Total.IndicationReceived == 0 {
		t.Errorf("ok %v (%s), %d refreshes failed, total %+v", res.OK, res.Error, sk.RefreshFailures(), sk.Total)
	}
}
