package probe

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/natcheck/natcheck/natclass"
	"github.com/natcheck/natcheck/stunserver"
)

// TestVerifyInbound: on loopback there is no NAT, so the "external" port
// is the mapped socket's own: the server's answer arrives there. With the
// port of a socket that is closed, nothing arrives.
func TestVerifyInbound(t *testing.T) {
	s := startServer(t, stunserver.Config{})
	mapped, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer mapped.Close()
	port := uint16(mapped.LocalAddr().(*net.UDPAddr).Port)
	got, err := VerifyInbound(context.Background(), mapped, s.Primary(), port, 2*time.Second)
	if got != natclass.TriYes || err != nil {
		t.Fatalf("got %v, %v; want yes", got, err)
	}

	closed, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	closedPort := uint16(closed.LocalAddr().(*net.UDPAddr).Port)
	closed.Close()
	got, err = VerifyInbound(context.Background(), mapped, s.Primary(), closedPort, 500*time.Millisecond)
	if got != natclass.TriNo || err != nil {
		t.Fatalf("got %v, %v; want no", got, err)
	}
	// mapped is usable afterwards (no read deadline left behind).
	if err := mapped.SetReadDeadline(time.Now().Add(10 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
}
