package lab

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	natstun "github.com/natcheck/natcheck/stun"
	"github.com/pion/stun/v4"
)

// responseSeen is one STUN response that arrived for a request.
type responseSeen struct {
	At     string         // "X" (the requesting socket) or "Y" (the RESPONSE-PORT socket)
	From   netip.AddrPort // the response's source
	Class  stun.MessageClass
	Code   int            // error code of an error response
	Mapped netip.AddrPort // XOR-MAPPED-ADDRESS of a success response
	Origin netip.AddrPort // RESPONSE-ORIGIN, if present
}

func (r responseSeen) String() string {
	s := fmt.Sprintf("at %s from %v: %s", r.At, r.From, r.Class)
	if r.Class == stun.ClassErrorResponse {
		s += fmt.Sprintf(" %d", r.Code)
	}
	if r.Mapped.IsValid() {
		s += fmt.Sprintf(", mapped %v", r.Mapped)
	}
	if r.Origin.IsValid() {
		s += fmt.Sprintf(", response-origin %v", r.Origin)
	}
	return s
}

// responsePortProbe sends, from client socket X, a Binding request with
// RESPONSE-PORT (and change, if any) to server, up to 5 times 100 ms apart,
// and collects for window every response with its transaction ID on X and
// on a second client socket Y. RESPONSE-PORT is Y's own port, or, when
// openY is valid, the port of Y's mapping towards openY, which Y first
// learns with a Binding request to openY (opening Y's NAT towards it).
func responsePortProbe(l *Lab, server netip.AddrPort, change *natstun.ChangeRequest, openY netip.AddrPort, window time.Duration) (x, y netip.AddrPort, port uint16, seen []responseSeen, err error) {
	var cx, cy *net.UDPConn
	if err := InNetns(l.Client, func() error {
		var err error
		if cx, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ClientAddr, 0))); err != nil {
			return err
		}
		cy, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ClientAddr, 0)))
		return err
	}); err != nil {
		return x, y, 0, nil, err
	}
	defer cx.Close()
	defer cy.Close()
	x = cx.LocalAddr().(*net.UDPAddr).AddrPort()
	y = cy.LocalAddr().(*net.UDPAddr).AddrPort()
	port = y.Port()
	if openY.IsValid() {
		m, err := bindingOn(cy, openY, 2*time.Second)
		if err != nil {
			return x, y, 0, nil, err
		}
		port = m.Port()
	}
	setters := []stun.Setter{stun.TransactionID, stun.BindingRequest, natstun.ResponsePort(port)}
	if change != nil {
		setters = append(setters, *change)
	}
	setters = append(setters, stun.Fingerprint)
	req, err := stun.Build(setters...)
	if err != nil {
		return x, y, port, nil, err
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	end := time.Now().Add(window)
	for name, c := range map[string]*net.UDPConn{"X": cx, "Y": cy} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1500)
			c.SetReadDeadline(end)
			for i := 0; i < 1000; i++ {
				n, from, err := c.ReadFromUDPAddrPort(buf)
				if err != nil {
					return
				}
				m := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
				if m.Decode() != nil || m.TransactionID != req.TransactionID {
					continue
				}
				r := responseSeen{At: name, From: netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), Class: m.Type.Class}
				var ec stun.ErrorCodeAttribute
				if ec.GetFrom(m) == nil {
					r.Code = int(ec.Code)
				}
				var xor stun.XORMappedAddress
				if xor.GetFrom(m) == nil {
					r.Mapped = addrPort(xor.IP, xor.Port)
				}
				var origin stun.ResponseOrigin
				if origin.GetFrom(m) == nil {
					r.Origin = addrPort(origin.IP, origin.Port)
				}
				mu.Lock()
				seen = append(seen, r)
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < 5 && time.Now().Before(end); i++ {
		if _, err := cx.WriteToUDPAddrPort(req.Raw, server); err != nil {
			return x, y, port, nil, err
		}
		time.Sleep(100 * time.Millisecond)
	}
	wg.Wait()
	return x, y, port, seen, nil
}

// TestCoturnResponsePort finds out what coturn does with RFC 5780's
// RESPONSE-PORT (section 7.5; attribute 0x0027, a 16-bit port and 2 bytes
// of padding): socket X sends a Binding request with RESPONSE-PORT = a port
// of socket Y, alone and with CHANGE-REQUEST; the response arrives at Y
// (honoured), at X (ignored) or is an error such as 420 (unsupported).
//
// Behind a routed router (no translation, no filtering) it shows what the
// server does; behind symmetric with input accept it plays the control of
// shared/nat-testing.md: Y first talks to coturn's alternate address A:a,
// then X asks the primary P:p for a change-IP-and-port reply with
// RESPONSE-PORT = Y's public port towards A:a; Y receives it. Without the
// change the reply comes from P:p, towards which Y's port is not open: it
// never arrives (the kernel filters by address and port).
//
// Measured with coturn 4.6.1: honoured, with and without CHANGE-REQUEST
// (XOR-MAPPED-ADDRESS is X's, RESPONSE-ORIGIN the changed source); the
// plain server (stun-only, no-rfc5780) ignores it and answers X, without
// an error.
func TestCoturnResponsePort(t *testing.T) {
	if testing.Short() {
		t.Skip("lab: skipped in -short mode")
	}
	SkipIfUnavailable(t)
	changeBoth := &natstun.ChangeRequest{ChangeIP: true, ChangePort: true}
	changePort := &natstun.ChangeRequest{ChangePort: true}
	pa := netip.AddrPortFrom(STUNAddr, STUNAltPort) // P:a
	type probe struct {
		name   string
		server netip.AddrPort
		change *natstun.ChangeRequest
		openY  netip.AddrPort
		at     string         // where the responses must arrive: "X", "Y", or "" for nowhere
		from   netip.AddrPort // their source
	}
	for _, c := range []struct {
		mode   Mode
		input  InputPolicy
		probes []probe
	}{
		{Routed, InputDrop, []probe{
			{name: "coturn", server: netip.AddrPortFrom(STUNAddr, STUNPort), at: "Y", from: netip.AddrPortFrom(STUNAddr, STUNPort)},
			{name: "coturn/change-ip-port", server: netip.AddrPortFrom(STUNAddr, STUNPort), change: changeBoth, at: "Y", from: netip.AddrPortFrom(STUNAltAddr, STUNAltPort)},
			{name: "coturn/change-port", server: netip.AddrPortFrom(STUNAddr, STUNPort), change: changePort, at: "Y", from: pa},
			{name: "plain", server: netip.AddrPortFrom(PlainSTUNAddr, STUNPort), at: "X", from: netip.AddrPortFrom(PlainSTUNAddr, STUNPort)},
		}},
		{Symmetric, InputAccept, []probe{
			{name: "control", server: netip.AddrPortFrom(STUNAddr, STUNPort), change: changeBoth, openY: netip.AddrPortFrom(STUNAltAddr, STUNAltPort),
				at: "Y", from: netip.AddrPortFrom(STUNAltAddr, STUNAltPort)},
			{name: "unchanged", server: netip.AddrPortFrom(STUNAddr, STUNPort), openY: netip.AddrPortFrom(STUNAltAddr, STUNAltPort), at: ""},
		}},
	} {
		t.Run(string(c.mode), func(t *testing.T) {
			t.Parallel()
			l := New(t, Options{Mode: c.mode, Input: c.input})
			for _, p := range c.probes {
				t.Run(p.name, func(t *testing.T) {
					counted(t)
					x, y, port, seen, err := responsePortProbe(l, p.server, p.change, p.openY, 800*time.Millisecond)
					if err != nil {
						t.Fatal(err)
					}
					var lines []string
					for _, s := range seen {
						lines = append(lines, s.String())
					}
					opened := ""
					if p.openY.IsValid() {
						opened = fmt.Sprintf(", Y's public port towards %v", p.openY)
					}
					t.Logf("behind %s (input %s): X %v sent to %v with RESPONSE-PORT %d (Y %v%s), CHANGE-REQUEST %v: %d responses: %s",
						c.mode, c.input, x, p.server, port, y, opened, p.change, len(seen), strings.Join(lines, "; "))
					if p.at == "" {
						if len(seen) > 0 {
							t.Errorf("responses arrived, want none: %s", strings.Join(lines, "; "))
						}
						return
					}
					if len(seen) == 0 {
						t.Fatalf("no response at X or Y, want one at %s from %v", p.at, p.from)
					}
					for _, s := range seen {
						if s.At != p.at || s.From != p.from || s.Class != stun.ClassSuccessResponse {
							t.Errorf("response %s; want a success response at %s from %v", s, p.at, p.from)
						}
						if c.mode == Routed && s.Mapped != x {
							t.Errorf("response %s: XOR-MAPPED-ADDRESS is not X's address %v", s, x)
						}
					}
				})
			}
		})
	}
}
