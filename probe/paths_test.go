package probe

import (
	"crypto/tls"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/natcheck/natcheck/natclass"
	"github.com/natcheck/natcheck/stunserver"
	"github.com/natcheck/natcheck/stunserver/stuntest"
)

// tcpServer starts an RFC 5780 server that also answers over TCP on its UDP
// addresses and over TLS on one extra port.
func tcpServer(t *testing.T, primary, alternate string) (*stunserver.Server, *tls.Config) {
	t.Helper()
	srvTLS, pool := stuntest.TLSConfig(t)
	p := netip.MustParseAddrPort(primary)
	s := startServer(t, stunserver.Config{
		Primary: p, Alternate: netip.MustParseAddrPort(alternate), TCP: true,
		TLSConfig: srvTLS, TLSAddrs: []netip.AddrPort{netip.AddrPortFrom(p.Addr(), 0)},
	})
	return s, &tls.Config{RootCAs: pool}
}

func pathsBy(obs natclass.Observations) map[string]natclass.Attempt {
	m := map[string]natclass.Attempt{}
	for _, p := range obs.Paths {
		m[p.Transport+" "+p.Dest.String()] = p
	}
	return m
}

func TestPathsTCPAndTLS(t *testing.T) {
	a, clientTLS := tcpServer(t, "127.0.0.1:0", "127.0.0.2:0")
	b, _ := tcpServer(t, "127.0.0.3:0", "127.0.0.4:0")
	tlsPort := a.TLSAddrs()[0].Port()
	cfg := Config{Servers: []Target{target(a.Primary()), target(b.Primary())}, TLSPorts: []uint16{tlsPort}, TLS: clientTLS}
	obs, r := diagnose(t, cfg)
	ps := pathsBy(obs)
	tcpA, tcpB := ps["tcp "+a.Primary().String()], ps["tcp "+b.Primary().String()]
	tlsA := ps["tls "+netip.AddrPortFrom(a.Primary().Addr(), tlsPort).String()]
	for name, p := range map[string]natclass.Attempt{"tcp a": tcpA, "tcp b": tcpB, "tls a": tlsA} {
		if !p.Connected || !p.OK || p.Mapped != p.Local || p.Error != "" {
			t.Errorf("%s: %+v; want connected, answered, mapped to its own address (no NAT)", name, p)
		}
	}
	if !tcpA.SharedPort || tcpA.Local != tcpB.Local {
		t.Errorf("TCP probes from %s and %s: want one shared local port", tcpA.Local, tcpB.Local)
	}
	if tlsA.Handshake <= 0 || tlsA.CertNotAfter.IsZero() {
		t.Errorf("TLS path: handshake %v, certificate expiry %v", tlsA.Handshake, tlsA.CertNotAfter)
	}
	if r.TCP != natclass.TriYes || r.TCPMappingEndpointIndependent != natclass.TriYes || r.TCPPortPreservation != natclass.TriYes {
		t.Errorf("tcp %s eim %s preservation %s", r.TCP, r.TCPMappingEndpointIndependent, r.TCPPortPreservation)
	}
	if r.Verdict.WayOut.Via != natclass.WayDirectUDP {
		t.Errorf("way out %+v: UDP works, so direct UDP comes first", r.Verdict.WayOut)
	}
}

func TestPathsUntrustedCertificate(t *testing.T) {
	a, _ := tcpServer(t, "127.0.0.1:0", "127.0.0.2:0")
	tlsAddr := a.TLSAddrs()[0]
	obs, r := diagnose(t, Config{Servers: []Target{{Host: "127.0.0.1", Port: tlsAddr.Port(), Transport: TransportTLS}}})
	if len(obs.Servers) != 0 || len(obs.Paths) != 1 {
		t.Fatalf("a stuns: target is TLS only: servers %d paths %+v", len(obs.Servers), obs.Paths)
	}
	p := obs.Paths[0]
	if !p.Connected || p.OK || !strings.Contains(p.CertError, "unknown authority") {
		t.Errorf("path %+v: want connected, not ok, an unknown-authority certificate error", p)
	}
	if r.TCP != natclass.TriYes || len(r.TCPPortsOpen) != 1 || !strings.Contains(strings.Join(r.Reasons, " "), "failed verification") {
		t.Errorf("tcp %s ports %v reasons %q", r.TCP, r.TCPPortsOpen, r.Reasons)
	}
}

func TestPathsRefusedAndSilent(t *testing.T) {
	// A UDP server whose TCP port is closed, and a TCP listener that accepts
	// but never answers: the latter is cut short once UDP has answered.
	s := startServer(t, stunserver.Config{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for range 8 {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	silent := netip.MustParseAddrPort(ln.Addr().String())
	obs, r := diagnose(t, Config{Servers: []Target{target(s.Primary())}, TLSPorts: []uint16{silent.Port()}})
	ps := pathsBy(obs)
	if p := ps["tcp "+s.Primary().String()]; p.Connected || !strings.Contains(p.Error, "refused") {
		t.Errorf("closed TCP port: %+v", p)
	}
	p := ps["tls "+silent.String()]
	if !p.Connected || p.OK || !strings.Contains(p.Error, "UDP works") {
		t.Errorf("silent TLS port: %+v; want connected and cut short once UDP answered", p)
	}
	if !r.UDP || r.TCP != natclass.TriYes {
		t.Errorf("udp %v tcp %s", r.UDP, r.TCP)
	}
}

// TestPathsAlternateAddress: one RFC 5780 server is enough to compare TCP
// mappings, through its alternate address.
func TestPathsAlternateAddress(t *testing.T) {
	a, _ := tcpServer(t, "127.0.0.1:0", "127.0.0.2:0")
	obs, r := diagnose(t, Config{Servers: []Target{target(a.Primary())}, TLSPorts: []uint16{}})
	alt, ok := pathsBy(obs)["tcp "+a.Alternate().String()]
	if !ok || !alt.OK || !alt.SharedPort {
		t.Fatalf("no shared-port TCP attempt to the alternate address %s: %+v", a.Alternate(), obs.Paths)
	}
	if r.TCPMappingEndpointIndependent != natclass.TriYes {
		t.Errorf("tcp mapping endpoint-independent = %s, want yes", r.TCPMappingEndpointIndependent)
	}
}
