package main

import (
	"encoding/json"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/natcheck/natcheck/portmap"
)

func TestPortmapFlagConflict(t *testing.T) {
	args := []string{"--portmap", "--no-portmap-detect"}
	code, out, errs := runArgs(t, env{}, args...)
	wantUsage(t, args, code, out, errs, "--portmap and --no-portmap-detect")
}

// TestPortmapNoGateway: a gateway on loopback where nothing listens:
// the report has port_mapping saying no protocol answered, and
// --no-portmap-detect leaves it out.
func TestPortmapNoGateway(t *testing.T) {
	s := loopbackServer(t)
	closed := func() uint16 {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return uint16(c.LocalAddr().(*net.UDPAddr).Port)
	}
	e := env{portmap: &portmap.Config{Gateway4: netip.MustParseAddr("127.0.0.1"), PMPPort: closed(), SSDPPort: closed(), NoMulticast: true}}
	args := []string{"--stun", s.Primary().String(), "-4", "--udp-only", "--format", "json"}
	code, out, errs := runArgs(t, e, args...)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var r struct {
		PortMapping *struct {
			Summary string `json:"summary"`
			UPnP    struct {
				Answered        bool  `json:"answered"`
				InboundVerified *bool `json:"inbound_verified"`
			} `json:"upnp"`
		} `json:"port_mapping"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	if r.PortMapping == nil || r.PortMapping.Summary != "no port mapping protocol answered" || r.PortMapping.UPnP.Answered ||
		r.PortMapping.UPnP.InboundVerified != nil {
		t.Fatalf("port_mapping: %+v", r.PortMapping)
	}
	_, out, _ = runArgs(t, e, append(args, "--no-portmap-detect")...)
	if strings.Contains(out, "port_mapping") {
		t.Fatal("port_mapping present with --no-portmap-detect")
	}
}
