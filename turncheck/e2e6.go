package turncheck

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/pion/turn/v5"

	"github.com/natcheck/natcheck/natclass"
)

// relayOverTURNClients is why the end-to-end check for an IPv4 relay over
// an IPv6 transport uses two TURN clients: pion/ice (v4.4.9) announces
// relayed candidates of its network types only, and pion/turn (v5.1.3)
// sends no REQUESTED-ADDRESS-FAMILY for IPv4, so a server that relays in
// its transport's family gives ICE agents nothing they may announce.
const relayOverTURNClients = "pion/turn asks for no IPv4 relayed address over IPv6, so two ICE agents would gather no relay candidate"

// useTURNClients reports whether the end-to-end check to server needs two
// TURN clients instead of two ICE agents: for IPv4 relayed addresses over
// an IPv6 transport.
func useTURNClients(server netip.AddrPort, o Options) bool {
	return server.Addr().Unmap().Is6() && o.relayFamily(server) == 4
}

// endToEndClients is the end-to-end check done by two TURN clients, each
// with an allocation on the server (over the URL's transport, asking for
// o.RelayFamily), each permitting the other's relayed address: data goes
// from one relayed address to the other and back, which is what two ICE
// agents' relay-relay pair would carry.
func endToEndClients(ctx context.Context, s Server, server netip.AddrPort, o Options) natclass.EndToEnd {
	var res natclass.EndToEnd
	start := time.Now()
	type side struct {
		c     *checker
		relay net.PacketConn
	}
	var sides []*side
	defer func() {
		for _, sd := range sides {
			if sd.relay != nil {
				sd.relay.Close()
			}
			if sd.c.client != nil {
				sd.c.client.Close()
			}
			if sd.c.rec != nil && (sd.c.rec.udp != nil || sd.c.rec.pc != nil) {
				sd.c.rec.Close()
			}
		}
	}()
	open := func() (*side, error) {
		c := &checker{o: o, s: s}
		sd := &side{c: c}
		sides = append(sides, sd)
		user, pw, _ := s.Credentials.Resolve(o.now())
		c.user, c.password = user, pw
		c.rec = newRecorder(s.URL.String(), nil, nil, time.Now)
		c.rec.server = net.UDPAddrFromAddrPort(server)
		c.res.Server = server
		if !c.connect(ctx, server) {
			return sd, errors.New(c.res.Error)
		}
		client, err := turn.NewClient(&turn.ClientConfig{
			TURNServerAddr: server.String(), Conn: c.rec,
			Username: user, Password: pw.Reveal(), Software: "natcheck",
			LoggerFactory:          newLogFactory(pw.Reveal(), s.Credentials.SharedSecret.Reveal()),
			RequestedAddressFamily: requestedFamily(o.relayFamily(server)),
		})
		if err != nil {
			return sd, err
		}
		c.client = client
		if err := client.Listen(); err != nil {
			return sd, err
		}
		err = c.step(ctx, func() error {
			var err error
			sd.relay, err = client.Allocate()
			return err
		})
		if err != nil {
			c.fail(natclass.TURNStepAllocate, err)
			return sd, errors.New(c.res.Error)
		}
		return sd, nil
	}
	a, err := open()
	if err != nil {
		res.Error = "allocating the first relay: " + err.Error()
		return res
	}
	b, err := open()
	if err != nil {
		res.Error = "allocating the second relay: " + err.Error()
		return res
	}
	aAddr, bAddr := a.relay.LocalAddr().(*net.UDPAddr), b.relay.LocalAddr().(*net.UDPAddr)
	for _, p := range []struct {
		from *side
		to   *net.UDPAddr
	}{{a, bAddr}, {b, aAddr}} {
		err := p.from.c.step(ctx, func() error { return p.from.c.client.CreatePermission(p.to) })
		if err != nil {
			p.from.c.fail(natclass.TURNStepPermission, err)
			res.Error = fmt.Sprintf("permission for the other relayed address %s: %s", p.to, p.from.c.res.Error)
			return res
		}
	}
	res.Time = time.Since(start)
	desc := func(addr *net.UDPAddr) string {
		return fmt.Sprintf("relay udp %s (to the server over %s)", addr, s.URL.Transport)
	}
	res.Local, res.Remote = desc(aAddr), desc(bAddr)

	// b echoes what comes to its relayed address from a's.
	const n = 3
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for i := 0; i < n; i++ {
			b.relay.SetReadDeadline(time.Now().Add(o.stepTimeout()))
			k, from, err := b.relay.ReadFrom(buf)
			if err != nil {
				return
			}
			b.relay.WriteTo(buf[:k], from)
		}
	}()
	buf := make([]byte, 1500)
	for i := 0; i < n && ctx.Err() == nil; i++ {
		msg := fmt.Sprintf("natcheck end-to-end %d", i)
		if _, err := a.relay.WriteTo([]byte(msg), bAddr); err != nil {
			break
		}
		res.Sent++
		a.relay.SetReadDeadline(time.Now().Add(o.stepTimeout()))
		k, _, err := a.relay.ReadFrom(buf)
		if err != nil {
			break
		}
		if string(buf[:k]) == msg {
			res.Received++
		}
	}
	b.relay.SetReadDeadline(time.Now())
	<-done
	res.Connected = res.Received > 0
	if !res.Connected {
		res.Error = "no data came back between the two relayed addresses"
	}
	return res
}
