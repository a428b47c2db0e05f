package diagnose

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/natcheck/natcheck/natclass"
	"github.com/natcheck/natcheck/portmap"
	"github.com/natcheck/natcheck/probe"
	"github.com/natcheck/natcheck/stunserver"
	"github.com/natcheck/natcheck/stunserver/stuntest"
)

// natpmpGateway is a NAT-PMP-only gateway on loopback (RFC 6886, written
// out by hand): it claims 127.0.0.1 as its external address and grants
// every mapping with external port = internal port, which is what
// loopback, without a NAT, really does. PCP requests get version 0
// UNSUPP_VERSION. It returns its port and the mapping requests seen.
func natpmpGateway(t *testing.T) (uint16, func() [][]byte) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var maps [][]byte
	done := make(chan struct{})
	t.Cleanup(func() { c.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			req := buf[:n]
			var resp []byte
			switch {
			case n == 2 && req[0] == 0 && req[1] == 0:
				resp = []byte{0, 128, 0, 0, 0, 0, 0, 1, 127, 0, 0, 1}
			case n == 12 && req[0] == 0 && req[1] == 1:
				mu.Lock()
				maps = append(maps, append([]byte(nil), req...))
				mu.Unlock()
				resp = make([]byte, 16)
				resp[1] = 129
				copy(resp[8:10], req[4:6])
				copy(resp[10:12], req[4:6])
				copy(resp[12:16], req[8:12])
			case n >= 2 && req[0] == 2:
				resp = []byte{0, 128 + req[1], 0, 1, 0, 0, 0, 1}
			}
			c.WriteToUDPAddrPort(resp, from)
		}
	}()
	return uint16(c.LocalAddr().(*net.UDPAddr).Port), func() [][]byte {
		mu.Lock()
		defer mu.Unlock()
		return append([][]byte(nil), maps...)
	}
}

// TestRunWithPortMap: detection finds NAT-PMP, --portmap maps a port,
// the RFC 5780 server's answer to RESPONSE-PORT arrives through it, the
// verdict says so, and the mapping is deleted.
func TestRunWithPortMap(t *testing.T) {
	s := stuntest.Start(t, stunserver.Config{ReflectionRate: -1})
	p := s.Primary()
	gwPort, maps := natpmpGateway(t)
	closed, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	ssdp := uint16(closed.LocalAddr().(*net.UDPAddr).Port)
	closed.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg := probe.Config{Servers: []probe.Target{{Host: p.Addr().String(), Port: p.Port()}}, NoPaths: true}
	pm := PortMap{Config: &portmap.Config{Gateway4: netip.MustParseAddr("127.0.0.1"), PMPPort: gwPort, SSDPPort: ssdp, NoMulticast: true}, Map: true}
	r := RunWith(ctx, cfg, pm, "test", probe.IPv4)
	m := r.PortMapping
	if m == nil || !m.NATPMP.Answered || m.NATPMP.ExternalAddress != "127.0.0.1" || m.NATPMP.InboundVerified != natclass.TriYes ||
		m.PCP.Answered || m.UPnP.Answered || m.Mapped != "nat-pmp" || m.ExternalNotPublic != natclass.TriNo {
		t.Fatalf("port mapping %+v", m)
	}
	if !strings.Contains(r.Verdict.Summary, "With a nat-pmp port mapping every peer reaches this host directly") {
		t.Errorf("verdict %q", r.Verdict.Summary)
	}
	reqs := maps()
	if len(reqs) < 2 || binary.BigEndian.Uint32(reqs[len(reqs)-1][8:]) != 0 {
		t.Fatalf("mapping requests %x: the last is not a delete", reqs)
	}
}
