package probe

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/transport/v5/vnet"

	"github.com/natcheck/natcheck/internal/vnettest"
	"github.com/natcheck/natcheck/natclass"
)

// TestVnetLifetime measures a vnet NAT whose mappings live 2 s from their
// last outbound packet (vnet renews a mapping on outbound packets only):
// the bounds must bracket 2 s within the precision asked for, inbound
// traffic must be found not to refresh, outbound traffic to refresh.
func TestVnetLifetime(t *testing.T) {
	if testing.Short() {
		t.Skip("takes about 6 s")
	}
	const lifetime = 2 * time.Second
	const precision = 500 * time.Millisecond
	l := newVlab(t, vlabOpts{nat: &vnet.NATType{
		MappingBehavior: vnet.EndpointIndependent, FilteringBehavior: vnet.EndpointAddrPortDependent,
		MappingLifeTime: lifetime,
	}, noPlain: true})
	var mu sync.Mutex
	var updates int
	lt := MeasureLifetime(context.Background(), LifetimeConfig{
		Servers: l.servers, Net: l.client, Max: 4 * time.Second, Precision: precision,
		Progress: func(natclass.Lifetime) { mu.Lock(); updates++; mu.Unlock() },
	})
	t.Logf("lifetime %+v", lt)
	if lt.Error != "" || lt.Partial != "" {
		t.Fatalf("error %q, partial %q", lt.Error, lt.Partial)
	}
	if lt.Lower > lifetime || lt.Upper < lifetime {
		t.Errorf("bounds [%v, %v] do not bracket %v", lt.Lower, lt.Upper, lifetime)
	}
	if w := lt.Upper - lt.Lower; w > precision {
		t.Errorf("bracket %v wider than the precision %v", w, precision)
	}
	if lt.RefreshedByInbound == nil || *lt.RefreshedByInbound {
		t.Errorf("refreshed by inbound = %v, want false (vnet renews on outbound only)", ptrString(lt.RefreshedByInbound))
	}
	if lt.RefreshedByOutbound == nil || !*lt.RefreshedByOutbound {
		t.Errorf("refreshed by outbound = %v, want true", ptrString(lt.RefreshedByOutbound))
	}
	if k := lt.Keepalive(); k <= 0 || k >= lifetime {
		t.Errorf("keepalive %v, want between 0 and %v", k, lifetime)
	}
	mu.Lock()
	defer mu.Unlock()
	// One update per answer, and one a second besides (the run takes
	// more than 4 s: the longest rung is 4 s idle).
	if updates < lt.Probes+2 || lt.Probes == 0 {
		t.Errorf("%d progress updates for %d probes, want one per probe and one a second", updates, lt.Probes)
	}
}

// TestVnetLifetimeInterrupted cancels the measurement during the first
// round: it must end at once with the bounds found so far.
func TestVnetLifetimeInterrupted(t *testing.T) {
	l := newVlab(t, vlabOpts{nat: &vnet.NATType{MappingLifeTime: time.Minute}, noPlain: true})
	ctx, cancel := context.WithCancel(context.Background())
	var once sync.Once
	lt := MeasureLifetime(ctx, LifetimeConfig{
		Servers: l.servers, Net: l.client, Max: time.Minute,
		Progress: func(p natclass.Lifetime) {
			if p.Lower > 0 {
				once.Do(cancel)
			}
		},
	})
	t.Logf("lifetime %+v", lt)
	if lt.Partial != "interrupted" || lt.Error != "" {
		t.Fatalf("partial %q, error %q; want interrupted", lt.Partial, lt.Error)
	}
	if lt.Lower < time.Second || lt.Upper != 0 {
		t.Errorf("bounds [%v, %v], want a lower bound of the first rung (1 s) or more and no upper", lt.Lower, lt.Upper)
	}
}

// TestVnetLifetimeServerWithoutResponsePort: a server that ignores
// RESPONSE-PORT (it answers to the request's source) fails the control with
// an error, not a lifetime.
func TestVnetLifetimeServerWithoutResponsePort(t *testing.T) {
	wan := vnettest.NewWAN(t)
	srvNet := wan.Host("5.6.7.9")
	client := wan.NAT("10.0.0.0/24", "27.1.1.1", &vnet.NATType{}).Host("10.0.0.2")
	wan.Start()
	conn, err := srvNet.ListenPacket("udp4", "5.6.7.9:3478")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	go func() { // answers every Binding request to its source
		buf := make([]byte, 1500)
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			req := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
			if req.Decode() != nil || req.Type != stun.BindingRequest {
				continue
			}
			ua := from.(*net.UDPAddr)
			resp, err := stun.Build(req, stun.BindingSuccess, &stun.XORMappedAddress{IP: ua.IP, Port: ua.Port}, stun.Fingerprint)
			if err == nil {
				_, _ = conn.WriteTo(resp.Raw, from)
			}
		}
	}()
	lt := MeasureLifetime(context.Background(), LifetimeConfig{
		Servers: []Target{{Host: "5.6.7.9", Port: 3478}}, Net: client, Max: 4 * time.Second,
	})
	if lt.Error == "" || lt.Measured() || !strings.Contains(lt.Error, "RESPONSE-PORT") {
		t.Fatalf("got %+v, want an error about RESPONSE-PORT", lt)
	}
	t.Log(lt.Error)
}

func ptrString(b *bool) string {
	if b == nil {
		return "unknown"
	}
	if *b {
		return "true"
	}
	return "false"
}
