// Package lab builds network-namespace NAT topologies with nftables and
// coturn for natcheck's integration tests.
//
// A Lab is three network namespaces joined by veth pairs:
//
//	client (198.18.1.2) --lan-- router (198.18.1.1 | 198.19.0.1) --wan-- internet (198.19.0.2, .3, .4)
//
// The router applies one Mode and one InputPolicy with nftables; the
// internet namespace runs coturn as an RFC 5780 STUN server on 198.19.0.2
// and 198.19.0.3 (ports 3478 and 3479) that is also a TURN server over UDP,
// TCP and TLS, and a second, plain STUN server (no OTHER-ADDRESS, like
// Google's) on 198.19.0.4:3478.
// Every address lies in 198.18.0.0/15, the benchmarking range of RFC 2544,
// and no packet leaves the namespaces.
//
// Namespace names carry the owning process id, so a later run removes the
// namespaces of a run that died without cleaning up.
package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Mode is a router behaviour.
type Mode string

// Router behaviours.
const (
	// Routed forwards everything without NAT or filtering.
	Routed Mode = "routed"
	// Firewall forwards without NAT; inbound packets pass only when they
	// belong to a connection the client started (conntrack).
	Firewall Mode = "firewall"
	// OneToOne maps the client 1:1 to its own public address 198.19.0.10
	// (snat and dnat), with no filtering: EIM and EIF with preserved ports.
	OneToOne Mode = "onetoone"
	// Restricted maps the client 1:1 to its own public address 198.19.0.11
	// (snat and dnat, ports kept: endpoint-independent mapping) and filters
	// by address: an inbound UDP packet passes only from an IP address the
	// client has sent to (from any port), recorded in an nftables dynamic
	// set (a restricted cone: EIM + ADF).
	Restricted Mode = "restricted"
	// Masquerade is a typical home router: nftables masquerade and a
	// stateful forward filter.
	Masquerade Mode = "masquerade"
	// Symmetric is masquerade with fully-random source ports.
	Symmetric Mode = "symmetric"
	// UDPBlocked is masquerade with all forwarded UDP dropped; TCP passes.
	UDPBlocked Mode = "udpblocked"
	// TLS443Only is masquerade with all forwarded UDP dropped and only TCP
	// to port 443 let out: SYNs to any other port are dropped (not
	// rejected), as on hotel and corporate networks.
	TLS443Only Mode = "tls443only"
)

// BlocksUDP reports whether the router drops all forwarded UDP.
func (m Mode) BlocksUDP() bool { return m == UDPBlocked || m == TLS443Only }

// Modes returns every router behaviour, in a stable order.
func Modes() []Mode {
	return []Mode{Routed, Firewall, OneToOne, Restricted, Masquerade, Symmetric, UDPBlocked, TLS443Only}
}

// InputPolicy is what the router does with unsolicited packets addressed
// to itself (its input chain): packets that belong to no connection, such
// as a STUN server's reply that arrives before the client sent to that
// server endpoint.
type InputPolicy string

// Router input policies.
const (
	// InputDrop drops them (counted): a router with a firewall on its own
	// address. The zero value "" means InputDrop.
	InputDrop InputPolicy = "drop"
	// InputAccept accepts them (counted), as a bare Linux box or a Docker
	// host does (input chain policy accept). conntrack then records such a
	// packet as a connection to the router, and masquerade must give the
	// client another port when it later sends to that endpoint (issue 10).
	InputAccept InputPolicy = "accept"
)

// InputPolicies returns both input policies, drop first.
func InputPolicies() []InputPolicy { return []InputPolicy{InputDrop, InputAccept} }

// validInput reports whether p is an input policy ("" included).
func validInput(p InputPolicy) bool { return p == "" || p == InputDrop || p == InputAccept }

// Addresses of the topology. All of them lie in 198.18.0.0/15.
var (
	ClientAddr     = netip.MustParseAddr("198.18.1.2")  // the client on the LAN
	RouterLANAddr  = netip.MustParseAddr("198.18.1.1")  // the router on the LAN
	RouterWANAddr  = netip.MustParseAddr("198.19.0.1")  // the router on the WAN
	OneToOneAddr   = netip.MustParseAddr("198.19.0.10") // the client's public address in OneToOne mode
	RestrictedAddr = netip.MustParseAddr("198.19.0.11") // the client's public address in Restricted mode
	STUNAddr       = netip.MustParseAddr("198.19.0.2")  // coturn, primary address
	STUNAltAddr    = netip.MustParseAddr("198.19.0.3")  // coturn, alternate address
	PlainSTUNAddr  = netip.MustParseAddr("198.19.0.4")  // the plain STUN server
)

// Ports of the servers.
const (
	STUNPort     = 3478 // coturn's primary port (UDP and TCP), and the plain server's
	STUNAltPort  = 3479 // coturn's alternate port
	TURNTLSPort  = 5349 // coturn's TLS port
	TLS443Port   = 443  // coturn's second TLS port (alt-tls-listening-port)
	RelayMinPort = 49152
	RelayMaxPort = 49999
)

// Long-term credentials of the TURN server.
const (
	TURNUser     = "natcheck"
	TURNPassword = "lab-password"
	TURNRealm    = "lab.natcheck.test"
)

// Options configures a Lab. The zero value is a Masquerade router that
// drops unsolicited input, without loss.
type Options struct {
	Mode Mode
	// Mode6 is the router's IPv6 behaviour; "" means no IPv6 at all.
	Mode6 Mode6
	// NAT64 makes the client IPv6-only behind a NAT64 (tayga) with a
	// DNS64 answer for ipv4only.arpa (see nat64.go); needs a Mode6 other
	// than Blocked6.
	NAT64 bool
	// Input is the router's policy for unsolicited packets addressed to
	// itself; "" means InputDrop.
	Input InputPolicy
	// LossPercent, if positive, makes the router drop that percentage of
	// forwarded UDP packets in both directions (nft numgen; no netem needed).
	LossPercent int
	// Loss6Percent, if positive, makes the router drop that percentage of
	// forwarded IPv6 UDP packets in both directions, in its forward6
	// chain (counted as "loss6"), on top of LossPercent; needs a Mode6.
	Loss6Percent int
	// Dir holds configuration, certificates and logs. Empty means a new
	// temporary directory, removed by Close.
	Dir string
	// Logf, if set, receives progress lines.
	Logf func(format string, args ...any)
}

// Lab is a running topology. Its fields are read-only.
type Lab struct {
	Mode         Mode
	Mode6        Mode6       // "" when the lab has no IPv6
	NAT64        bool        // the client is IPv6-only behind NAT64
	Input        InputPolicy // never "": InputDrop or InputAccept
	LossPercent  int
	Loss6Percent int // IPv6 UDP only

	// Network namespace names, for `ip netns exec`.
	Client, Router, Internet string

	// PublicAddr is the client's address as the internet sees it: the
	// client's own address when the router does no NAT.
	PublicAddr netip.Addr

	// STUN is coturn's primary RFC 5780 address, STUNAlt its alternate
	// (other) address, PlainSTUN the server without RFC 5780.
	STUN, STUNAlt, PlainSTUN netip.AddrPort

	// With a Mode6: the client's own IPv6 address (ClientAddr6For), its
	// IPv6 address as the internet sees it (PublicAddr6For), and coturn's
	// and the plain server's IPv6 endpoints; all invalid without IPv6.
	ClientAddr6, PublicAddr6    netip.Addr
	STUN6, STUN6Alt, PlainSTUN6 netip.AddrPort

	// TURN describes coturn's TURN service.
	TURN TURNServer

	// Dir holds configuration, certificates and server logs.
	Dir string

	prefix  string
	logf    func(string, ...any)
	ownDir  bool
	mu      sync.Mutex
	procs   []*proc
	closed  bool
	created []string // namespaces created, in order
	// etcNetns are the /etc/netns/<namespace> directories written
	// (resolv.conf), removed by Close.
	etcNetns []string
}

// TURNServer is coturn's TURN service in the lab.
type TURNServer struct {
	UDP, TCP, TLS      netip.AddrPort
	TLS443             netip.AddrPort // TLS on port 443, the port a tls443only router lets out
	User, Password     string
	Realm              string
	CACertFile         string // PEM of the CA that signed the TLS certificate
	ServerName         string // a DNS name in the certificate; its IP SANs also cover UDP/TCP addresses
	RelayAddr          netip.Addr
	RelayMin, RelayMax int
}

type proc struct {
	name string
	cmd  *exec.Cmd
	logs []string // files to show when a test fails
	done chan struct{}
}

// nsPrefix starts every namespace name the lab creates.
const nsPrefix = "nclab-"

// Available reports what this machine lacks to build a lab, or nil.
func Available() error {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "not root")
	}
	for _, bin := range []string{"ip", "nft", "turnserver"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, bin+" not found")
		}
	}
	if len(missing) > 0 {
		return errors.New(strings.Join(missing, ", "))
	}
	return nil
}

// New starts a lab for a test. It skips the test with one line when the
// machine cannot build labs, fails it when the lab does not come up, and
// closes the lab when the test ends, printing the server logs if the test
// failed.
func New(t testing.TB, opts Options) *Lab {
	t.Helper()
	return startForTest(t, &opts.Dir, &opts.Logf, func(ctx context.Context) (*Lab, error) { return Start(ctx, opts) })
}

// testLab is what startForTest needs of a lab of any shape.
type testLab interface {
	DumpLogs(logf func(string, ...any))
	Close() error
}

// startForTest starts a lab for a test with start: it skips the test with
// one line when the machine cannot build labs, fails it when the lab does
// not come up, and closes the lab when the test ends, printing the logs if
// the test failed. An empty *dir becomes a temporary directory of the
// test, a nil *logf the test's log, before start runs.
func startForTest[L testLab](t testing.TB, dir *string, logf *func(string, ...any), start func(context.Context) (L, error)) L {
	t.Helper()
	SkipIfUnavailable(t)
	if *dir == "" {
		*dir = t.TempDir()
	}
	if *logf == nil {
		*logf = t.Logf
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := start(ctx)
	if errors.Is(err, errNoNetns) {
		t.Skip("lab: needs root and ip/nft/turnserver: " + err.Error())
	}
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			l.DumpLogs(t.Logf)
		}
		if err := l.Close(); err != nil {
			t.Errorf("lab: close: %v", err)
		}
	})
	return l
}

// SkipIfUnavailable skips t with one line when the machine cannot build
// labs.
func SkipIfUnavailable(t testing.TB) {
	t.Helper()
	if err := Available(); err != nil {
		t.Skip("lab: needs root and ip/nft/turnserver: " + err.Error())
	}
}

var errNoNetns = errors.New("cannot create network namespaces")

// Start builds the topology and starts the servers. The caller must Close
// the lab; on error Start has already cleaned up.
func Start(ctx context.Context, opts Options) (l *Lab, err error) {
	if opts.Mode == "" {
		opts.Mode = Masquerade
	}
	if !validMode(opts.Mode) {
		return nil, fmt.Errorf("unknown mode %q", opts.Mode)
	}
	if !validMode6(opts.Mode6) {
		return nil, fmt.Errorf("unknown IPv6 mode %q", opts.Mode6)
	}
	if opts.NAT64 && (opts.Mode6 == "" || opts.Mode6 == Blocked6) {
		return nil, fmt.Errorf("NAT64 needs an IPv6 mode that lets UDP through, not %q", opts.Mode6)
	}
	if !validInput(opts.Input) {
		return nil, fmt.Errorf("unknown input policy %q", opts.Input)
	}
	if opts.Input == "" {
		opts.Input = InputDrop
	}
	if opts.LossPercent < 0 || opts.LossPercent > 100 {
		return nil, fmt.Errorf("loss %d%% out of range", opts.LossPercent)
	}
	if opts.Loss6Percent < 0 || opts.Loss6Percent > 100 || (opts.Loss6Percent > 0 && opts.Mode6 == "") {
		return nil, fmt.Errorf("IPv6 loss %d%% out of range or without a Mode6", opts.Loss6Percent)
	}
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if err := RemoveStale(ctx, logf); err != nil {
		logf("lab: removing stale namespaces: %v", err)
	}
	prefix := fmt.Sprintf("%s%d-%s", nsPrefix, os.Getpid(), randomHex(3))
	l = &Lab{
		Mode:         opts.Mode,
		Mode6:        opts.Mode6,
		NAT64:        opts.NAT64,
		Input:        opts.Input,
		LossPercent:  opts.LossPercent,
		Loss6Percent: opts.Loss6Percent,
		Client:       prefix + "-client",
		Router:       prefix + "-router",
		Internet:     prefix + "-inet",
		STUN:         netip.AddrPortFrom(STUNAddr, STUNPort),
		STUNAlt:      netip.AddrPortFrom(STUNAltAddr, STUNAltPort),
		PlainSTUN:    netip.AddrPortFrom(PlainSTUNAddr, STUNPort),
		Dir:          opts.Dir,
		prefix:       prefix,
		logf:         logf,
	}
	if l.Dir == "" {
		d, err := os.MkdirTemp("", "natcheck-lab-")
		if err != nil {
			return nil, err
		}
		l.Dir, l.ownDir = d, true
	}
	l.PublicAddr = DefaultSite.PublicAddr(opts.Mode)
	if opts.Mode6 != "" {
		l.ClientAddr6, l.PublicAddr6 = ClientAddr6For(opts.Mode6), PublicAddr6For(opts.Mode6)
		l.STUN6 = netip.AddrPortFrom(STUNAddr6, STUNPort)
		l.STUN6Alt = netip.AddrPortFrom(STUNAltAddr6, STUNAltPort)
		l.PlainSTUN6 = netip.AddrPortFrom(PlainSTUNAddr6, STUNPort)
	}
	defer func() {
		if err != nil {
			l.DumpLogs(logf)
			l.Close()
			l = nil
		}
	}()
	if err := l.buildNetwork(ctx); err != nil {
		return l, err
	}
	if err := l.startServers(ctx); err != nil {
		return l, err
	}
	if l.NAT64 {
		if err := l.startNAT64(ctx); err != nil {
			return l, err
		}
	}
	return l, nil
}

func validMode(m Mode) bool {
	for _, x := range Modes() {
		if m == x {
			return true
		}
	}
	return false
}

// Command returns a command that runs name with args inside namespace ns,
// exactly as `ip netns exec ns name args...`. The process is killed if ctx
// ends or if the calling process dies.
func (l *Lab) Command(ctx context.Context, ns, name string, args ...string) *exec.Cmd {
	return nsCommand(ctx, ns, name, args...)
}

// nsCommand is Lab.Command.
func nsCommand(ctx context.Context, ns, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 2 * time.Second
	return cmd
}

// ClientCommand is Command in the client namespace.
func (l *Lab) ClientCommand(ctx context.Context, name string, args ...string) *exec.Cmd {
	return l.Command(ctx, l.Client, name, args...)
}

// DumpLogs writes the server logs and the router's ruleset to logf.
func (l *Lab) DumpLogs(logf func(string, ...any)) {
	l.mu.Lock()
	procs := append([]*proc(nil), l.procs...)
	l.mu.Unlock()
	for _, p := range procs {
		for _, file := range p.logs {
			b, err := os.ReadFile(file)
			if err != nil {
				logf("lab: %s log: %v", p.name, err)
				continue
			}
			logf("lab: ---- %s (%s) ----\n%s", p.name, file, tail(b, 8000))
		}
	}
	if l.Router != "" {
		out, err := runOut(context.Background(), "ip", "netns", "exec", l.Router, "nft", "list", "ruleset")
		if err == nil {
			logf("lab: ---- router ruleset ----\n%s", out)
		}
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		return "...\n" + string(b[len(b)-n:])
	}
	return string(b)
}

// Close stops the servers, kills every process left in the lab's
// namespaces and deletes them. It is safe to call more than once.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	procs := l.procs
	created := l.created
	etc := l.etcNetns
	l.mu.Unlock()
	for _, dir := range etc {
		os.RemoveAll(dir)
	}

	for _, p := range procs {
		stopProc(p)
	}
	var errs []error
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := len(created) - 1; i >= 0; i-- {
		if err := deleteNetns(ctx, created[i]); err != nil {
			errs = append(errs, err)
		}
	}
	if l.ownDir {
		os.RemoveAll(l.Dir)
	}
	return errors.Join(errs...)
}

func stopProc(p *proc) {
	if p.cmd.Process == nil {
		return
	}
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(3 * time.Second):
		p.cmd.Process.Kill()
		select {
		case <-p.done:
		case <-time.After(3 * time.Second):
		}
	}
}

func (l *Lab) path(name string) string { return filepath.Join(l.Dir, name) }
