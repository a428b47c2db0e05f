package pair

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/natcheck/natcheck/natclass"
	"github.com/natcheck/natcheck/rendezvous"
	"github.com/natcheck/natcheck/report"
)

// loopbackOnly keeps host candidates on 127.0.0.1: tests send nowhere
// else.
func loopbackOnly(ip net.IP) bool { return ip.Equal(net.IPv4(127, 0, 0, 1)) }

func testSummary(name string) Summary {
	return Summary{Version: name, NATType: natclass.TypeOpenInternet, Mapping: natclass.BehaviorNone,
		Filtering: natclass.BehaviorNone, UDP: true, BehindNAT: natclass.TriNo, PublicAddresses: []string{}, TCPPortsOpen: []int{}}
}

type runResult struct {
	res Result
	err error
}

// runPair runs two engines against each other over an in-memory room and
// returns first's and second's results.
func runPair(t *testing.T, ctx context.Context, a, b Config, pa, pb rendezvous.Conn) (runResult, runResult) {
	t.Helper()
	ca, cb := make(chan runResult, 1), make(chan runResult, 1)
	go func() { r, err := Run(ctx, a, pa); ca <- runResult{r, err} }()
	go func() { r, err := Run(ctx, b, pb); cb <- runResult{r, err} }()
	return <-ca, <-cb
}

func loopbackConfig(role string) Config {
	return Config{
		Room: "test", Role: role, PeerPresent: true, Summary: testSummary(role),
		IncludeLoopback: true, IPFilter: loopbackOnly, PhaseTimeout: 5 * time.Second,
		Wait: 5 * time.Second, Burst: 20, BurstInterval: 5 * time.Millisecond,
	}
}

// TestLoopbackDirect: two engines on loopback connect in the direct phase
// over host candidates, measure the burst, and exchange summaries.
func TestLoopbackDirect(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pa, pb := newPipe()
	defer pa.Close()
	ra, rb := runPair(t, ctx, loopbackConfig(rendezvous.RoleFirst), loopbackConfig(rendezvous.RoleSecond), pa, pb)
	for _, r := range []runResult{ra, rb} {
		if r.err != nil {
			t.Fatalf("%s: %v", r.res.Role, r.err)
		}
		if r.res.Outcome != report.PairDirect {
			t.Fatalf("%s: outcome %q, want direct; phases %+v", r.res.Role, r.res.Outcome, r.res.Phases)
		}
		if len(r.res.Phases) != 1 || !r.res.Phases[0].Connected || r.res.Phases[0].PeerConnected != natclass.TriYes {
			t.Errorf("%s: phases %+v, want one connected direct phase, the peer connected too", r.res.Role, r.res.Phases)
		}
		sel := r.res.Selected
		if sel == nil || sel.Local.Type != "host" || sel.Local.Protocol != "udp" || !strings.HasPrefix(sel.Local.Address, "127.0.0.1:") ||
			!strings.HasPrefix(sel.Remote.Address, "127.0.0.1:") {
			t.Errorf("%s: selected %+v, want host/udp on 127.0.0.1 both ends", r.res.Role, sel)
		}
		if r.res.Loss == nil || *r.res.Loss != 0 || r.res.RTTMS == nil || *r.res.RTTMS <= 0 || r.res.ConnectMS == nil {
			t.Errorf("%s: loss %v rtt %v connect %v, want no loss on loopback and a positive RTT", r.res.Role, r.res.Loss, r.res.RTTMS, r.res.ConnectMS)
		}
		// From both present to connected takes in the summary exchange
		// and the offer: never less than from the offer.
		if p := r.res.PresentToConnectedMS; p == nil || r.res.ConnectMS == nil || *p < *r.res.ConnectMS {
			t.Errorf("%s: present_to_connected_ms %v, connect_ms %v: want it set and at least connect_ms", r.res.Role, p, r.res.ConnectMS)
		}
	}
	if ra.res.Peer == nil || ra.res.Peer.Version != rendezvous.RoleSecond || rb.res.Peer == nil || rb.res.Peer.Version != rendezvous.RoleFirst {
		t.Errorf("summaries not exchanged: first got %+v, second got %+v", ra.res.Peer, rb.res.Peer)
	}
	// Each side's local is the other's remote.
	if ra.res.Selected != nil && rb.res.Selected != nil && ra.res.Selected.Local.Address != rb.res.Selected.Remote.Address {
		t.Errorf("first's local %s is not second's remote %s", ra.res.Selected.Local.Address, rb.res.Selected.Remote.Address)
	}
}

// TestMalformed: a peer that sends a malformed SDP or candidate gets a
// clear error, and the engine stops.
func TestMalformed(t *testing.T) {
	cases := []struct {
		name string
		// mangle rewrites the offer's messages of the first side.
		mangle func(m rendezvous.Message) rendezvous.Message
		want   string
	}{
		{"not SDP", func(m rendezvous.Message) rendezvous.Message {
			if m.Type == rendezvous.TypeOffer {
				m.SDP = "hello"
			}
			return m
		}, "offer SDP: not an SDP"},
		{"no ufrag", func(m rendezvous.Message) rendezvous.Message {
			if m.Type == rendezvous.TypeOffer {
				m.SDP = strings.ReplaceAll(m.SDP, "a=ice-ufrag:", "a=x-ufrag:")
			}
			return m
		}, "no a=ice-ufrag"},
		{"short pwd", func(m rendezvous.Message) rendezvous.Message {
			if m.Type == rendezvous.TypeOffer {
				i := strings.Index(m.SDP, "a=ice-pwd:")
				j := strings.Index(m.SDP[i:], "\r\n")
				m.SDP = m.SDP[:i] + "a=ice-pwd:short" + m.SDP[i+j:]
			}
			return m
		}, "a=ice-pwd: want 22 to 256"},
		{"bad candidate", func(m rendezvous.Message) rendezvous.Message {
			if m.Type == rendezvous.TypeCandidate {
				m.Candidate = "candidate:1 1 udp notanumber 127.0.0.1 9 typ host"
			}
			return m
		}, `candidate "candidate:1 1 udp notanumber`},
		{"bad summary", func(m rendezvous.Message) rendezvous.Message {
			if m.Type == rendezvous.TypeSummary {
				m.Data = []byte(`{"tcp_ports_open":[0]}`)
			}
			return m
		}, "summary: TCP port 0 out of range"},
		{"escape in summary", func(m rendezvous.Message) rendezvous.Message {
			if m.Type == rendezvous.TypeSummary {
				m.Data = []byte(`{"version":"v1\u001b[2J"}`)
			}
			return m
		}, `summary: version "v1\x1b[2J": want at most 64 printable`},
		{"bad public address", func(m rendezvous.Message) rendezvous.Message {
			if m.Type == rendezvous.TypeSummary {
				m.Data = []byte(`{"public_addresses":["nowhere"]}`)
			}
			return m
		}, `summary: public address "nowhere": want IP:port`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			pa, pb := newPipe()
			defer pa.Close()
			pa.setFilter(func(m rendezvous.Message) []rendezvous.Message { return []rendezvous.Message{c.mangle(m)} })
			_, rb := runPair(t, ctx, loopbackConfig(rendezvous.RoleFirst), loopbackConfig(rendezvous.RoleSecond), pa, pb)
			if !errors.Is(rb.err, ErrBadMessage) || !strings.Contains(rb.err.Error(), c.want) {
				t.Fatalf("second: error %v, want ErrBadMessage saying %q", rb.err, c.want)
			}
			if rb.res.Error != rb.err.Error() {
				t.Errorf("result error %q, want the returned error", rb.res.Error)
			}
		})
	}
}

// TestSilentPeer: a peer that joins and then says nothing, or stops after
// its summary, ends the run with a clear error within the timeouts.
func TestSilentPeer(t *testing.T) {
	t.Run("before summary", func(t *testing.T) {
		pa, pb := newPipe()
		defer pa.Close()
		_ = pb // silent
		cfg := loopbackConfig(rendezvous.RoleFirst)
		cfg.Wait = 500 * time.Millisecond
		r, err := Run(context.Background(), cfg, pa)
		if !errors.Is(err, ErrNoPeer) || !strings.Contains(err.Error(), "summary did not come within 500ms") {
			t.Fatalf("error %v, want ErrNoPeer about the summary", err)
		}
		if r.Outcome != report.PairFailed {
			t.Errorf("outcome %q", r.Outcome)
		}
	})
	t.Run("not present", func(t *testing.T) {
		pa, _ := newPipe()
		defer pa.Close()
		cfg := loopbackConfig(rendezvous.RoleFirst)
		cfg.PeerPresent = false
		cfg.Wait = 300 * time.Millisecond
		_, err := Run(context.Background(), cfg, pa)
		if !errors.Is(err, ErrNoPeer) || !strings.Contains(err.Error(), "no peer joined the room within 300ms") {
			t.Fatalf("error %v, want ErrNoPeer", err)
		}
	})
	t.Run("after summary", func(t *testing.T) {
		for role, want := range map[string]string{rendezvous.RoleFirst: "no answer from the peer within 500ms", rendezvous.RoleSecond: "no offer from the peer within 500ms"} {
			pa, pb := newPipe()
			defer pa.Close()
			// The peer sends its summary and nothing more.
			go func() {
				_, _ = pb.Recv(context.Background())
				_ = pb.Send(context.Background(), rendezvous.Message{Type: rendezvous.TypeSummary, Data: []byte(`{"udp":true}`)})
			}()
			cfg := loopbackConfig(role)
			cfg.PhaseTimeout = 500 * time.Millisecond
			r, err := Run(context.Background(), cfg, pa)
			if err != nil {
				t.Fatalf("%s: %v", role, err)
			}
			if r.Outcome != report.PairFailed || len(r.Phases) != 1 || r.Phases[0].Error != want || r.Phases[0].PeerConnected != natclass.TriUnknown {
				t.Errorf("%s: outcome %q phases %+v, want failed: %s", role, r.Outcome, r.Phases, want)
			}
		}
	})
	t.Run("peer leaves", func(t *testing.T) {
		pa, pb := newPipe()
		defer pa.Close()
		go func() {
			_, _ = pb.Recv(context.Background())
			_ = pb.Send(context.Background(), rendezvous.Message{Type: rendezvous.TypeSummary, Data: []byte(`{"udp":true}`)})
			pa.inject(rendezvous.Message{Type: rendezvous.TypePeer, Present: present(false)})
		}()
		cfg := loopbackConfig(rendezvous.RoleSecond)
		_, err := Run(context.Background(), cfg, pa)
		if !errors.Is(err, ErrPeerLeft) {
			t.Fatalf("error %v, want ErrPeerLeft", err)
		}
	})
	t.Run("rendezvous error", func(t *testing.T) {
		pa, _ := newPipe()
		defer pa.Close()
		pa.inject(rendezvous.Message{Type: rendezvous.TypeError, Error: "room expired"})
		_, err := Run(context.Background(), loopbackConfig(rendezvous.RoleSecond), pa)
		if !errors.Is(err, ErrRendezvous) || !strings.Contains(err.Error(), "room expired") {
			t.Fatalf("error %v, want ErrRendezvous: room expired", err)
		}
	})
}

// TestMatched: the outcome against each prediction.
func TestMatched(t *testing.T) {
	for _, c := range []struct {
		predicted, outcome string
		want               bool
	}{
		{"direct", "direct", true}, {"direct", "relay", false}, {"direct", "failed", false},
		{"relay", "relay", true}, {"relay", "failed", true}, {"relay", "direct", false},
		{"unknown", "direct", false}, {"unknown", "relay", false}, {"unknown", "failed", false},
	} {
		if got := matched(c.predicted, c.outcome); got != c.want {
			t.Errorf("matched(%s, %s) = %v, want %v", c.predicted, c.outcome, got, c.want)
		}
	}
}
