package pair

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/logging"
	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"

	"github.com/natcheck/natcheck/internal/connlimit"
	"github.com/natcheck/natcheck/natclass"
	"github.com/natcheck/natcheck/rendezvous"
)

// Defaults of the server peer.
const (
	// DefaultMaxPeers is how many server-peer sessions run at once.
	DefaultMaxPeers = 4
	// DefaultPeerDuration caps one server-peer session.
	DefaultPeerDuration = 60 * time.Second
)

// ErrBusy means every server-peer session slot is taken.
var ErrBusy = errors.New("the server peer is busy")

// PeerPool bounds the server-peer sessions running at once. Its methods
// are safe for concurrent use.
type PeerPool struct{ slots chan struct{} }

// NewPeerPool returns a pool of max sessions; max <= 0 means
// DefaultMaxPeers.
func NewPeerPool(max int) *PeerPool {
	if max <= 0 {
		max = DefaultMaxPeers
	}
	return &PeerPool{slots: make(chan struct{}, max)}
}

func (p *PeerPool) acquire() bool {
	select {
	case p.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

func (p *PeerPool) release() { <-p.slots }

// Running returns the number of sessions running.
func (p *PeerPool) Running() int { return len(p.slots) }

// PeerConfig configures ServePeer.
type PeerConfig struct {
	// UDPMux serves host candidates over UDP; nil offers no UDP.
	UDPMux ice.UDPMux
	// TCPMux serves passive ICE-TCP host candidates (RFC 6544); nil
	// offers no ICE-TCP. At least one of the two is needed.
	TCPMux ice.TCPMux
	// Pool bounds the sessions at once; nil means no bound here.
	Pool *PeerPool
	// MaxDuration caps a session; zero means DefaultPeerDuration.
	MaxDuration time.Duration
	// PhaseTimeout bounds each phase; zero means DefaultPhaseTimeout.
	PhaseTimeout time.Duration
	// Summary is what the server tells the client about itself; the
	// zero value is made from the muxes' addresses (no NAT, no
	// filtering, UDP and ICE-TCP where offered).
	Summary Summary
	// IncludeLoopback offers the muxes' loopback addresses (tests).
	IncludeLoopback bool
	// LoggerFactory receives pion's logs; nil discards them.
	LoggerFactory logging.LoggerFactory
}

// serverSide is what the engine needs to be the server peer.
type serverSide struct {
	pc     PeerConfig
	remote netip.Addr
}

func (s *serverSide) newAgent(opts []ice.AgentOption) (*ice.Agent, error) {
	var networks []ice.NetworkType
	if s.pc.UDPMux != nil {
		networks = append(networks, ice.NetworkTypeUDP4, ice.NetworkTypeUDP6)
		opts = append(opts, ice.WithUDPMux(s.pc.UDPMux))
	}
	if s.pc.TCPMux != nil {
		networks = append(networks, ice.NetworkTypeTCP4, ice.NetworkTypeTCP6)
		opts = append(opts, ice.WithTCPMux(s.pc.TCPMux))
	}
	remote := s.remote
	opts = append(opts,
		ice.WithNetworkTypes(networks),
		ice.WithCandidateTypes([]ice.CandidateType{ice.CandidateTypeHost}),
		ice.WithDisableActiveTCP(),
		// Checks go only to the address the client reached the
		// rendezvous from: a remote candidate elsewhere, signaled or
		// peer-reflexive, is dropped, so nobody can make the server send
		// to a third party.
		ice.WithRemoteIPFilter(func(ip net.IP) bool {
			a, ok := netip.AddrFromSlice(ip)
			return ok && a.Unmap() == remote
		}),
	)
	a, err := ice.NewAgentWithOptions(opts...)
	if err != nil {
		return nil, fmt.Errorf("creating an ICE agent: %w", err)
	}
	return a, nil
}

// ServePeer is natcheck serve as the second peer of a room: ICE-controlled,
// host candidates only on pc's muxes, checks only towards remote (the
// client's address as the rendezvous saw it), echoing the client's burst.
// It returns when the client is done, within pc.MaxDuration.
func ServePeer(ctx context.Context, remote netip.Addr, conn rendezvous.Conn, pc PeerConfig) (Result, error) {
	if pc.UDPMux == nil && pc.TCPMux == nil {
		return Result{}, errors.New("server peer: no UDP or TCP mux")
	}
	if pc.Pool != nil {
		if !pc.Pool.acquire() {
			bctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			_ = conn.Send(bctx, rendezvous.Message{Type: rendezvous.TypeBye,
				Error: fmt.Sprintf("the server peer is busy (%d sessions at once): try again in a minute", cap(pc.Pool.slots))})
			return Result{}, ErrBusy
		}
		defer pc.Pool.release()
	}
	d := cmpOr(pc.MaxDuration, DefaultPeerDuration)
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	sum := pc.Summary
	if sum.Version == "" && !sum.ServerPeer {
		sum = serverSummary(pc)
	}
	cfg := Config{
		Role: rendezvous.RoleSecond, PeerPresent: true, Wait: d, Summary: sum,
		PhaseTimeout: pc.PhaseTimeout, IncludeLoopback: pc.IncludeLoopback, LoggerFactory: pc.LoggerFactory,
		server: &serverSide{pc: pc, remote: remote.Unmap()},
	}
	return Run(ctx, cfg, conn)
}

// serverSummary describes the server peer from its muxes.
func serverSummary(pc PeerConfig) Summary {
	s := Summary{
		Version: "natcheck serve", NATType: natclass.TypeOpenInternet, Mapping: natclass.BehaviorNone,
		Filtering: natclass.BehaviorNone, MappingVaries: natclass.TriNo, BehindNAT: natclass.TriNo,
		PublicAddresses: []string{}, TCPPortsOpen: []int{}, ServerPeer: true,
	}
	if pc.UDPMux != nil {
		s.UDP = true
		for _, a := range pc.UDPMux.GetListenAddresses() {
			s.PublicAddresses = append(s.PublicAddresses, a.String())
		}
	}
	s.TCP = natclass.TriNo
	if lp, ok := pc.TCPMux.(interface{ LocalAddr() net.Addr }); ok && pc.TCPMux != nil {
		if ta, ok := lp.LocalAddr().(*net.TCPAddr); ok {
			s.TCP = natclass.TriYes
			s.ICETCPPort = ta.Port
			s.TCPPortsOpen = append(s.TCPPortsOpen, ta.Port)
		}
	}
	return s
}

// PeerServer is the server peer on one IP:PORT: a UDP socket and a TCP
// listener, with their muxes and a pool, for natcheck serve --pair-ice.
type PeerServer struct {
	udp net.PacketConn
	tcp net.Listener
	pc  PeerConfig
}

// PeerServerConfig configures ListenPeer.
type PeerServerConfig struct {
	// Version is natcheck's, for the summary.
	Version string
	// MaxPeers bounds the sessions at once; zero means DefaultMaxPeers.
	MaxPeers int
	// MaxDuration caps a session; zero means DefaultPeerDuration.
	MaxDuration time.Duration
	// NoUDP offers ICE-TCP only; NoTCP offers UDP only.
	NoUDP, NoTCP bool
	// IncludeLoopback offers a loopback address (tests).
	IncludeLoopback bool
	// LoggerFactory receives pion's logs; nil discards them.
	LoggerFactory logging.LoggerFactory
	// Net is the network to listen on; nil means the host's.
	Net transport.Net
}

// ListenPeer opens the server peer's UDP socket and TCP listener on addr
// (a specific IPv4 or IPv6 address, as ICE candidates carry it; an
// IPv4-mapped IPv6 address means its IPv4 address). Clients reach it over
// addr's family: those that reach the rendezvous over the other family
// get no pair (checks go only to the address the rendezvous saw).
func ListenPeer(addr netip.AddrPort, c PeerServerConfig) (*PeerServer, error) {
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	switch a := addr.Addr(); {
	case !a.IsValid() || a.IsUnspecified() || a.IsMulticast():
		return nil, fmt.Errorf("--pair-ice %s: give a specific IPv4 address or IPv6 address and port, as the peer's candidates carry it", addr)
	case a.Zone() != "" || a.IsLinkLocalUnicast():
		return nil, fmt.Errorf("--pair-ice %s: a link-local address reaches only its own link: give a global (or unique local) address", addr)
	}
	udpNet, tcpNet := "udp4", "tcp4"
	if addr.Addr().Is6() {
		udpNet, tcpNet = "udp6", "tcp6"
	}
	lf := c.LoggerFactory
	if lf == nil {
		d := logging.NewDefaultLoggerFactory()
		d.Writer = io.Discard
		d.DefaultLogLevel = logging.LogLevelDisabled
		lf = d
	}
	p := &PeerServer{pc: PeerConfig{
		Pool: NewPeerPool(c.MaxPeers), MaxDuration: c.MaxDuration, IncludeLoopback: c.IncludeLoopback, LoggerFactory: lf,
	}}
	nw := c.Net
	if nw == nil {
		std, err := stdnet.NewNet()
		if err != nil {
			return nil, fmt.Errorf("server peer: %w", err)
		}
		nw = std
	}
	if !c.NoUDP {
		udp, err := nw.ListenUDP(udpNet, net.UDPAddrFromAddrPort(addr))
		if err != nil {
			return nil, fmt.Errorf("server peer: %w", err)
		}
		p.udp = udp
		p.pc.UDPMux = ice.NewUDPMuxDefault(ice.UDPMuxParams{UDPConn: udp, Logger: lf.NewLogger("udpmux"), Net: nw})
	}
	if !c.NoTCP {
		tcp, err := nw.ListenTCP(tcpNet, net.TCPAddrFromAddrPort(addr))
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("server peer: %w", err)
		}
		// Strangers may connect: few connections, each closed when
		// silent or old.
		d := cmpOr(c.MaxDuration, DefaultPeerDuration)
		p.tcp = connlimit.NewListener(tcp, connlimit.ListenerConfig{
			MaxConns: 8 * cap(p.pc.Pool.slots), MaxConnsPerSource: 8, FirstTimeout: 10 * time.Second,
			IdleTimeout: 30 * time.Second, MaxAge: d + 10*time.Second,
		})
		p.pc.TCPMux = ice.NewTCPMuxDefault(ice.TCPMuxParams{
			Listener: p.tcp, Logger: lf.NewLogger("tcpmux"), ReadBufferSize: 64,
			FirstStunBindTimeout: 10 * time.Second, AliveDurationForConnFromStun: 10 * time.Second,
		})
	}
	if p.pc.UDPMux == nil && p.pc.TCPMux == nil {
		return nil, errors.New("server peer: neither UDP nor TCP")
	}
	p.pc.Summary = serverSummary(p.pc)
	if c.Version != "" {
		p.pc.Summary.Version = c.Version
	}
	return p, nil
}

// Serve runs one server-peer session (rendezvous.Server's Peer).
func (p *PeerServer) Serve(ctx context.Context, remote netip.Addr, conn rendezvous.Conn) {
	_, _ = ServePeer(ctx, remote, conn, p.pc)
}

// ServeResult is Serve with the session's result, for logs and tests.
func (p *PeerServer) ServeResult(ctx context.Context, remote netip.Addr, conn rendezvous.Conn) (Result, error) {
	return ServePeer(ctx, remote, conn, p.pc)
}

// UDPAddr and TCPAddr are the listening addresses (zero when not offered).
func (p *PeerServer) UDPAddr() netip.AddrPort { return addrPortOf(p.udp) }

// TCPAddr is the ICE-TCP listening address (zero when not offered).
func (p *PeerServer) TCPAddr() netip.AddrPort {
	if p.tcp == nil {
		return netip.AddrPort{}
	}
	ap, _ := netip.ParseAddrPort(p.tcp.Addr().String())
	return ap
}

func addrPortOf(c net.PacketConn) netip.AddrPort {
	if c == nil {
		return netip.AddrPort{}
	}
	ap, _ := netip.ParseAddrPort(c.LocalAddr().String())
	return ap
}

// Running is the number of sessions running.
func (p *PeerServer) Running() int { return p.pc.Pool.Running() }

// Close closes the muxes and their sockets.
func (p *PeerServer) Close() error {
	var errs []error
	if p.pc.UDPMux != nil {
		errs = append(errs, p.pc.UDPMux.Close())
	} else if p.udp != nil {
		errs = append(errs, p.udp.Close())
	}
	if p.pc.TCPMux != nil {
		p.pc.TCPMux.Close()
	}
	if p.tcp != nil {
		if cl, ok := p.tcp.(*connlimit.Listener); ok {
			cl.CloseConns()
		}
		err := p.tcp.Close()
		if err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
