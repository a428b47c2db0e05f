package turncheck

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/stun/v3"
	"github.com/pion/turn/v5"

	"github.com/natcheck/natcheck/natclass"
	natstun "github.com/natcheck/natcheck/stun"
)

// Options configure TURN checks. The zero value is usable: system roots for
// TLS, 5 s per step, 5 packets through the relay, no end-to-end check.
type Options struct {
	// RootCAs verifies TLS certificates; nil means the system's roots.
	RootCAs *x509.CertPool
	// Insecure skips certificate verification (the check reports what
	// verification would have said, as a warning).
	Insecure bool
	// StepTimeout bounds each step: DNS, TCP connect, TLS handshake,
	// Allocate, CreatePermission, and the wait for data. Zero means 5 s.
	StepTimeout time.Duration
	// Packets is the number of packets sent through the relay; zero means
	// 5, at most 100.
	Packets int
	// Interval between packets; zero means 20 ms.
	Interval time.Duration
	// EndToEnd also connects two relay-only ICE agents through the server.
	EndToEnd bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Trace, if set, is called for every STUN/TURN message of every check,
	// from several goroutines at once.
	Trace func(Event)
}

func (o Options) stepTimeout() time.Duration {
	if o.StepTimeout > 0 {
		return o.StepTimeout
	}
	return 5 * time.Second
}

func (o Options) packets() int {
	switch {
	case o.Packets <= 0:
		return 5
	case o.Packets > 100:
		return 100
	}
	return o.Packets
}

func (o Options) interval() time.Duration {
	if o.Interval > 0 {
		return o.Interval
	}
	return 20 * time.Millisecond
}

func (o Options) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

// tlsConfig is the client TLS configuration for a server name. Go's
// defaults negotiate TLS 1.2, which coturn 4.6 needs.
func (o Options) tlsConfig(serverName string) *tls.Config {
	return &tls.Config{
		ServerName:         serverName,
		RootCAs:            o.RootCAs,
		InsecureSkipVerify: o.Insecure, //nolint:gosec // the user asked, and is warned
		MinVersion:         tls.VersionTLS12,
	}
}

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
	if (c.res.OK || peerCutOff) && o.EndToEnd {
		e2e := EndToEndCheck(ctx, s, o)
		c.res.EndToEnd = &e2e
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

	// Resolve. ICE gathers relays over IPv4 only (pion/ice v4.4.1): prefer
	// an IPv4 address.
	rctx, cancel := context.WithTimeout(ctx, c.o.stepTimeout())
	addrs, err := net.DefaultResolver.LookupNetIP(rctx, "ip", u.Host)
	cancel()
	if err != nil || len(addrs) == 0 {
		if err == nil {
			err = errors.New("no address")
		}
		c.fail(natclass.TURNStepResolve, err)
		return
	}
	ip := addrs[0]
	for _, a := range addrs {
		if a.Unmap().Is4() {
			ip = a
			break
		}
	}
	server := netip.AddrPortFrom(ip.Unmap(), uint16(u.Port))
	c.res.Server = server

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
	release()
	c.res.OK = true
}

// connect opens the control connection: a connected UDP socket (so that an
// ICMP port unreachable is seen), or a TCP connection with TLS on top.
func (c *checker) connect(ctx context.Context, server netip.AddrPort) bool {
	u := c.s.URL
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

// relayData creates a permission for a local peer socket, has the peer
// send one packet to the relayed address (opening its own NAT, and telling
// its address as the relay sees it), then sends packets through the relay
// to the peer, which echoes them back.
func (c *checker) relayData(ctx context.Context, relay net.PacketConn) bool {
	local := c.res.Local.Addr()
	peer, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, 0)))
	if err != nil {
		c.fail(natclass.TURNStepPermission, fmt.Errorf("opening the local peer socket: %w", err))
		return false
	}
	defer peer.Close()
	peerLocal := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	// Permissions are per IP address (RFC 8656 section 9): our address as
	// the server sees it.
	permIP := local
	if c.res.Mapped.IsValid() {
		permIP = c.res.Mapped.Addr()
	}
	t0 := time.Now()
	err = c.step(ctx, func() error {
		return c.client.CreatePermission(net.UDPAddrFromAddrPort(netip.AddrPortFrom(permIP, 0)))
	})
	c.res.Permission = time.Since(t0)
	if err != nil {
		c.fail(natclass.TURNStepPermission, err)
		return false
	}

	token := c.rec.token
	packet := func(seq uint32) []byte {
		b := make([]byte, 0, len(token)+4+32)
		b = append(b, token...)
		b = binary.BigEndian.AppendUint32(b, seq)
		return append(b, make([]byte, 32)...)
	}
	parse := func(b []byte) (uint32, bool) {
		if len(b) < len(token)+4 || string(b[:len(token)]) != string(token) {
			return 0, false
		}
		return binary.BigEndian.Uint32(b[len(token):]), true
	}

	// The peer echoes probes back to where they came from.
	var wg sync.WaitGroup
	defer wg.Wait()
	defer peer.Close()
	wg.Go(func() {
		buf := make([]byte, 1500)
		for i := 0; i < 1000; i++ { // bounded: far more than the probes
			n, from, err := peer.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if seq, ok := parse(buf[:n]); ok && seq != helloSeq {
				peer.WriteToUDPAddrPort(buf[:n], from)
			}
		}
	})

	// What comes back through the relay.
	type arrival struct {
		seq  uint32
		from netip.AddrPort
		at   time.Time
	}
	arrivals := make(chan arrival, 256)
	readDone := make(chan struct{})
	wg.Go(func() {
		defer close(readDone)
		buf := make([]byte, 1500)
		for i := 0; i < 1000; i++ {
			n, from, err := relay.ReadFrom(buf)
			if err != nil {
				return
			}
			at := time.Now()
			if seq, ok := parse(buf[:n]); ok {
				ua, _ := from.(*net.UDPAddr)
				fa := natstun.AddrPortOf(ua)
				select {
				case arrivals <- arrival{seq, fa, at}:
				default:
				}
			}
		}
	})
	defer relay.SetReadDeadline(time.Now())

	wait := c.o.stepTimeout()
	if wait > time.Second {
		wait = time.Second // after the last packet, beyond any sane RTT
	}

	// Hello from the peer: up to three, 100 ms apart.
	relayed := net.UDPAddrFromAddrPort(c.res.Relayed)
	peerAddr := netip.AddrPortFrom(permIP, peerLocal.Port())
	gotHello := false
	hello := packet(helloSeq)
	deadline := time.NewTimer(wait)
	tick := time.NewTicker(100 * time.Millisecond)
	peer.WriteTo(hello, relayed)
	sentHello := 1
helloLoop:
	for {
		select {
		case a := <-arrivals:
			if a.seq == helloSeq {
				gotHello = true
				c.gotHello = true
				peerAddr = a.from
				break helloLoop
			}
		case <-tick.C:
			if sentHello < 3 {
				peer.WriteTo(hello, relayed)
				sentHello++
			}
		case <-deadline.C:
			break helloLoop
		case <-ctx.Done():
			break helloLoop
		}
	}
	tick.Stop()
	deadline.Stop()

	n := c.o.packets()
	data := &natclass.RelayData{Peer: peerAddr, Sent: n}
	c.res.Data = data
	recv := map[uint32]time.Time{}
	t := time.NewTicker(c.o.interval())
	defer t.Stop()
	sent := 0
	var lastSent time.Time
	send := func() {
		if _, err := relay.WriteTo(packet(uint32(sent)), net.UDPAddrFromAddrPort(peerAddr)); err != nil {
			c.warn("sending packet %d through the relay: %v", sent, err)
		}
		sent++
		lastSent = time.Now()
	}
	send()
	var end <-chan time.Time
collect:
	for len(recv) < n {
		select {
		case a := <-arrivals:
			if a.seq < uint32(n) {
				if _, dup := recv[a.seq]; !dup {
					recv[a.seq] = a.at
				}
			}
		case <-t.C:
			if sent < n {
				send()
				if sent == n {
					end = time.After(time.Until(lastSent.Add(wait)))
				}
			}
		case <-end:
			break collect
		case <-ctx.Done():
			break collect
		}
	}
	data.Sent = sent
	data.Received = len(recv)
	var total time.Duration
	for seq, at := range recv {
		st, ok := c.rec.probeTime(seq)
		if !ok {
			continue
		}
		rtt := at.Sub(st)
		total += rtt
		if data.RTTMin == 0 || rtt < data.RTTMin {
			data.RTTMin = rtt
		}
		if rtt > data.RTTMax {
			data.RTTMax = rtt
		}
	}
	if len(recv) > 0 {
		data.RTTAvg = total / time.Duration(len(recv))
	}
	switch {
	case data.Received == 0:
		c.res.FailedStep = natclass.TURNStepData
		c.res.Error = fmt.Sprintf("allocation and permission succeeded, but none of %d packets came back through the relay", sent)
		if !gotHello {
			c.res.Error += " (nor did the peer's first packet to the relayed address)"
		}
		c.res.Hint = fmt.Sprintf("the server does not pass data between its relayed address %s and peers: open the relay port range (coturn min-port..max-port, UDP) in the server's firewall, and check external-ip and relay-ip", c.res.Relayed)
		return false
	case data.Received < data.Sent:
		c.warn("%d of %d packets through the relay were lost", data.Sent-data.Received, data.Sent)
	}
	if !gotHello {
		c.warn("the peer's first packet to the relayed address did not come through; data flowed anyway")
	}
	return true
}

// tlsInfo is natclass.TLSInfo plus the handshake time.
type tlsInfo struct {
	natclass.TLSInfo
	handshake time.Duration
}

// handshake runs the TLS handshake with verification as configured, and
// describes the certificate even when verification fails.
func handshake(ctx context.Context, conn net.Conn, host string, o Options) (*tls.Conn, *tlsInfo, error) {
	cfg := o.tlsConfig(host)
	info := &tlsInfo{}
	info.ServerName = host
	var verifyErr error
	var seen []*x509.Certificate
	// Verify ourselves, so the certificate can be described on failure and
	// --insecure can report what verification would have said.
	cfg.InsecureSkipVerify = true
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		seen = cs.PeerCertificates
		if len(seen) == 0 {
			verifyErr = errors.New("the server sent no certificate")
		} else {
			opts := x509.VerifyOptions{Roots: o.RootCAs, DNSName: host, Intermediates: x509.NewCertPool(), CurrentTime: o.now()}
			for _, ic := range seen[1:] {
				opts.Intermediates.AddCert(ic)
			}
			_, verifyErr = seen[0].Verify(opts)
		}
		if verifyErr != nil && !o.Insecure {
			return verifyErr
		}
		return nil
	}
	tc := tls.Client(conn, cfg)
	hctx, cancel := context.WithTimeout(ctx, o.stepTimeout())
	defer cancel()
	t0 := time.Now()
	err := tc.HandshakeContext(hctx)
	info.handshake = time.Since(t0)
	if len(seen) > 0 {
		leaf := seen[0]
		info.Subject = leaf.Subject.CommonName
		info.Issuer = leaf.Issuer.CommonName
		info.DNSNames = leaf.DNSNames
		info.NotAfter = leaf.NotAfter.UTC()
	}
	if verifyErr != nil {
		info.VerifyError = verifyErr.Error()
	}
	if err != nil {
		if len(seen) == 0 {
			return nil, nil, err
		}
		return nil, info, err
	}
	info.Version = tls.VersionName(tc.ConnectionState().Version)
	info.Verified = verifyErr == nil
	return tc, info, nil
}

func days(d time.Duration) string {
	switch n := int(d.Hours() / 24); n {
	case 0:
		return "less than a day"
	case 1:
		return "1 day"
	default:
		return fmt.Sprintf("%d days", n)
	}
}
