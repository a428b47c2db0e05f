package natclass

import (
	"net/netip"
	"time"
)

// Lifetime is what natcheck --lifetime measured of the NAT's UDP binding
// lifetime: how long a mapping that saw one request and its reply survives
// without traffic, as a lower and an upper bound.
//
// Each tested socket sends one Binding request to the server and then stays
// silent; after its idle time another socket asks the same server endpoint,
// with RESPONSE-PORT (RFC 5780 section 7.5), to answer to the tested
// socket's public port. The tested socket receiving that answer means its
// mapping survived the idle time; silence after every try means it expired.
type Lifetime struct {
	// Server is the STUN server used, as given, and Address its address.
	Server  string
	Address netip.AddrPort
	// Lower is the longest idle time a mapping was seen to survive (0 when
	// none was); Upper the shortest after which one had expired (0 when
	// none expired within Max).
	Lower, Upper time.Duration
	// Max is the longest idle time tested (--lifetime-max) and Precision
	// the precision asked for (--lifetime-precision).
	Max, Precision time.Duration
	// RefreshedByInbound and RefreshedByOutbound tell whether a packet
	// from the server to the mapping, or from the mapping to the server,
	// half-way through the idle time renewed the mapping; nil when not
	// measured.
	RefreshedByInbound, RefreshedByOutbound *bool
	// Probes is the number of tested sockets that gave an answer (alive or
	// expired), Sent the packets sent in all.
	Probes, Sent int
	// Partial is non-empty when the measurement stopped early, and why
	// (interrupted, out of time); the bounds are those found so far.
	Partial string
	// Error is non-empty when nothing could be measured, and why.
	Error string
	// Notes are observations that weaken the result (inconsistent probes).
	Notes []string
}

// Measured reports whether l bounds the lifetime at all.
func (l Lifetime) Measured() bool { return l.Error == "" && (l.Lower > 0 || l.Upper > 0) }

// Keepalive is the keepalive interval recommended for l: four fifths of
// the lower bound, whole seconds, at least one second; 0 when no mapping
// was seen to survive a second.
func (l Lifetime) Keepalive() time.Duration {
	k := (l.Lower * 4 / 5).Truncate(time.Second)
	if k < time.Second {
		if l.Lower >= time.Second {
			return time.Second
		}
		return 0
	}
	return k
}

// PrecisionFound is the width of the bracket found: Upper - Lower, 0 when
// the lifetime is not bracketed.
func (l Lifetime) PrecisionFound() time.Duration {
	if l.Upper <= 0 || l.Upper < l.Lower {
		return 0
	}
	return l.Upper - l.Lower
}
