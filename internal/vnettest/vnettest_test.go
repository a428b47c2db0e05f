package vnettest

import (
	"net"
	"testing"
	"time"

	"github.com/pion/transport/v5/vnet"
)

// TestNATHost: a host behind a NAT reaches a WAN host, which sees the
// NAT's public address.
func TestNATHost(t *testing.T) {
	wan := NewWAN(t)
	server := wan.Host("1.2.3.4")
	client := wan.NAT("10.0.0.0/24", "27.1.1.1", &vnet.NATType{}).Host("10.0.0.2")
	wan.Start()

	s, err := server.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP("1.2.3.4"), Port: 3478})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c, err := client.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP("10.0.0.2")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.WriteTo([]byte("hello"), &net.UDPAddr{IP: net.ParseIP("1.2.3.4"), Port: 3478}); err != nil {
		t.Fatal(err)
	}
	_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	n, from, err := s.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	if string(buf[:n]) != "hello" || !from.(*net.UDPAddr).IP.Equal(net.ParseIP("27.1.1.1")) {
		t.Errorf("got %q from %v, want hello from 27.1.1.1", buf[:n], from)
	}
}
