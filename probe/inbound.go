package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/pion/stun/v4"

	"github.com/natcheck/natcheck/natclass"
	natstun "github.com/natcheck/natcheck/stun"
)

// VerifyInbound tests whether unsolicited UDP reaches mapped through a
// port mapping whose external port is externalPort. From a second socket
// (fresh, so mapped never talks to anyone) it sends Binding requests with
// RESPONSE-PORT externalPort (RFC 5780 section 7.5) to server, which
// answers to this network's public address at that port: the answer
// comes from an address mapped never sent to. A second request also
// carries CHANGE-REQUEST (change IP and port), so that an answer from the
// server's other address counts too.
//
// It returns TriYes when an answer to one of the requests arrived on
// mapped, TriNo when none did within timeout, and natclass.TriUnknown with an
// error when the test could not be made (the server ignored RESPONSE-PORT
// and answered the sending socket, or nothing could be sent).
func VerifyInbound(ctx context.Context, mapped *net.UDPConn, server netip.AddrPort, externalPort uint16, timeout time.Duration) (natclass.Tri, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	sender, err := net.ListenUDP("udp4", nil)
	if err != nil {
		return natclass.TriUnknown, err
	}
	defer sender.Close()
	var reqs []*stun.Message
	for _, cr := range []*natstun.ChangeRequest{nil, {ChangeIP: true, ChangePort: true}} {
		setters := []stun.Setter{stun.TransactionID, stun.BindingRequest, natstun.ResponsePort(externalPort)}
		if cr != nil {
			setters = append(setters, *cr)
		}
		setters = append(setters, stun.Fingerprint)
		m, err := stun.Build(setters...)
		if err != nil {
			return natclass.TriUnknown, err
		}
		reqs = append(reqs, m)
	}
	ids := map[[stun.TransactionIDSize]byte]bool{}
	for _, m := range reqs {
		ids[m.TransactionID] = true
	}
	got := make(chan bool, 2) // true: on mapped; false: on sender
	watch := func(c *net.UDPConn, onMapped bool) {
		buf := make([]byte, 1500)
		for {
			n, _, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			var m stun.Message
			m.Raw = append([]byte(nil), buf[:n]...)
			if m.Decode() == nil && ids[m.TransactionID] {
				got <- onMapped
				return
			}
		}
	}
	stop := context.AfterFunc(ctx, func() {
		mapped.SetReadDeadline(time.Unix(1, 0))
		sender.SetReadDeadline(time.Unix(1, 0))
	})
	defer stop()
	done := make(chan struct{}, 2)
	go func() { watch(mapped, true); done <- struct{}{} }()
	go func() { watch(sender, false); done <- struct{}{} }()
	defer func() {
		cancel()
		<-done
		<-done
		mapped.SetReadDeadline(time.Time{})
	}()
	dest := net.UDPAddrFromAddrPort(server)
	ignored := false
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
wait:
	for sends := 0; ; {
		if sends < 3 {
			for _, m := range reqs {
				if _, err := sender.WriteToUDP(m.Raw, dest); err != nil {
					return natclass.TriUnknown, fmt.Errorf("sending to %s: %w", server, err)
				}
			}
			sends++
		}
		select {
		case onMapped := <-got:
			if onMapped {
				return natclass.TriYes, nil
			}
			ignored = true
		case <-tick.C:
		case <-ctx.Done():
			break wait
		}
	}
	if ignored {
		return natclass.TriUnknown, errors.New("the server answered the sending socket: it ignores RESPONSE-PORT, so the mapping could not be tested from outside")
	}
	return natclass.TriNo, nil
}
