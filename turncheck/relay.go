package turncheck

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/natcheck/natcheck/natclass"
	natstun "github.com/natcheck/natcheck/stun"
)

// relayData creates a permission for a local peer socket, has the peer
// send one packet to the relayed address (opening its own NAT, and telling
// its address as the relay sees it), then sends packets through the relay
// to the peer, which echoes them back.
func (c *checker) relayData(ctx context.Context, relay net.PacketConn) bool {
	// The peer socket is on our end of the control connection, or, when
	// the relayed address is of the other family (RFC 6156), on the
	// address this host sends to the relayed address from.
	local := c.res.Local.Addr()
	sameFamily := Family(local) == Family(c.res.Relayed.Addr())
	// Through NAT64 the peer socket is on our IPv6 end too, and sends to
	// the IPv4 relayed address synthesized into the prefix; the relay
	// sees it at the NAT64's public IPv4 address (XOR-MAPPED-ADDRESS).
	relayedDest := c.res.Relayed
	nat64 := c.o.viaNAT64(c.res.Server) && c.res.Relayed.Addr().Is4()
	if nat64 {
		s, err := natclass.SynthesizeNAT64(c.o.NAT64, c.res.Relayed.Addr())
		if err == nil && !c.res.Mapped.Addr().Unmap().Is4() {
			err = fmt.Errorf("the server named no IPv4 address for us (XOR-MAPPED-ADDRESS %v) to permit", c.res.Mapped)
		}
		if err != nil {
			c.fail(natclass.TURNStepPermission, fmt.Errorf("reaching the relayed address %s through NAT64: %w", c.res.Relayed, err))
			return false
		}
		relayedDest = netip.AddrPortFrom(s, c.res.Relayed.Port())
	}
	c.relayedDest = relayedDest
	if !sameFamily && !nat64 {
		var err error
		if local, err = sourceFor(c.res.Relayed); err != nil {
			c.fail(natclass.TURNStepPermission, fmt.Errorf("opening the local peer socket: no %s route to the relayed address %s: %w", Family(c.res.Relayed.Addr()), c.res.Relayed, err))
			return false
		}
	}
	peer, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, 0)))
	if err != nil {
		c.fail(natclass.TURNStepPermission, fmt.Errorf("opening the local peer socket: %w", err))
		return false
	}
	defer peer.Close()
	peerLocal := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	// Permissions are per IP address (RFC 8656 section 9): our address as
	// the server sees it (XOR-MAPPED-ADDRESS is of the transport's family).
	permIP := local
	if c.res.Mapped.IsValid() && (sameFamily || nat64) {
		permIP = c.res.Mapped.Addr().Unmap()
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
	relayed := net.UDPAddrFromAddrPort(relayedDest)
	peerAddr := netip.AddrPortFrom(permIP, peerLocal.Port())
	gotHello := false
	hello := packet(helloSeq)
	deadline := time.NewTimer(wait)
	tick := time.NewTicker(100 * time.Millisecond)
	skipHello := false
	if c.o.Allow != nil {
		if err := c.o.Allow(relayedDest); err != nil {
			c.warn("the local peer socket sent nothing to the relayed address directly: %v", err)
			skipHello = true
		}
	}
	sentHello := 0
	if !skipHello {
		peer.WriteTo(hello, relayed)
		sentHello = 1
	}
helloLoop:
	for !skipHello {
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
		if !gotHello && !skipHello {
			c.res.Error += " (nor did the peer's first packet to the relayed address)"
		}
		c.res.Hint = fmt.Sprintf("the server does not pass data between its relayed address %s and peers: open the relay port range (coturn min-port..max-port, UDP) in the server's firewall, and check external-ip and relay-ip", c.res.Relayed)
		return false
	case data.Received < data.Sent:
		c.warn("%d of %d packets through the relay were lost", data.Sent-data.Received, data.Sent)
	}
	if !gotHello && !skipHello {
		c.warn("the peer's first packet to the relayed address did not come through; data flowed anyway")
	}
	return true
}

// sourceFor is the address this host sends to ap from: a UDP socket
// connected to ap, which sends nothing, tells the route's source.
func sourceFor(ap netip.AddrPort) (netip.Addr, error) {
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(ap))
	if err != nil {
		return netip.Addr{}, err
	}
	defer conn.Close()
	return conn.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap(), nil
}
