package lab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/pion/stun/v4"
)

// BindingResult is what one STUN Binding request saw.
type BindingResult struct {
	Local  netip.AddrPort // the socket's local address
	Mapped netip.AddrPort // XOR-MAPPED-ADDRESS
	Other  netip.AddrPort // OTHER-ADDRESS, if the server sent one
	From   netip.AddrPort // where the response came from
}

// Binding sends one STUN Binding request from a fresh UDP socket bound to
// local inside namespace ns to server, and waits at most timeout for the
// response, retransmitting every 100 ms. The socket is IPv6 when local
// is an IPv6 address, IPv4 otherwise.
func (l *Lab) Binding(ns string, local, server netip.AddrPort, timeout time.Duration) (BindingResult, error) {
	var c *net.UDPConn
	network := "udp4"
	if local.Addr().Is6() && !local.Addr().Is4In6() {
		network = "udp6"
	}
	err := InNetns(ns, func() error {
		var err error
		c, err = net.ListenUDP(network, net.UDPAddrFromAddrPort(local))
		return err
	})
	if err != nil {
		return BindingResult{}, err
	}
	defer c.Close()
	req, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	if err != nil {
		return BindingResult{}, err
	}
	res := BindingResult{Local: c.LocalAddr().(*net.UDPAddr).AddrPort()}
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 1500)
	for i := 0; i < 1000 && time.Now().Before(deadline); i++ {
		if _, err := c.WriteToUDPAddrPort(req.Raw, server); err != nil {
			return res, err
		}
		wait := time.Now().Add(100 * time.Millisecond)
		if wait.After(deadline) {
			wait = deadline
		}
		c.SetReadDeadline(wait)
		for j := 0; j < 100; j++ {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break
				}
				return res, err
			}
			m := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
			if m.Decode() != nil || m.TransactionID != req.TransactionID {
				continue
			}
			var xor stun.XORMappedAddress
			if err := xor.GetFrom(m); err != nil {
				return res, fmt.Errorf("binding response from %v: %w", from, err)
			}
			res.Mapped = addrPort(xor.IP, xor.Port)
			var other stun.OtherAddress
			if other.GetFrom(m) == nil {
				res.Other = addrPort(other.IP, other.Port)
			}
			res.From = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
			return res, nil
		}
	}
	return res, fmt.Errorf("no binding response from %v within %v", server, timeout)
}

func addrPort(ip net.IP, port int) netip.AddrPort {
	a, _ := netip.AddrFromSlice(ip)
	return netip.AddrPortFrom(a.Unmap(), uint16(port))
}
