package pair

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/natcheck/natcheck/rendezvous"
	"github.com/natcheck/natcheck/report"
)

// TestCandidateFlood: a hostile peer that trickles hundreds of candidates,
// each at another address, makes this side send ICE checks to at most
// maxRemoteCandidates of them: the peer cannot turn natcheck pair into a
// scanner of the user's network.
func TestCandidateFlood(t *testing.T) {
	const n = 3 * maxRemoteCandidates
	var contacted atomic.Int32
	ports := make([]int, n)
	for i := range ports {
		c, err := net.ListenPacket("udp4", "127.0.0.2:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ports[i] = c.LocalAddr().(*net.UDPAddr).Port
		go func() {
			buf := make([]byte, 1500)
			if _, _, err := c.ReadFrom(buf); err == nil {
				contacted.Add(1)
			}
		}()
	}
	pa, pb := newPipe()
	defer pa.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// The hostile peer: the first member, offering, then trickling n
	// candidates once the victim has answered.
	go func() {
		_ = pb.Send(ctx, rendezvous.Message{Type: rendezvous.TypeSummary, Data: []byte(`{"udp":true}`)})
		sdp, _ := offerSDP("hostileufrag", "hostilepasswordhostilepassword", 1)
		_ = pb.Send(ctx, rendezvous.Message{Type: rendezvous.TypeOffer, Phase: report.PhaseDirect, SDP: sdp})
		for {
			m, err := pb.Recv(ctx)
			if err != nil {
				return
			}
			if m.Type == rendezvous.TypeAnswer {
				break
			}
		}
		for i, p := range ports {
			_ = pb.Send(ctx, rendezvous.Message{Type: rendezvous.TypeCandidate, Phase: report.PhaseDirect,
				Candidate: fmt.Sprintf("candidate:%d 1 udp 2130706431 127.0.0.2 %d typ host", i, p)})
		}
		for {
			if _, err := pb.Recv(ctx); err != nil {
				return
			}
		}
	}()
	cfg := loopbackConfig(rendezvous.RoleSecond)
	cfg.PhaseTimeout = 2 * time.Second
	r, err := Run(ctx, cfg, pa)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if r.Outcome != report.PairFailed {
		t.Errorf("outcome %q, want failed", r.Outcome)
	}
	if got := contacted.Load(); got > maxRemoteCandidates {
		t.Errorf("%d addresses of the peer's %d candidates were sent ICE checks, want at most %d", got, n, maxRemoteCandidates)
	}
}
