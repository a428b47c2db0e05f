package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// A PairLab is two sites, each a client behind its own router, on one
// shared internet: the topology of `natcheck pair` (issue 13).
//
//	site A: client 198.18.1.2 --lan-- router A (198.18.1.1 | 198.19.0.1,  1:1 .10, restricted .11) --wana--+
//	                                                                                                      br0 internet (198.19.0.2-.6)
//	site B: client 198.18.2.2 --lan-- router B (198.18.2.1 | 198.19.0.21, 1:1 .30, restricted .31) --wanb--+
//
// Each router applies its own Mode, InputPolicy and loss, with the same
// nftables rules as a Lab's router (Site.Ruleset). The internet namespace
// bridges both WANs (br0), holds coturn and the plain STUN server exactly
// as in a Lab (198.19.0.2, .3, .4), and the addresses 198.19.0.5 and .6
// for `natcheck serve` as the rendezvous (StartRendezvous). It forwards
// between the sites: each router's default route is 198.19.0.2, which
// routes a LAN back to its router when that router does no NAT. The
// routers' public addresses share 198.19.0.0/24, so packets between them
// cross the bridge directly, as between two hosts on the internet.
//
// A site with a Mode6 gets IPv6 beside IPv4, as a Lab with that Mode6 and
// the same rules (ruleset6): site A DefaultSite6 (2001:2:0:1::/64, ULA
// fd00:0:0:1::/64, router 2001:2:0:100::1), site B SiteB6
// (2001:2:0:2::/64, ULA fd00:0:0:2::/64, router 2001:2:0:100::21). The
// internet namespace then holds coturn's and the plain server's IPv6
// addresses as in a Lab (2001:2:0:100::2-4) and natcheck serve's (::5,
// ::6) on br0, routes each site's global prefix to its router, and is
// each router's IPv6 default route, as for IPv4.
//
// Every PairLab has its own namespaces (nclab-<pid>-<hex>-{a-client,
// a-router,b-client,b-router,inet}), so PairLabs and Labs run side by side.
type PairLab struct {
	A, B *PairSite

	// Internet is the shared internet namespace's name.
	Internet string

	// STUN, STUNAlt, PlainSTUN and TURN are as in a Lab.
	STUN, STUNAlt, PlainSTUN netip.AddrPort
	// STUN6, STUN6Alt and PlainSTUN6 are their IPv6 endpoints when a
	// site has a Mode6; invalid otherwise.
	STUN6, STUN6Alt, PlainSTUN6 netip.AddrPort
	TURN                        TURNServer
	// TURNPasswordFile holds TURN.Password, for --turn-password-file.
	TURNPasswordFile string

	// Rendezvous is natcheck serve's /pair URL once StartRendezvous ran.
	Rendezvous string

	// Dir holds configuration, certificates and logs.
	Dir string

	core *Lab // the internet namespace, its servers and the clean-up
}

// PairSite is one site of a PairLab. Its fields are read-only.
type PairSite struct {
	Name        string // "A" or "B"
	Mode        Mode
	Mode6       Mode6       // "": no IPv6 at this site
	Input       InputPolicy // never ""
	LossPercent int

	// Client and Router are the site's namespace names.
	Client, Router string

	// Addr is the site's addressing; PublicAddr the client's address as
	// the internet sees it (Addr.PublicAddr(Mode)).
	Addr       Site
	PublicAddr netip.Addr
	// With a Mode6: the client's own IPv6 address and its IPv6 address as
	// the internet sees it (Addr.V6.ClientAddr and PublicAddr); invalid
	// otherwise.
	ClientAddr6, PublicAddr6 netip.Addr

	rulesFile string
}

// SiteOptions is one site's router: Mode ("" means Masquerade), Mode6 (""
// means no IPv6), Input ("" means InputDrop) and LossPercent, as in
// Options.
type SiteOptions struct {
	Mode        Mode
	Mode6       Mode6
	Input       InputPolicy
	LossPercent int
}

func (o SiteOptions) String() string {
	s := string(o.Mode)
	if s == "" {
		s = string(Masquerade)
	}
	if o.Mode6 != "" {
		s += "+" + string(o.Mode6)
	}
	if o.Input != "" {
		s += "/" + string(o.Input)
	}
	if o.LossPercent > 0 {
		s += fmt.Sprintf("/loss%d", o.LossPercent)
	}
	return s
}

// PairOptions configures a PairLab.
type PairOptions struct {
	A, B SiteOptions
	// Dir and Logf are as in Options.
	Dir  string
	Logf func(format string, args ...any)
}

// Addresses of a PairLab. Site A is DefaultSite, the single-site Lab's
// addressing; site B has its own LAN and public addresses.
var (
	SiteB = Site{
		LAN:        netip.MustParsePrefix("198.18.2.0/24"),
		Client:     netip.MustParseAddr("198.18.2.2"),
		RouterLAN:  netip.MustParseAddr("198.18.2.1"),
		RouterWAN:  netip.MustParseAddr("198.19.0.21"),
		OneToOne:   netip.MustParseAddr("198.19.0.30"),
		Restricted: netip.MustParseAddr("198.19.0.31"),
		V6:         SiteB6,
	}
	// SiteB6 is site B's IPv6 addressing, in 2001:2::/48 as DefaultSite6.
	SiteB6 = Site6{
		LAN:       netip.MustParsePrefix("2001:2:0:2::/64"),
		Client:    netip.MustParseAddr("2001:2:0:2::2"),
		RouterLAN: netip.MustParseAddr("2001:2:0:2::1"),
		ULA:       netip.MustParsePrefix("fd00:0:0:2::/64"),
		ClientULA: netip.MustParseAddr("fd00:0:0:2::2"),
		RouterULA: netip.MustParseAddr("fd00:0:0:2::1"),
		RouterWAN: netip.MustParseAddr("2001:2:0:100::21"),
	}
	// RendezvousAddr and RendezvousAltAddr are natcheck serve's primary
	// and alternate addresses in a PairLab.
	RendezvousAddr    = netip.MustParseAddr("198.19.0.5")
	RendezvousAltAddr = netip.MustParseAddr("198.19.0.6")
)

// Ports of natcheck serve in a PairLab.
const (
	RendezvousHTTPPort = 8080 // --http: the /pair WebSocket endpoint
	// RendezvousPort443 is the --http port instead when a site is
	// TLS443Only, whose router lets out only TCP to port 443.
	RendezvousPort443 = 443
	RendezvousICEPort = 3480 // --pair-ice: the server peer's UDP and TCP port
)

// Interface names in a PairLab's internet namespace.
const (
	inetBridge = "br0"
	inetWANA   = "wana"
	inetWANB   = "wanb"
)

// NewPair starts a PairLab for a test, as New does for a Lab: it skips the
// test with one line when the machine cannot build labs, fails it when the
// lab does not come up, and closes the lab when the test ends, printing
// the logs if the test failed.
func NewPair(t testing.TB, opts PairOptions) *PairLab {
	t.Helper()
	return startForTest(t, &opts.Dir, &opts.Logf, func(ctx context.Context) (*PairLab, error) { return StartPair(ctx, opts) })
}

// StartPair builds a PairLab and starts coturn and the plain STUN server
// (not the rendezvous: see StartRendezvous). The caller must Close it; on
// error StartPair has already cleaned up.
func StartPair(ctx context.Context, opts PairOptions) (p *PairLab, err error) {
	sites := make([]*PairSite, 2)
	for i, o := range []SiteOptions{opts.A, opts.B} {
		if o.Mode == "" {
			o.Mode = Masquerade
		}
		if !validMode(o.Mode) {
			return nil, fmt.Errorf("site %c: unknown mode %q", 'A'+i, o.Mode)
		}
		if !validMode6(o.Mode6) {
			return nil, fmt.Errorf("site %c: unknown IPv6 mode %q", 'A'+i, o.Mode6)
		}
		if !validInput(o.Input) {
			return nil, fmt.Errorf("site %c: unknown input policy %q", 'A'+i, o.Input)
		}
		if o.Input == "" {
			o.Input = InputDrop
		}
		if o.LossPercent < 0 || o.LossPercent > 100 {
			return nil, fmt.Errorf("site %c: loss %d%% out of range", 'A'+i, o.LossPercent)
		}
		sites[i] = &PairSite{Name: string(rune('A' + i)), Mode: o.Mode, Mode6: o.Mode6, Input: o.Input, LossPercent: o.LossPercent}
	}
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if err := RemoveStale(ctx, logf); err != nil {
		logf("lab: removing stale namespaces: %v", err)
	}
	prefix := fmt.Sprintf("%s%d-%s", nsPrefix, os.Getpid(), randomHex(3))
	core := &Lab{
		Internet:  prefix + "-inet",
		STUN:      netip.AddrPortFrom(STUNAddr, STUNPort),
		STUNAlt:   netip.AddrPortFrom(STUNAltAddr, STUNAltPort),
		PlainSTUN: netip.AddrPortFrom(PlainSTUNAddr, STUNPort),
		Dir:       opts.Dir,
		prefix:    prefix,
		logf:      logf,
	}
	for _, s := range sites {
		if s.Mode6 != "" {
			// coturn and the plain server listen on IPv6 too (any Mode6
			// will do: the servers only ask whether there is one).
			core.Mode6 = s.Mode6
			core.STUN6 = netip.AddrPortFrom(STUNAddr6, STUNPort)
			core.STUN6Alt = netip.AddrPortFrom(STUNAltAddr6, STUNAltPort)
			core.PlainSTUN6 = netip.AddrPortFrom(PlainSTUNAddr6, STUNPort)
		}
	}
	if core.Dir == "" {
		d, err := os.MkdirTemp("", "natcheck-pairlab-")
		if err != nil {
			return nil, err
		}
		core.Dir, core.ownDir = d, true
	}
	p = &PairLab{A: sites[0], B: sites[1], Internet: core.Internet, STUN: core.STUN, STUNAlt: core.STUNAlt, PlainSTUN: core.PlainSTUN,
		STUN6: core.STUN6, STUN6Alt: core.STUN6Alt, PlainSTUN6: core.PlainSTUN6, Dir: core.Dir, core: core}
	for _, s := range []*PairSite{p.A, p.B} {
		low := strings.ToLower(s.Name)
		s.Client = prefix + "-" + low + "-client"
		s.Router = prefix + "-" + low + "-router"
		s.Addr = DefaultSite
		if s.Name == "B" {
			s.Addr = SiteB
		}
		s.PublicAddr = s.Addr.PublicAddr(s.Mode)
		if s.Mode6 != "" {
			s.ClientAddr6, s.PublicAddr6 = s.Addr.V6.ClientAddr(s.Mode6), s.Addr.V6.PublicAddr(s.Mode6)
		}
		s.rulesFile = core.path("router-" + low + ".nft")
	}
	defer func() {
		if err != nil {
			p.DumpLogs(logf)
			p.Close()
			p = nil
		}
	}()
	if err := p.buildNetwork(ctx); err != nil {
		return p, err
	}
	if err := core.startServers(ctx); err != nil {
		return p, err
	}
	p.TURN = core.TURN
	p.TURNPasswordFile = core.path("turn-password")
	if err := os.WriteFile(p.TURNPasswordFile, []byte(p.TURN.Password+"\n"), 0o600); err != nil {
		return p, err
	}
	return p, nil
}

func (p *PairLab) buildNetwork(ctx context.Context) error {
	c := p.core
	for _, ns := range []string{p.A.Client, p.A.Router, p.B.Client, p.B.Router, p.Internet} {
		if err := c.addNetns(ctx, ns); err != nil {
			return err
		}
		if c.Mode6 != "" {
			// Before any interface exists (see noDAD).
			if err := noDAD(ctx, ns); err != nil {
				return err
			}
		}
	}
	if err := ipns(ctx, p.Internet, "link", "add", inetBridge, "type", "bridge"); err != nil {
		return err
	}
	for _, s := range []*PairSite{p.A, p.B} {
		inetIf := inetWANA
		if s.Name == "B" {
			inetIf = inetWANB
		}
		err := buildRouter(ctx, router{
			client: s.Client, router: s.Router, internet: p.Internet, inetIf: inetIf,
			site: s.Addr, mode: s.Mode, mode6: s.Mode6, input: s.Input, loss: s.LossPercent,
			defaultVia: STUNAddr,
			rulesFile:  s.rulesFile,
		})
		if err != nil {
			return fmt.Errorf("site %s: %w", s.Name, err)
		}
		if err := ipns(ctx, p.Internet, "link", "set", inetIf, "master", inetBridge, "up"); err != nil {
			return err
		}
		if s.Mode6 != "" {
			if err := buildSite6(ctx, s.Client, s.Router, s.Addr.V6, s.Mode6, STUNAddr6); err != nil {
				return fmt.Errorf("site %s: %w", s.Name, err)
			}
		}
	}
	var steps [][]string
	for _, a := range []netip.Addr{STUNAddr, STUNAltAddr, PlainSTUNAddr, RendezvousAddr, RendezvousAltAddr} {
		steps = append(steps, []string{p.Internet, "addr", "add", a.String() + "/24", "dev", inetBridge})
	}
	steps = append(steps, []string{p.Internet, "link", "set", inetBridge, "up"})
	if c.Mode6 != "" {
		for _, a := range []netip.Addr{STUNAddr6, STUNAltAddr6, PlainSTUNAddr6, ServeAddr6, ServeAltAddr6} {
			steps = append(steps, []string{p.Internet, "-6", "addr", "add", a.String() + "/64", "dev", inetBridge, "nodad"})
		}
		for _, s := range []*PairSite{p.A, p.B} {
			if s.Mode6 != "" {
				// The site's global prefix (its own, or NPTv6's outside
				// prefix) lies behind its router.
				steps = append(steps, []string{p.Internet, "-6", "route", "add", s.Addr.V6.LAN.String(), "via", s.Addr.V6.RouterWAN.String()})
			}
		}
	}
	for _, s := range []*PairSite{p.A, p.B} {
		if s.PublicAddr == s.Addr.Client {
			// Without NAT the internet must route the client's LAN back.
			steps = append(steps, []string{p.Internet, "route", "add", s.Addr.LAN.String(), "via", s.Addr.RouterWAN.String()})
		}
	}
	for _, st := range steps {
		if err := ipns(ctx, st[0], st[1:]...); err != nil {
			return err
		}
	}
	// The internet namespace forwards between the sites (a router's
	// default route), back out of the bridge it came in on: no redirects.
	if _, err := nsexec(ctx, p.Internet, "sh", "-c",
		"echo 1 > /proc/sys/net/ipv4/ip_forward && echo 0 > /proc/sys/net/ipv4/conf/all/send_redirects && echo 0 > /proc/sys/net/ipv4/conf/"+inetBridge+"/send_redirects"); err != nil {
		return err
	}
	if c.Mode6 != "" {
		if _, err := nsexec(ctx, p.Internet, "sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/all/forwarding"); err != nil {
			return err
		}
		if err := waitNoTentative(ctx, p.A.Client, p.A.Router, p.B.Client, p.B.Router, p.Internet); err != nil {
			return err
		}
		c.logf("lab: %s: IPv6: site A %q (public %v), site B %q (public %v)", c.prefix, p.A.Mode6, p.A.PublicAddr6, p.B.Mode6, p.B.PublicAddr6)
	}
	c.logf("lab: %s: pair lab, site A %s/%s loss %d%% (public %v), site B %s/%s loss %d%% (public %v), internet %s",
		c.prefix, p.A.Mode, p.A.Input, p.A.LossPercent, p.A.PublicAddr, p.B.Mode, p.B.Input, p.B.LossPercent, p.B.PublicAddr, p.Internet)
	return nil
}

// Sites returns A and B.
func (p *PairLab) Sites() []*PairSite { return []*PairSite{p.A, p.B} }

// Peer returns the other site.
func (p *PairLab) Peer(s *PairSite) *PairSite {
	if s == p.A {
		return p.B
	}
	return p.A
}

// Ruleset returns the site's router ruleset.
func (s *PairSite) Ruleset() string {
	return s.Addr.ruleset(s.Mode, s.Mode6, false, s.Input, s.LossPercent, 0)
}

// Command returns a command that runs name with args in namespace ns, as
// Lab.Command.
func (p *PairLab) Command(ctx context.Context, ns, name string, args ...string) *exec.Cmd {
	return nsCommand(ctx, ns, name, args...)
}

// Counters reads the commented rules' packet counters of the site's
// router, as Lab.Counters.
func (p *PairLab) Counters(ctx context.Context, s *PairSite) (map[string]int64, error) {
	return routerCounters(ctx, s.Router)
}

// Conntrack returns the UDP entries of the site router's connection
// tracking table (/proc/net/nf_conntrack in its namespace), or an error
// when the kernel does not offer that file.
func (p *PairLab) Conntrack(ctx context.Context, s *PairSite) ([]string, error) {
	out, err := nsexec(ctx, s.Router, "cat", "/proc/net/nf_conntrack")
	if err != nil {
		return nil, err
	}
	var udp []string
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, " udp ") {
			udp = append(udp, strings.Join(strings.Fields(line), " "))
		}
	}
	return udp, nil
}

// Binding sends a STUN Binding request from a fresh socket bound to local
// in namespace ns to server, as Lab.Binding.
func (p *PairLab) Binding(ns string, local, server netip.AddrPort, timeout time.Duration) (BindingResult, error) {
	return p.core.Binding(ns, local, server, timeout)
}

// RunNatcheck runs natcheck with the lab's usual arguments (NatcheckArgs)
// in the site's client namespace, as Lab.RunNatcheck.
func (p *PairLab) RunNatcheck(ctx context.Context, s *PairSite, binary string) (NatcheckResult, error) {
	return runNatcheckIn(ctx, s.Client, nil, binary, p.core.NatcheckArgs()...)
}

// RendezvousICE is the --pair-ice argument for natcheck serve in a
// PairLab: the server peer's UDP and TCP port.
var RendezvousICE = netip.AddrPortFrom(RendezvousAddr, RendezvousICEPort)

// StartRendezvous starts `natcheck serve --primary 198.19.0.5 --alternate
// 198.19.0.6 --http 198.19.0.5:8080 [extra]` in the internet namespace
// (extra is typically "--pair-ice", RendezvousICE.String()), waits (at
// most 15 s) until its HTTP port accepts, and sets and returns Rendezvous
// (ws://198.19.0.5:8080/pair). When a site has a Mode6, serve also gets
// --primary 2001:2:0:100::5 --alternate 2001:2:0:100::6. When a site is TLS443Only the HTTP port is
// 443 instead: the only one its router lets out.
func (p *PairLab) StartRendezvous(ctx context.Context, binary string, extra ...string) (string, error) {
	port := uint16(RendezvousHTTPPort)
	if p.A.Mode == TLS443Only || p.B.Mode == TLS443Only {
		port = RendezvousPort443
	}
	httpAddr := netip.AddrPortFrom(RendezvousAddr, port)
	args := append([]string{"serve",
		"--primary", RendezvousAddr.String(),
		"--alternate", RendezvousAltAddr.String(),
		"--http", httpAddr.String(),
	}, extra...)
	if p.core.Mode6 != "" {
		args = append(args, "--primary", ServeAddr6.String(), "--alternate", ServeAltAddr6.String())
	}
	if err := p.core.startProc("rendezvous", p.Internet, nil, binary, args...); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	start := time.Now()
	for attempt := 0; attempt < 150; attempt++ {
		var c net.Conn
		err := InNetns(p.Internet, func() error {
			var err error
			c, err = net.DialTimeout("tcp", httpAddr.String(), 300*time.Millisecond)
			return err
		})
		if err == nil {
			c.Close()
			p.Rendezvous = "ws://" + httpAddr.String() + "/pair"
			p.core.logf("lab: rendezvous %s answers after %v", p.Rendezvous, time.Since(start).Round(time.Millisecond))
			return p.Rendezvous, nil
		}
		if exited := p.core.exitedProc(); exited != "" {
			out, _ := os.ReadFile(p.core.path("rendezvous.out"))
			return "", fmt.Errorf("%s exited: %v: %s", exited, err, strings.TrimSpace(tail(out, 2000)))
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("rendezvous not ready after %v: %w", time.Since(start).Round(time.Millisecond), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	return "", errors.New("rendezvous not ready")
}

// PairArgs are the arguments the lab gives `natcheck pair` for room: the
// rendezvous, coturn as STUN server and as TURN server over each URL in
// turn (with the lab's credentials, the password from a file), JSON
// output and the phase timeout. When a site has a Mode6, coturn's IPv6
// address is a second --stun.
func (p *PairLab) PairArgs(room string, phaseTimeout time.Duration, turn ...string) []string {
	args := []string{"pair", "--json",
		"--rendezvous", p.Rendezvous,
		"--room", room,
		"--stun", p.STUN.String(),
		"--phase-timeout", phaseTimeout.String(),
		"--wait", "60s",
	}
	if p.STUN6.IsValid() {
		args = append(args, "--stun", p.STUN6.String())
	}
	for _, u := range turn {
		args = append(args, "--turn", u)
	}
	if len(turn) > 0 {
		args = append(args, "--turn-user", p.TURN.User, "--turn-password-file", p.TURNPasswordFile)
	}
	return args
}

// PairResult holds the fields of `natcheck pair --json` that the lab
// checks, the exit code and the run time.
type PairResult struct {
	SchemaVersion int  `json:"schema_version"`
	UDP           bool `json:"udp"`
	NAT           struct {
		Mapping   string `json:"mapping"`
		Filtering string `json:"filtering"`
		Type      string `json:"type"`
	} `json:"nat"`
	Pair struct {
		Room              string `json:"room"`
		Role              string `json:"role"`
		Predicted         string `json:"predicted"`
		PredictedFamily   string `json:"predicted_family"`
		PredictionCertain bool   `json:"prediction_certain"`
		PredictionRule    string `json:"prediction_rule"`
		Outcome           string `json:"outcome"`
		OutcomeFamily     string `json:"outcome_family"`
		Matched           bool   `json:"matched"`
		Selected          *struct {
			Local  PairCandidate `json:"local"`
			Remote PairCandidate `json:"remote"`
		} `json:"selected"`
		ConnectMS *float64 `json:"connect_ms"`
		// PresentToConnectedMS: from both peers in the room to connected.
		PresentToConnectedMS *float64 `json:"present_to_connected_ms"`
		RTTMS                *float64 `json:"rtt_ms"`
		Loss                 *float64 `json:"loss"`
		Phases               []struct {
			Phase     string   `json:"phase"`
			Connected bool     `json:"connected"`
			ConnectMS *float64 `json:"connect_ms"`
			Error     string   `json:"error"`
		} `json:"phases"`
		Peer  json.RawMessage `json:"peer"`
		Error string          `json:"error"`
	} `json:"pair"`

	ExitCode int           `json:"-"`
	Duration time.Duration `json:"-"`
	Stdout   string        `json:"-"`
	Stderr   string        `json:"-"`
}

// PairCandidate is one end of the selected candidate pair.
type PairCandidate struct {
	Type     string `json:"type"` // host, srflx, prflx or relay
	Protocol string `json:"protocol"`
	Address  string `json:"address"`
}

// RunPair runs binary with args (PairArgs) in the site's client namespace
// and decodes its report. A run that does not end by itself within
// timeout is killed and is an error; so is a report that does not decode,
// unless the exit code is 2 or 3 and stdout is empty.
func (p *PairLab) RunPair(ctx context.Context, s *PairSite, timeout time.Duration, binary string, args ...string) (PairResult, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := nsCommand(ctx, s.Client, binary, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	r := PairResult{Duration: time.Since(start), Stdout: stdout.String(), Stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return r, fmt.Errorf("natcheck pair in site %s did not end within %v (stderr: %s)", s.Name, timeout, stderr.String())
	case err == nil:
	case errors.As(err, &ee) && ee.Exited():
		r.ExitCode = ee.ExitCode()
	default:
		return r, fmt.Errorf("natcheck pair in site %s: %w (stderr: %s)", s.Name, err, stderr.String())
	}
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		if len(bytes.TrimSpace(stdout.Bytes())) == 0 && r.ExitCode >= 2 {
			return r, nil
		}
		return r, fmt.Errorf("natcheck pair in site %s: decoding report (exit %d): %w\nstdout: %s\nstderr: %s", s.Name, r.ExitCode, err, stdout.String(), stderr.String())
	}
	return r, nil
}

// RunPairBoth runs `natcheck pair` in both sites at once, with argsA in
// site A and argsB in site B, and returns both results.
func (p *PairLab) RunPairBoth(ctx context.Context, timeout time.Duration, binary string, argsA, argsB []string) (a, b PairResult, err error) {
	var wg sync.WaitGroup
	var errA, errB error
	wg.Add(2)
	go func() { defer wg.Done(); a, errA = p.RunPair(ctx, p.A, timeout, binary, argsA...) }()
	go func() { defer wg.Done(); b, errB = p.RunPair(ctx, p.B, timeout, binary, argsB...) }()
	wg.Wait()
	return a, b, errors.Join(errA, errB)
}

// DumpLogs writes the server logs and both routers' rulesets (with
// counters) to logf.
func (p *PairLab) DumpLogs(logf func(string, ...any)) {
	p.core.DumpLogs(logf)
	for _, s := range []*PairSite{p.A, p.B} {
		if s == nil || s.Router == "" {
			continue
		}
		out, err := runOut(context.Background(), "ip", "netns", "exec", s.Router, "nft", "list", "ruleset")
		if err == nil {
			logf("lab: ---- router %s ruleset (%s/%s) ----\n%s", s.Name, s.Mode, s.Input, out)
		}
	}
}

// Close stops the servers, kills every process left in the namespaces and
// deletes them. It is safe to call more than once.
func (p *PairLab) Close() error { return p.core.Close() }
