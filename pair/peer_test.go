package pair

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/natcheck/natcheck/natclass"
	"github.com/natcheck/natcheck/rendezvous"
	"github.com/natcheck/natcheck/report"
)

// servePair runs a client engine (first) against a server peer (second)
// over an in-memory room; remote is the client address the rendezvous
// saw.
func servePair(t *testing.T, ps *PeerServer, client Config, remote netip.Addr, pa, pb *pipeEnd) (runResult, runResult) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cs := make(chan runResult, 1)
	go func() { r, err := ps.ServeResult(ctx, remote, pb); cs <- runResult{r, err} }()
	r, err := Run(ctx, client, pa)
	return runResult{r, err}, <-cs
}

func listenPeer(t *testing.T, c PeerServerConfig) *PeerServer {
	t.Helper()
	c.IncludeLoopback = true
	ps, err := ListenPeer(netip.MustParseAddrPort("127.0.0.1:0"), c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ps.Close() })
	return ps
}

// TestServePeer: a client engine connects to the server peer over UDP
// when UDP is offered, and over ICE-TCP when only TCP is.
func TestServePeer(t *testing.T) {
	for _, c := range []struct {
		name      string
		cfg       PeerServerConfig
		wantProto string
		wantLocal string // the client's candidate type
	}{
		{"udp", PeerServerConfig{}, "udp", "host"},
		{"tcp only", PeerServerConfig{NoUDP: true}, "tcp", "host"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ps := listenPeer(t, c.cfg)
			pa, pb := newPipe()
			defer pa.Close()
			client := loopbackConfig(rendezvous.RoleFirst)
			client.ActiveTCP = true
			rc, rs := servePair(t, ps, client, netip.MustParseAddr("127.0.0.1"), pa, pb)
			if rc.err != nil || rs.err != nil {
				t.Fatalf("client: %v; server: %v", rc.err, rs.err)
			}
			if rc.res.Outcome != report.PairDirect {
				t.Fatalf("outcome %q, want direct; phases %+v", rc.res.Outcome, rc.res.Phases)
			}
			sel := rc.res.Selected
			if sel.Local.Protocol != c.wantProto || sel.Remote.Protocol != c.wantProto || sel.Remote.Type != "host" {
				t.Errorf("selected %+v, want %s both ends, the server's a host candidate", sel, c.wantProto)
			}
			wantRemote := ps.UDPAddr().String()
			if c.wantProto == "tcp" {
				wantRemote = ps.TCPAddr().String()
			}
			if sel.Remote.Address != wantRemote {
				t.Errorf("remote %s, want the server's %s", sel.Remote.Address, wantRemote)
			}
			if rc.res.Loss == nil || *rc.res.Loss != 0 {
				t.Errorf("loss %v, want 0: the server echoes every probe", rc.res.Loss)
			}
			p := rc.res.Peer
			if p == nil || !p.ServerPeer || (p.ICETCPPort != 0) != (ps.TCPAddr().Port() != 0) || p.UDP == c.cfg.NoUDP {
				t.Errorf("server summary %+v", p)
			}
			if rs.res.Loss != nil {
				t.Errorf("server sent a burst of its own: loss %v", *rs.res.Loss)
			}
			if ps.Running() != 0 {
				t.Errorf("%d sessions still running", ps.Running())
			}
		})
	}
}

// TestServePeerForeignCandidate: a remote candidate whose IP is not the
// client's is never contacted, over UDP or TCP, and prflx from it is
// not accepted either.
func TestServePeerForeignCandidate(t *testing.T) {
	ps := listenPeer(t, PeerServerConfig{})
	// The stranger: 127.0.0.2, UDP and TCP.
	udp, err := net.ListenPacket("udp4", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	tcp, err := net.Listen("tcp4", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	var contacted atomic.Int32
	go func() {
		buf := make([]byte, 1500)
		for {
			if _, _, err := udp.ReadFrom(buf); err != nil {
				return
			}
			contacted.Add(1)
		}
	}()
	go func() {
		for {
			c, err := tcp.Accept()
			if err != nil {
				return
			}
			contacted.Add(1)
			c.Close()
		}
	}()
	uport := udp.LocalAddr().(*net.UDPAddr).Port
	tport := tcp.Addr().(*net.TCPAddr).Port
	pa, pb := newPipe()
	defer pa.Close()
	// The client adds the stranger's addresses to its candidates, first
	// thing, with the highest priority.
	injected := false
	pa.setFilter(func(m rendezvous.Message) []rendezvous.Message {
		if m.Type != rendezvous.TypeCandidate || injected {
			return []rendezvous.Message{m}
		}
		injected = true
		return []rendezvous.Message{
			{Type: rendezvous.TypeCandidate, Phase: m.Phase, Candidate: fmt.Sprintf("candidate:9 1 udp 2130706431 127.0.0.2 %d typ host", uport)},
			{Type: rendezvous.TypeCandidate, Phase: m.Phase, Candidate: fmt.Sprintf("candidate:8 1 tcp 2130706431 127.0.0.2 %d typ host tcptype passive", tport)},
			m,
		}
	})
	client := loopbackConfig(rendezvous.RoleFirst)
	rc, rs := servePair(t, ps, client, netip.MustParseAddr("127.0.0.1"), pa, pb)
	if rc.err != nil || rs.err != nil {
		t.Fatalf("client: %v; server: %v", rc.err, rs.err)
	}
	if rc.res.Outcome != report.PairDirect {
		t.Fatalf("outcome %q: the client's own candidate should still connect", rc.res.Outcome)
	}
	if !injected {
		t.Fatal("no candidate was injected")
	}
	if n := contacted.Load(); n != 0 {
		t.Errorf("the server sent %d packets or connections to 127.0.0.2, a candidate not at the client's address", n)
	}
}

// TestServePeerWrongRemote: when the client's candidates are all at
// another address than the one the rendezvous saw, the server contacts
// none, and the phase fails.
func TestServePeerWrongRemote(t *testing.T) {
	ps := listenPeer(t, PeerServerConfig{})
	pa, pb := newPipe()
	defer pa.Close()
	client := loopbackConfig(rendezvous.RoleFirst)
	client.PhaseTimeout = time.Second
	rc, rs := servePair(t, ps, client, netip.MustParseAddr("192.0.2.1"), pa, pb)
	// The client gives up first and says bye while the server still waits.
	if rc.err != nil || (rs.err != nil && !errors.Is(rs.err, ErrPeerLeft)) {
		t.Fatalf("client: %v; server: %v", rc.err, rs.err)
	}
	if rc.res.Outcome != report.PairFailed || rs.res.Phases[0].Connected {
		t.Fatalf("outcome %q, server phases %+v: want failed, the server accepting nothing from 127.0.0.1", rc.res.Outcome, rs.res.Phases)
	}
}

// TestPeerPool: sessions beyond the pool's size are turned away with a
// bye that says why, at once.
func TestPeerPool(t *testing.T) {
	ps := listenPeer(t, PeerServerConfig{MaxPeers: 1})
	// Hold the only slot with a session whose client is silent.
	hold, holdPeer := newPipe()
	defer hold.Close()
	ctx, cancel := context.WithCancel(context.Background())
	held := make(chan struct{})
	go func() { ps.Serve(ctx, netip.MustParseAddr("127.0.0.1"), holdPeer); close(held) }()
	for ps.Running() == 0 {
		time.Sleep(time.Millisecond)
	}
	pa, pb := newPipe()
	defer pa.Close()
	_, err := ps.ServeResult(context.Background(), netip.MustParseAddr("127.0.0.1"), pb)
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("error %v, want ErrBusy", err)
	}
	m, err := pa.Recv(context.Background())
	if err != nil || m.Type != rendezvous.TypeBye || !strings.Contains(m.Error, "busy (1 sessions at once)") {
		t.Errorf("client got %+v, %v; want a bye saying the server is busy", m, err)
	}
	cancel()
	<-held
	if ps.Running() != 0 {
		t.Errorf("%d running after the session ended", ps.Running())
	}
}

// TestServerSummary: the server describes itself from its sockets.
func TestServerSummary(t *testing.T) {
	ps := listenPeer(t, PeerServerConfig{Version: "v9"})
	s := ps.pc.Summary
	if !s.UDP || s.TCP != natclass.TriYes || s.ICETCPPort != int(ps.TCPAddr().Port()) || !s.ServerPeer || s.Version != "v9" ||
		len(s.PublicAddresses) != 1 || s.PublicAddresses[0] != ps.UDPAddr().String() || s.Mapping != natclass.BehaviorNone {
		t.Errorf("summary %+v", s)
	}
	if _, err := ListenPeer(netip.MustParseAddrPort("0.0.0.0:0"), PeerServerConfig{}); err == nil || !strings.Contains(err.Error(), "specific IPv4 address") {
		t.Errorf("unspecified address: error %v", err)
	}
}
