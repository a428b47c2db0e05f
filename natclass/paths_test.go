package natclass

import (
	"net/netip"
	"strings"
	"testing"
)

func path(transport, dest string, connected, ok bool, mapped, certErr string) Attempt {
	p := Attempt{Transport: transport, Server: dest, Dest: ap(dest), Local: ap("192.168.1.10:45000"), SharedPort: transport == TransportTCP,
		Connected: connected, OK: ok, CertError: certErr}
	if mapped != "" {
		p.Mapped = ap(mapped)
	}
	if connected && !ok {
		p.Error = "no STUN response"
		if certErr != "" {
			p.Error = "TLS certificate rejected: " + certErr
		}
	}
	if !connected {
		p.Error = "timed out"
	}
	return p
}

func TestWayOut(t *testing.T) {
	udpBlocked := plainServers([2]netip.AddrPort{srvP, {}}, [2]netip.AddrPort{plain, {}})
	cases := []struct {
		name    string
		obs     Observations
		via     string
		port    int
		summary string
	}{
		{"UDP blocked, TCP 3478 open", with(udpBlocked,
			path(TransportTCP, "203.0.113.1:3478", true, true, "198.51.100.200:45000", ""),
			path(TransportTLS, "203.0.113.1:443", true, true, "", "")),
			WayTURNTCP, 3478, "UDP is blocked here; TURN over TCP on port 3478 gets out"},
		{"UDP blocked, only TLS 443", with(udpBlocked,
			path(TransportTCP, "203.0.113.1:3478", false, false, "", ""),
			path(TransportTLS, "203.0.113.1:443", true, true, "", ""),
			path(TransportTLS, "203.0.113.1:5349", false, false, "", "")),
			WayTURNTLS, 443, "UDP is blocked here; TURN over TLS on port 443 gets out"},
		{"UDP blocked, TLS 443 with a bad certificate still counts for TCP", with(udpBlocked,
			path(TransportTCP, "203.0.113.1:3478", false, false, "", ""),
			path(TransportTLS, "203.0.113.1:443", true, false, "", "signed by an unknown authority")),
			WayTURNTCP, 443, "TURN over TCP on port 443"},
		{"nothing gets out", with(udpBlocked,
			path(TransportTCP, "203.0.113.1:3478", false, false, "", ""),
			path(TransportTLS, "203.0.113.1:443", false, false, "", "")),
			WayNone, 0, "Nothing gets out"},
		{"UDP blocked, TCP not tried", udpBlocked, WayUnknown, 0, "UDP is blocked"},
		{"UDP works, port-restricted", rfc(pubX, pubX, pubX, none, none, ok(srvA)), WayDirectUDP, 0, "Direct UDP likely"},
		{"UDP works, symmetric", rfc(pubX, pubY, pubZ, none, none, none), WayTURNUDP, 0, "Direct UDP unlikely"},
		{"UDP works, mapping not told", plainServers([2]netip.AddrPort{srvP, pubX}, [2]netip.AddrPort{plain, {}}), WayUnknown, 0, "Direct UDP possible"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := Classify(c.obs)
			w := r.Verdict.WayOut
			if w.Via != c.via || w.Port != c.port {
				t.Errorf("way out %+v, want %s port %d; reasons %q", w, c.via, c.port, r.Reasons)
			}
			if !strings.Contains(r.Verdict.Summary, c.summary) {
				t.Errorf("summary %q lacks %q", r.Verdict.Summary, c.summary)
			}
			if w.Via != WayUnknown && w.Cost == "" {
				t.Error("no cost given")
			}
		})
	}
}

func TestTCPMapping(t *testing.T) {
	base := rfc(pubX, pubX, pubX, none, none, ok(srvA))
	same := with(base,
		path(TransportTCP, "203.0.113.1:3478", true, true, "198.51.100.200:45000", ""),
		path(TransportTCP, "198.51.100.7:3478", true, true, "198.51.100.200:45000", ""))
	r := Classify(same)
	if r.TCP != TriYes || r.TCPMappingEndpointIndependent != TriYes || r.TCPPortPreservation != TriYes {
		t.Errorf("same mapping: tcp %s eim %s preservation %s", r.TCP, r.TCPMappingEndpointIndependent, r.TCPPortPreservation)
	}
	if !strings.Contains(strings.Join(r.Reasons, " "), "ICE-TCP") {
		t.Errorf("no ICE-TCP caveat in %q", r.Reasons)
	}
	diff := with(base,
		path(TransportTCP, "203.0.113.1:3478", true, true, "198.51.100.200:50000", ""),
		path(TransportTCP, "198.51.100.7:3478", true, true, "198.51.100.200:50001", ""))
	r = Classify(diff)
	if r.TCPMappingEndpointIndependent != TriNo || r.TCPPortPreservation != TriNo {
		t.Errorf("varying mapping: eim %s preservation %s", r.TCPMappingEndpointIndependent, r.TCPPortPreservation)
	}
	one := with(base, path(TransportTCP, "203.0.113.1:3478", true, true, "198.51.100.200:45000", ""))
	if r := Classify(one); r.TCPMappingEndpointIndependent != TriUnknown {
		t.Errorf("one server: eim %s, want unknown", r.TCPMappingEndpointIndependent)
	}
	if r := Classify(base); r.TCP != TriUnknown || r.TCPPortsOpen == nil {
		t.Errorf("no paths: tcp %s ports %v", r.TCP, r.TCPPortsOpen)
	}
}

func with(o Observations, ps ...Attempt) Observations {
	o.Paths = append(append([]Attempt(nil), o.Paths...), ps...)
	return o
}

// TestTCPOnlyTargets: with only TCP or TLS servers, UDP was never tested, so
// no way out can be named even though TCP gets out.
func TestTCPOnlyTargets(t *testing.T) {
	o := with(Observations{Family: "ipv4"}, path(TransportTCP, "203.0.113.1:3478", true, true, "198.51.100.200:45000", ""))
	r := Classify(o)
	if r.Verdict.WayOut.Via != WayUnknown || r.TCP != TriYes {
		t.Errorf("way out %+v tcp %s: want unknown way out, TCP yes", r.Verdict.WayOut, r.TCP)
	}
	if !strings.Contains(r.Verdict.Summary, "UDP not tested") || !strings.Contains(r.Verdict.Summary, "TCP to port 3478") {
		t.Errorf("summary %q", r.Verdict.Summary)
	}
}

// TestTCPCutShortIsUnknown: attempts ended early say nothing either way,
// and a bare handshake without an answer is no way out.
func TestTCPCutShortIsUnknown(t *testing.T) {
	udpBlocked := plainServers([2]netip.AddrPort{srvP, {}}, [2]netip.AddrPort{plain, {}})
	cut := path(TransportTCP, "203.0.113.1:3478", false, false, "", "")
	cut.CutShort = true
	if r := Classify(with(udpBlocked, cut)); r.TCP != TriUnknown {
		t.Errorf("only cut-short attempts: tcp %s, want unknown", r.TCP)
	}
	bare := path(TransportTCP, "203.0.113.1:3478", true, false, "", "")
	r := Classify(with(udpBlocked, bare))
	if r.TCP != TriYes || len(r.TCPPortsOpen) != 0 || r.Verdict.WayOut.Via != WayNone {
		t.Errorf("handshake without an answer: tcp %s ports %v way out %+v", r.TCP, r.TCPPortsOpen, r.Verdict.WayOut)
	}
}
