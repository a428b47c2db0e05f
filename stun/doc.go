// Package stun is the STUN codec that natcheck's client (package probe) and
// servers (package stunserver) share, on top of github.com/pion/stun/v4,
// which encodes and decodes messages and the attributes of RFC 8489.
//
// It adds what pion leaves to its callers and both ends need alike:
//
//   - the facts of the message header (RFC 8489 section 5): HeaderSize,
//     MagicCookie, and the size limits MaxMessageSize and
//     DefaultMaxMessageSize;
//   - the checks a reader makes before it trusts a header (CheckHeader:
//     the two top bits zero, the magic cookie, a length that is a multiple
//     of 4) and a datagram (CheckMessage: exactly one message, RFC 8489
//     section 6.2.1); pion's decoder checks only the cookie;
//   - the framing of messages on a TCP or TLS stream (RFC 8489 section
//     6.2.2): ReadFrame, ReadMessage and WriteMessage, bounded so that a
//     peer cannot make a reader allocate more than its limit;
//   - the RFC 5780 attributes that pion does not type: ChangeRequest
//     (CHANGE-REQUEST, RFC 5780 section 7.2) and ResponsePort
//     (RESPONSE-PORT, section 7.5), both pion Setters and Getters;
//   - address helpers between net.Addr, pion's IP and port, and
//     netip.AddrPort (AddrPortOf, AddrPortFromIP, UnmapAddrPort), and the
//     names of the transports (TransportUDP, TransportTCP, TransportTLS);
//   - RedactURI, through which every error quotes a server address or URL
//     a user gave, so that no credential in it is ever printed.
//
// # Import names
//
// A file that imports both this package and pion's keeps the name stun for
// pion and imports this one as natstun:
//
//	import (
//		"github.com/pion/stun/v4"
//
//		natstun "github.com/natcheck/natcheck/stun"
//	)
//
// so that stun.X means pion wherever pion is imported, here included: the
// files of this package import pion under its own name and refer to their
// own identifiers unqualified. A file that does not import pion imports
// this package as stun.
package stun
