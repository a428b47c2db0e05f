// Package natclass turns STUN observations into a NAT diagnosis: mapping and
// filtering behaviour (RFC 4787 section 4 and 5), the classic RFC 3489 NAT
// type, and a verdict on how real-time traffic will get through. It holds
// pure functions over data only: no sockets, no clock.
package natclass
