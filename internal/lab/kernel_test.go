package lab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	natstun "github.com/natcheck/natcheck/stun"
	"github.com/pion/stun/v4"
)

// filteringSeen is what reached a client socket that had sent only to
// coturn's primary address (198.19.0.2:3478), measured with packets the
// kernel either forwards or drops: no natcheck involved.
type filteringSeen struct {
	Local, Mapped netip.AddrPort
	// coturn's replies to CHANGE-REQUEST change-port (from 198.19.0.2:3479)
	// and change-ip|change-port (from 198.19.0.3:3479).
	ChangePort, ChangeIPPort bool
	// Datagrams from sockets in the internet namespace on ephemeral ports
	// of 198.19.0.2 (the address the client sent to) and of 198.19.0.3.
	SameIP, OtherIP bool
}

// Filtering names what the kernel did: endpoint-independent when packets
// from the other address arrived, address-dependent when only those from
// the address the client sent to did, address-and-port-dependent when
// neither did. The coturn replies must agree with the datagrams.
func (f filteringSeen) Filtering() (string, error) {
	if f.ChangePort != f.SameIP || f.ChangeIPPort != f.OtherIP {
		return Unknown, fmt.Errorf("coturn's change replies (port %v, ip+port %v) disagree with the datagrams (same address %v, other address %v)",
			f.ChangePort, f.ChangeIPPort, f.SameIP, f.OtherIP)
	}
	switch {
	case f.SameIP && f.OtherIP:
		return EndpointIndependent, nil
	case f.SameIP:
		return AddressDependent, nil
	case !f.OtherIP:
		return AddressAndPortDependent, nil
	}
	return Unknown, errors.New("packets from the other address arrived, but not from the address the client sent to")
}

// probeFiltering opens a fresh client socket, learns its mapping from
// coturn's primary address, and then, for window, has coturn answer from
// 198.19.0.2:3479 and 198.19.0.3:3479 (CHANGE-REQUEST) and sockets on
// 198.19.0.2 and 198.19.0.3 send to the mapped address, every 100 ms. The
// client never sends to anything but 198.19.0.2:3478.
func probeFiltering(l *Lab, window time.Duration) (filteringSeen, error) {
	return probeFilteringAt(l, familyAddrs{client: ClientAddr, primary: STUNAddr, alt: STUNAltAddr}, window)
}

// familyAddrs are the addresses of one family that probeFilteringAt uses:
// the client's own, and coturn's primary and alternate.
type familyAddrs struct {
	client, primary, alt netip.Addr
}

// probeFilteringAt is probeFiltering in the family of a (IPv4 or IPv6).
func probeFilteringAt(l *Lab, a familyAddrs, window time.Duration) (filteringSeen, error) {
	var seen filteringSeen
	network := "udp4"
	if a.client.Is6() {
		network = "udp6"
	}
	primary := netip.AddrPortFrom(a.primary, STUNPort)
	var c *net.UDPConn
	if err := InNetns(l.Client, func() error {
		var err error
		c, err = net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(a.client, 0)))
		return err
	}); err != nil {
		return seen, err
	}
	defer c.Close()
	seen.Local = c.LocalAddr().(*net.UDPAddr).AddrPort()
	mapped, err := bindingOn(c, primary, 2*time.Second)
	if err != nil {
		return seen, err
	}
	seen.Mapped = mapped

	senders := make(map[netip.Addr]*net.UDPConn)
	for _, addr := range []netip.Addr{a.primary, a.alt} {
		var s *net.UDPConn
		if err := InNetns(l.Internet, func() error {
			var err error
			s, err = net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, 0)))
			return err
		}); err != nil {
			return seen, err
		}
		defer s.Close()
		senders[addr] = s
	}
	port, err := stun.Build(stun.TransactionID, stun.BindingRequest, natstun.ChangeRequest{ChangePort: true}, stun.Fingerprint)
	if err != nil {
		return seen, err
	}
	both, err := stun.Build(stun.TransactionID, stun.BindingRequest, natstun.ChangeRequest{ChangeIP: true, ChangePort: true}, stun.Fingerprint)
	if err != nil {
		return seen, err
	}

	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		c.SetReadDeadline(time.Now().Add(window))
		for i := 0; i < 1000; i++ {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
			m := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
			mu.Lock()
			switch {
			case m.Decode() == nil && m.TransactionID == port.TransactionID && from == netip.AddrPortFrom(a.primary, STUNAltPort):
				seen.ChangePort = true
			case m.Decode() == nil && m.TransactionID == both.TransactionID && from == netip.AddrPortFrom(a.alt, STUNAltPort):
				seen.ChangeIPPort = true
			case string(buf[:n]) == "probe" && from.Addr() == a.primary && from.Port() != STUNPort && from.Port() != STUNAltPort:
				seen.SameIP = true
			case string(buf[:n]) == "probe" && from.Addr() == a.alt && from.Port() != STUNPort && from.Port() != STUNAltPort:
				seen.OtherIP = true
			}
			mu.Unlock()
		}
	}()
	deadline := time.Now().Add(window - 100*time.Millisecond)
	for i := 0; i < 50 && time.Now().Before(deadline); i++ {
		for _, m := range []*stun.Message{port, both} {
			if _, err := c.WriteToUDPAddrPort(m.Raw, primary); err != nil {
				return seen, err
			}
		}
		for _, s := range senders {
			if _, err := s.WriteToUDPAddrPort([]byte("probe"), mapped); err != nil {
				return seen, err
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	<-done
	mu.Lock()
	defer mu.Unlock()
	return seen, nil
}

// bindingOn sends Binding requests from c to server every 100 ms until a
// response arrives or timeout passes, and returns XOR-MAPPED-ADDRESS.
func bindingOn(c *net.UDPConn, server netip.AddrPort, timeout time.Duration) (netip.AddrPort, error) {
	req, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	if err != nil {
		return netip.AddrPort{}, err
	}
	defer c.SetReadDeadline(time.Time{})
	buf := make([]byte, 1500)
	deadline := time.Now().Add(timeout)
	for i := 0; i < 100 && time.Now().Before(deadline); i++ {
		if _, err := c.WriteToUDPAddrPort(req.Raw, server); err != nil {
			return netip.AddrPort{}, err
		}
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		for j := 0; j < 100; j++ {
			n, _, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				break
			}
			m := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
			if m.Decode() != nil || m.TransactionID != req.TransactionID {
				continue
			}
			var xor stun.XORMappedAddress
			if err := xor.GetFrom(m); err != nil {
				return netip.AddrPort{}, err
			}
			return addrPort(xor.IP, xor.Port), nil
		}
	}
	return netip.AddrPort{}, fmt.Errorf("no binding response from %v within %v", server, timeout)
}

// earlyPacket plays issue 10 with plain datagrams: a socket in the
// internet namespace (on the plain STUN server's address, ephemeral port)
// sends to the client's public address at port p before the client socket
// bound to p has sent anything; then the client sends to that socket. It
// returns p and the source port the internet socket saw: the same where
// the router keeps the client's port, another where an earlier packet
// left a conntrack entry that masquerade must avoid (input accept).
func earlyPacket(l *Lab) (local, public uint16, err error) {
	var c, s *net.UDPConn
	if err := InNetns(l.Client, func() error {
		var err error
		c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ClientAddr, 0)))
		return err
	}); err != nil {
		return 0, 0, err
	}
	defer c.Close()
	if err := InNetns(l.Internet, func() error {
		var err error
		s, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(PlainSTUNAddr, 0)))
		return err
	}); err != nil {
		return 0, 0, err
	}
	defer s.Close()
	local = c.LocalAddr().(*net.UDPAddr).AddrPort().Port()
	dest := s.LocalAddr().(*net.UDPAddr).AddrPort()
	for i := 0; i < 3; i++ {
		if _, err := s.WriteToUDPAddrPort([]byte("early"), netip.AddrPortFrom(l.PublicAddr, local)); err != nil {
			return local, 0, err
		}
	}
	time.Sleep(50 * time.Millisecond)
	buf := make([]byte, 1500)
	for i := 0; i < 10; i++ {
		if _, err := c.WriteToUDPAddrPort([]byte("hello"), dest); err != nil {
			return local, 0, err
		}
		s.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, from, err := s.ReadFromUDPAddrPort(buf)
		if err == nil && string(buf[:n]) == "hello" {
			return local, from.Port(), nil
		}
	}
	return local, 0, fmt.Errorf("the client's datagrams to %v never arrived", dest)
}
