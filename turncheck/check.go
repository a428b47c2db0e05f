package turncheck

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"

	"github.com/natcheck/natcheck/natclass"
	natstun "github.com/natcheck/natcheck/stun"
)

// CheckAll checks every server at once and returns the results in the
// order of servers.
func CheckAll(ctx context.Context, servers []Server, o Options) []natclass.TURNCheck {
	out := make([]natclass.TURNCheck, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		wg.Go(func() { out[i] = Check(ctx, s, o) })
	}
	wg.Wait()
	return out
}

// probeMagic starts every packet sent through a relay, followed by a random
// token and a sequence number.
const probeMagic = "natcheck-relay-probe:"

// helloSeq marks the packet the peer sends first, to open its own NAT
// towards the relay and to learn its address as the relay sees it.
const helloSeq = 0xffffffff

// Check runs the whole TURN check of one URL (RFC 8656): connect (TCP
// connect and TLS handshake for tcp and tls), Allocate, CreatePermission
// for a local peer socket, data through the relay to the peer and back,
// and release (Refresh with LIFETIME 0), then optionally the end-to-end ICE
// check. A failure is a result, never an error: FailedStep, Error and Hint
// say what went wrong and what to do.
func Check(ctx context.Context, s Server, o Options) natclass.TURNCheck {
	start := time.Now()
	c := &checker{o: o, s: s, res: natclass.TURNCheck{
		URL: s.URL.String(), Transport: s.URL.Transport, Auth: s.Credentials.Auth(), User: s.Credentials.User,
		Released: natclass.TriUnknown,
	}}
	c.run(ctx)
	// The local peer socket talks UDP to the relayed address: where UDP is
	// blocked (or the relay unreachable from here) nothing comes back even
	// though the relay works between two allocations, which is all two
	// browsers behind such a network need. The end-to-end check tells.
	peerCutOff := c.res.FailedStep == natclass.TURNStepData && !c.gotHello
	if (c.res.OK || peerCutOff) && o.EndToEnd && ctx.Err() == nil {
		e2e := EndToEndCheck(ctx, s, o)
		c.res.EndToEnd = &e2e
		switch {
		case useTURNClients(c.res.Server, o) && o.viaNAT64(c.res.Server):
			c.warn("the end-to-end check ran between two TURN clients' relayed addresses, not two ICE agents: through NAT64 the server is reached over IPv6 but relays on IPv4, and pion/ice announces relayed candidates of its transport's family only")
		case useTURNClients(c.res.Server, o):
			c.warn("the end-to-end check ran between two TURN clients' relayed addresses, not two ICE agents: %s", relayOverTURNClients)
		}
		switch {
		case e2e.Connected && peerCutOff:
			c.res.OK, c.res.FailedStep = true, ""
			c.warn("data from a local peer socket never reached the relayed address over UDP (%s); it passed between two relayed addresses instead, so the relay works for peers that reach it", c.res.Error)
			c.res.Error, c.res.Hint = "", ""
		case !e2e.Connected && !peerCutOff:
			c.res.OK = false
			c.res.FailedStep = natclass.TURNStepEndToEnd
			c.res.Error = "two ICE agents could not connect through the relay: " + e2e.Error
			c.res.Hint = "the relay passed data to a local socket but not between two of its own relayed addresses: check that the server allows peers on its own relay address (coturn denied-peer-ip, no-loopback-peers) and that relay ports are open"
		}
	}
	c.res.Duration = time.Since(start)
	return c.res
}

type checker struct {
	o   Options
	s   Server
	res natclass.TURNCheck

	user     string
	password Secret
	rec      *recorder
	client   *turn.Client
	// why a pending step was cut short: "timeout", "canceled" or "refused".
	cut atomic.Value
	// gotHello: the peer socket's first packet came through the relay.
	gotHello bool
	// relayedDest is where local peer sockets send to reach the relayed
	// address: itself, or through NAT64 its synthesized address.
	relayedDest netip.AddrPort
}

func (c *checker) fail(step string, err error) {
	c.res.FailedStep = step
	e := explain(step, err, c)
	c.res.ErrorCode = e.code
	c.res.Error = e.msg
	c.res.Hint = e.hint
}

func (c *checker) warn(format string, args ...any) {
	c.res.Warnings = append(c.res.Warnings, fmt.Sprintf(format, args...))
}

func (c *checker) run(ctx context.Context) {
	u := c.s.URL
	if err := c.s.Credentials.Validate(); err != nil {
		c.fail(natclass.TURNStepAllocate, err)
		return
	}
	var expires time.Time
	c.user, c.password, expires = c.s.Credentials.Resolve(c.o.now())
	c.res.CredentialExpires = expires

	server, err := resolveServer(ctx, u, c.o)
	if err != nil {
		c.fail(natclass.TURNStepResolve, err)
		return
	}
	c.res.Server = server
	c.res.Family = Family(server.Addr())
	if c.o.viaNAT64(server) {
		v4, _ := natclass.ExtractNAT64(c.o.NAT64, server.Addr())
		c.warn("reached through NAT64 (prefix %s): this host has no IPv4 route, so the IPv4 server %s was reached at %s, and an IPv4 relayed address was asked for", c.o.NAT64, v4, server.Addr())
	}

	token := make([]byte, 8)
	rand.Read(token)
	c.rec = newRecorder(c.res.URL, append([]byte(probeMagic), token...), c.o.Trace, time.Now)
	c.rec.server = net.UDPAddrFromAddrPort(server)
	if !c.connect(ctx, server) {
		return
	}
	defer c.rec.Close()

	client, err := turn.NewClient(&turn.ClientConfig{
		TURNServerAddr: server.String(),
		Conn:           c.rec,
		Username:       c.user,
		Password:       c.password.Reveal(),
		Software:       "natcheck",
		LoggerFactory:  newLogFactory(c.password.Reveal()),
		// RFC 6156: IPv6 sends REQUESTED-ADDRESS-FAMILY; 0 lets pion
		// infer the family of the connection (IPv6 over IPv6).
		RequestedAddressFamily: requestedFamily(c.o.relayFamily(server)),

		PermissionRefreshInterval: c.o.Soak.permissionRefresh(),
	})
	if err != nil {
		c.fail(natclass.TURNStepAllocate, err)
		return
	}
	c.client = client
	defer client.Close()
	if err := client.Listen(); err != nil {
		c.fail(natclass.TURNStepAllocate, err)
		return
	}

	// Allocate (RFC 8656 section 7.1). A 438 Stale Nonce gets one retry.
	var relay net.PacketConn
	for attempt := 0; ; attempt++ {
		t0 := time.Now()
		err = c.step(ctx, func() error {
			var err error
			relay, err = client.Allocate()
			return err
		})
		c.res.Allocate = time.Since(t0)
		if err == nil {
			break
		}
		if code := turnCode(err, c.rec, stun.MethodAllocate); code == int(stun.CodeStaleNonce) && attempt == 0 {
			c.warn("the server's nonce went stale during Allocate (438); retried once")
			continue
		}
		c.fail(natclass.TURNStepAllocate, err)
		return
	}
	c.res.Realm = client.Realm().String()
	if r, ok := c.rec.last(stun.MethodAllocate); ok && r.class == stun.ClassSuccessResponse {
		c.res.AllocateRTT = r.rtt
		c.res.Mapped = r.mapped
		c.res.Lifetime = r.life
	}
	if ua, ok := relay.LocalAddr().(*net.UDPAddr); ok {
		c.res.Relayed = natstun.AddrPortOf(ua)
	}
	c.res.RelayedFamily = Family(c.res.Relayed.Addr())
	if want := familyName(c.o.relayFamily(server)); want != "" && c.res.RelayedFamily != "" && want != c.res.RelayedFamily {
		c.warn("asked for an %s relayed address, the server gave %s %s (RFC 6156: the server may not relay %s)", want, c.res.RelayedFamily, c.res.Relayed.Addr(), want)
	}
	c.checkRelayedAddress(server)

	released := false
	release := func() {
		if released {
			return
		}
		released = true
		n := c.rec.count(stun.MethodRefresh)
		relay.Close() // Refresh with LIFETIME 0, not waited for
		if r, ok := c.rec.waitResponse(stun.MethodRefresh, n, c.o.stepTimeout()); ok {
			c.res.Released = natclass.TriOf(r.class == stun.ClassSuccessResponse)
			if r.class != stun.ClassSuccessResponse {
				c.warn("the server refused to release the allocation (error %d); it expires on its own after its lifetime", r.code)
			}
		} else {
			c.warn("no answer to the release request (Refresh with lifetime 0); the allocation expires on its own")
		}
	}
	defer release()

	if !c.relayData(ctx, relay) {
		return
	}
	if c.o.Soak != nil && c.o.Soak.Duration > 0 && !c.soak(ctx, relay) {
		return
	}
	release()
	c.res.OK = true
}

// resolveServer looks up u's host with o's resolver, and picks an address
// of o.Family; with no family asked, it prefers IPv4.
func resolveServer(ctx context.Context, u URL, o Options) (netip.AddrPort, error) {
	rctx, cancel := context.WithTimeout(ctx, o.stepTimeout())
	defer cancel()
	network := "ip"
	switch o.Family {
	case 4:
		network = "ip4"
	case 6:
		network = "ip6"
	}
	addrs, err := o.resolver().LookupNetIP(rctx, network, u.Host)
	if err != nil {
		return netip.AddrPort{}, err
	}
	// IPv4 first, but with a NAT64 prefix (no IPv4 route) IPv6 first.
	prefer4 := !o.NAT64.IsValid()
	var ip netip.Addr
	for _, a := range addrs {
		a = a.Unmap()
		switch {
		case o.Family == 6 && !a.Is6(), o.Family == 4 && !a.Is4():
			continue
		case !ip.IsValid(), a.Is4() == prefer4 && ip.Is4() != prefer4:
			ip = a
		}
	}
	if !ip.IsValid() {
		if name := familyName(o.Family); name != "" {
			return netip.AddrPort{}, fmt.Errorf("no %s address", name)
		}
		return netip.AddrPort{}, errors.New("no address")
	}
	if ip.Is4() && o.NAT64.IsValid() {
		s, err := natclass.SynthesizeNAT64(o.NAT64, ip)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("%s through the NAT64 prefix: %w", ip, err)
		}
		ip = s
	}
	return netip.AddrPortFrom(ip, uint16(u.Port)), nil
}

// Family is the address family of a: "ipv4" (IPv4-mapped IPv6 included),
// "ipv6", or "" for the zero Addr.
func Family(a netip.Addr) string {
	switch {
	case !a.IsValid():
		return ""
	case a.Unmap().Is4():
		return "ipv4"
	}
	return "ipv6"
}

// familyName is Family's name of 4 or 6, and "" for anything else.
func familyName(f int) string {
	switch f {
	case 4:
		return "ipv4"
	case 6:
		return "ipv6"
	}
	return ""
}

// requestedFamily is pion's REQUESTED-ADDRESS-FAMILY for 4 or 6; 0 lets
// pion infer it from the connection.
func requestedFamily(f int) turn.RequestedAddressFamily {
	switch f {
	case 4:
		return turn.RequestedAddressFamilyIPv4
	case 6:
		return turn.RequestedAddressFamilyIPv6
	}
	return 0
}

// connect opens the control connection: a connected UDP socket (so that an
// ICMP port unreachable is seen), or a TCP connection with TLS on top.
func (c *checker) connect(ctx context.Context, server netip.AddrPort) bool {
	u := c.s.URL
	if c.o.Allow != nil {
		if err := c.o.Allow(server); err != nil {
			c.fail(natclass.TURNStepConnect, err)
			return false
		}
	}
	if u.Transport == natclass.TURNTransportUDP {
		conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(server))
		if err != nil {
			c.fail(natclass.TURNStepConnect, err)
			return false
		}
		c.rec.udp = conn
		c.res.Local = conn.LocalAddr().(*net.UDPAddr).AddrPort()
		return true
	}
	d := net.Dialer{Timeout: c.o.stepTimeout()}
	t0 := time.Now()
	tcp, err := d.DialContext(ctx, "tcp", server.String())
	if err != nil {
		c.fail(natclass.TURNStepConnect, err)
		return false
	}
	c.res.Connect = time.Since(t0)
	c.res.Local = tcp.LocalAddr().(*net.TCPAddr).AddrPort()
	conn := tcp
	if u.Transport == natclass.TURNTransportTLS {
		tc, info, err := handshake(ctx, tcp, u.Host, c.o)
		if info != nil {
			c.res.TLS = &info.TLSInfo
			c.res.TLSHandshake = info.handshake
			c.tlsWarnings(info)
		}
		if err != nil {
			tcp.Close()
			c.fail(natclass.TURNStepTLS, err)
			return false
		}
		conn = tc
	}
	c.rec.pc = turn.NewSTUNConn(conn)
	return true
}

func (c *checker) tlsWarnings(info *tlsInfo) {
	if c.o.Insecure {
		if info.VerifyError != "" {
			c.warn("certificate NOT verified (--insecure): %s", info.VerifyError)
		} else {
			c.warn("--insecure given, but the certificate verifies: the flag is not needed")
		}
	}
	if !info.NotAfter.IsZero() {
		left := info.NotAfter.Sub(c.o.now())
		if left > 0 && left < 14*24*time.Hour {
			c.warn("the server's certificate expires in %s (%s)", days(left), info.NotAfter.UTC().Format(time.DateOnly))
		}
	}
}

// step runs fn, a blocking pion call, and cuts it short on the step
// timeout, on cancellation or on an ICMP port unreachable by closing the
// client's pending transactions.
func (c *checker) step(ctx context.Context, fn func() error) error {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTimer(c.o.stepTimeout())
		defer t.Stop()
		select {
		case <-done:
			return
		case <-t.C:
			c.cut.Store("timeout")
		case <-ctx.Done():
			c.cut.Store("canceled")
		case <-c.rec.refused:
			c.cut.Store("refused")
		}
		c.client.Close()
	})
	err := fn()
	close(done)
	wg.Wait()
	return err
}

func (c *checker) cutReason() string {
	s, _ := c.cut.Load().(string)
	return s
}

// checkRelayedAddress warns when the relayed address cannot be reached by
// remote peers.
func (c *checker) checkRelayedAddress(server netip.AddrPort) {
	ra := c.res.Relayed.Addr()
	if !ra.IsValid() || !nonPublic(ra) {
		return
	}
	if !nonPublic(server.Addr()) {
		c.warn("the relayed address %s is private while the server is reached at public %s: peers on the internet cannot send to it (coturn: set external-ip=PUBLIC/PRIVATE)", ra, server.Addr())
		return
	}
	c.warn("the relayed address %s is private: only peers on the same network can reach it", ra)
}

// nonPublic reports whether a is not reachable from the internet: private
// (RFC 1918, RFC 4193), loopback, link-local, shared (RFC 6598) or
// unspecified.
func nonPublic(a netip.Addr) bool {
	return a.IsPrivate() || a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsUnspecified() ||
		netip.MustParsePrefix("100.64.0.0/10").Contains(a)
}
