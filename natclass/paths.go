package natclass

import (
	"fmt"
	"slices"
)

// paths reads the TCP and TLS attempts: which ports get out, and whether
// the NAT's TCP mapping is endpoint-independent and port-preserving.
func (c *classifier) paths() {
	r := c.r
	r.TCPPortsOpen, r.TLSPortsOpen = []int{}, []int{}
	if len(c.obs.Paths) == 0 {
		return
	}
	connected, finished := 0, 0
	var certFailed []Attempt
	preserved, changed := 0, 0
	var shared []Attempt
	for _, p := range c.obs.Paths {
		if !p.CutShort {
			finished++
		}
		if !p.Connected {
			continue
		}
		connected++
		// A port counts as open only when a server answered on it: a STUN
		// response, or a TLS certificate (even one that failed
		// verification). A bare TCP handshake may come from a transparent
		// proxy or a captive portal.
		port := int(p.Dest.Port())
		switch {
		case p.Transport == TransportTCP && p.OK:
			r.TCPPortsOpen = appendUnique(r.TCPPortsOpen, port)
		case p.Transport == TransportTLS && p.OK:
			r.TLSPortsOpen = appendUnique(r.TLSPortsOpen, port)
		case p.Transport == TransportTLS && p.CertError != "":
			r.TCPPortsOpen = appendUnique(r.TCPPortsOpen, port)
			certFailed = append(certFailed, p)
		}
		if p.OK && p.Mapped.IsValid() && p.Local.IsValid() {
			if p.Mapped.Port() == p.Local.Port() {
				preserved++
			} else {
				changed++
			}
			if p.SharedPort {
				shared = append(shared, p)
			}
		}
	}
	slices.Sort(r.TCPPortsOpen)
	slices.Sort(r.TLSPortsOpen)
	switch {
	case connected > 0:
		r.TCP = TriYes
	case finished > 0:
		r.TCP = TriNo
	}
	switch {
	case changed > 0:
		r.TCPPortPreservation = TriNo
	case preserved > 0:
		r.TCPPortPreservation = TriYes
	}
	for _, p := range certFailed {
		c.reason("the TLS certificate of %s (port %d) failed verification: %s; TCP to that port gets out, but a TURN client would refuse it", p.Server, p.Dest.Port(), p.CertError)
	}
	var diff, same *[2]Attempt
	for i := range shared {
		for j := i + 1; j < len(shared); j++ {
			a, b := shared[i], shared[j]
			if a.Dest.Addr() == b.Dest.Addr() || a.Local != b.Local {
				continue
			}
			if a.Mapped != b.Mapped && diff == nil {
				diff = &[2]Attempt{a, b}
			} else if a.Mapped == b.Mapped && same == nil {
				same = &[2]Attempt{a, b}
			}
		}
	}
	switch {
	case diff != nil:
		r.TCPMappingEndpointIndependent = TriNo
		c.reason("TCP connections from one local port got %s from %s but %s from %s: the TCP mapping depends on the destination",
			diff[0].Mapped, diff[0].Dest, diff[1].Mapped, diff[1].Dest)
	case same != nil:
		r.TCPMappingEndpointIndependent = TriYes
	}
	if connected > 0 {
		c.reason("direct TCP between peers (ICE-TCP) works only towards a peer with a public TCP address, such as a media server or SFU; between two NATed peers TCP needs a TURN relay")
	}
}

func appendUnique(s []int, v int) []int {
	if slices.Contains(s, v) {
		return s
	}
	return append(s, v)
}

// costs of each way out.
const (
	costDirect = "none: media flows peer to peer"
	costRelay  = "relayed media goes through the TURN server: more latency, and the server carries every byte"
	costTCP    = "relayed media goes through the TURN server over TCP: more latency, and head-of-line blocking under loss"
)

// wayOut picks the first way out in ICE's order.
func wayOut(r Result, direct Likelihood) WayOut {
	if r.UDP {
		switch direct {
		case LikelihoodLikely:
			return WayOut{Via: WayDirectUDP, Cost: costDirect}
		case LikelihoodPossible:
			// Direct works with some kinds of peer and needs a relay with
			// others, and which is which could not be told: naming
			// either way would be a guess.
			return WayOut{Via: WayUnknown, Cost: "direct UDP works with some kinds of peer and not with others, and the NAT's behaviour could not be told: keep TURN over UDP ready"}
		}
		return WayOut{Via: WayTURNUDP, Cost: costRelay}
	}
	if r.TCP == TriUnknown {
		if r.Type == TypeUDPBlocked {
			return WayOut{Via: WayUnknown, Cost: "TCP and TLS were not tried"}
		}
		return WayOut{Via: WayUnknown}
	}
	if ports := preferPorts(r.TCPPortsOpen, 3478, 443); len(ports) > 0 {
		return WayOut{Via: WayTURNTCP, Port: ports[0], Cost: costTCP}
	}
	if ports := preferPorts(r.TLSPortsOpen, 443, 5349); len(ports) > 0 {
		return WayOut{Via: WayTURNTLS, Port: ports[0], Cost: costTCP}
	}
	return WayOut{Via: WayNone, Cost: "no UDP, TCP or TLS path to any server got out"}
}

// preferPorts returns ports with the preferred ones first.
func preferPorts(ports []int, prefer ...int) []int {
	var out []int
	for _, p := range prefer {
		if slices.Contains(ports, p) {
			out = append(out, p)
		}
	}
	for _, p := range ports {
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// String names the way out for a person: "direct UDP", "TURN over TCP on
// port 443", "none found"; an unknown way gives its Via.
func (w WayOut) String() string {
	switch w.Via {
	case WayTURNTCP:
		return fmt.Sprintf("TURN over TCP on port %d", w.Port)
	case WayTURNTLS:
		return fmt.Sprintf("TURN over TLS on port %d", w.Port)
	case WayTURNUDP:
		return "TURN over UDP"
	case WayDirectUDP:
		return "direct UDP"
	case WayNone:
		return "none found"
	}
	return w.Via
}
