package stunserver

import (
	"encoding/binary"
	"net/netip"

	"github.com/pion/stun/v4"

	natstun "github.com/natcheck/natcheck/stun"
)

// Socket indexes. Bit 1 selects the alternate IP address, bit 0 the
// alternate port, so a CHANGE-REQUEST is an XOR of the receiving socket's
// index with the requested changes.
const (
	sockPP = 0 // P:p, primary address and primary port
	sockPA = 1 // P:a, primary address and alternate port
	sockAP = 2 // A:p, alternate address and primary port
	sockAA = 3 // A:a, alternate address and alternate port

	changePortBit = 1
	changeIPBit   = 2
)

// maxUnknown bounds the UNKNOWN-ATTRIBUTES list of one 420 response.
const maxUnknown = 16

// action is what the handler decided to do with one packet.
type action uint8

const (
	actDrop    action = iota // not a valid Binding request: send nothing
	actSuccess               // send a Binding success response
	actError                 // send a Binding error response
)

// reply describes the response that handle built, if any.
type reply struct {
	act  action
	from int            // index of the socket to send from
	to   netip.AddrPort // destination of the response
	// reflected is true when the response leaves from a socket other than
	// the receiving one or goes to an address other than the request's
	// source (CHANGE-REQUEST or RESPONSE-PORT, RFC 5780 section 9).
	reflected bool
	code      int // error code when act is actError
}

// handler holds everything handle needs; it is read-only after Start, so
// handle is safe for concurrent use with distinct messages.
type handler struct {
	addrs          [4]netip.AddrPort // indexed by socket; only addrs[0] in single-address mode
	dual           bool
	ignoreChange   bool
	advertiseOther netip.AddrPort
	omitMapped     bool
	mappedOverride func(netip.AddrPort) netip.AddrPort
	software       []byte
}

// handle processes one packet pkt that arrived from src on socket local. It
// is a pure function of its arguments and h: it decodes pkt into req
// (req.Raw aliases pkt afterwards), builds any response in resp and says
// where to send it. It never panics on any input and returns actDrop for
// anything that is not a well-formed STUN Binding request (RFC 8489
// sections 5, 6.3 and 14.7).
func (h *handler) handle(pkt []byte, src netip.AddrPort, local int, req, resp *stun.Message) reply {
	if local < 0 || local >= len(h.addrs) || !h.addrs[local].IsValid() {
		return reply{}
	}
	return h.process(pkt, src, local, h.addrs[local], false, req, resp)
}

// handleStream is handle for one message framed from a TCP or TLS stream
// (RFC 8489 section 6.2.2) that arrived from src on a connection whose
// local address is origin. local is the index of the RFC 5780 address the
// connection was accepted on, for OTHER-ADDRESS, or -1 for a listener
// outside the four (TLS). The response, if any, goes back on the same
// connection, so reply.from and reply.to are not used.
//
// A response over a stream can only leave on the connection the request
// came on: a CHANGE-REQUEST asking for a change, or a RESPONSE-PORT, cannot
// be honoured. Both get 420 listing the attribute, as RFC 5780 section 6.1
// prescribes for a server that cannot change address, so that a client can
// tell "unsupported" from a reply (which it would otherwise have to check
// against RESPONSE-ORIGIN). A CHANGE-REQUEST with no flags set is answered
// normally, and OTHER-ADDRESS is sent on the four RFC 5780 addresses:
// mapping behaviour discovery (RFC 5780 section 4.3) works over TCP.
func (h *handler) handleStream(pkt []byte, src netip.AddrPort, local int, origin netip.AddrPort, req, resp *stun.Message) reply {
	if local >= len(h.addrs) || (local >= 0 && !h.addrs[local].IsValid()) || !origin.IsValid() {
		return reply{}
	}
	return h.process(pkt, src, local, natstun.UnmapAddrPort(origin), true, req, resp)
}

// process is the body of handle and handleStream: local is the index of
// the receiving RFC 5780 socket or -1 (stream only), origin the address the
// request arrived on.
func (h *handler) process(pkt []byte, src netip.AddrPort, local int, origin netip.AddrPort, stream bool, req, resp *stun.Message) reply {
	src = natstun.UnmapAddrPort(src)
	if !src.IsValid() || src.Port() == 0 {
		return reply{}
	}
	// RFC 8489 section 5: pion does not check the top bits or the padding,
	// and over UDP the datagram must hold exactly one message.
	if natstun.CheckMessage(pkt) != nil {
		return reply{}
	}
	req.Raw = pkt
	if err := req.Decode(); err != nil {
		return reply{}
	}
	lim := sizeLimit{stream: stream, reqLen: len(pkt)}
	if req.Type != stun.BindingRequest {
		return reply{}
	}
	// RFC 8489 section 14.7: FINGERPRINT, when present, is the last
	// attribute and must match.
	if n := len(req.Attributes); n > 0 {
		for i, a := range req.Attributes {
			if a.Type == stun.AttrFingerprint && i != n-1 {
				return reply{}
			}
		}
		if req.Attributes[n-1].Type == stun.AttrFingerprint {
			if err := stun.Fingerprint.Check(req); err != nil {
				return reply{}
			}
		}
	}

	// RFC 8489 section 6.3.1: unknown comprehension-required attributes
	// (type 0x0000-0x7FFF) get a 420 listing them.
	var unknown [maxUnknown]stun.AttrType
	nUnknown := 0
	for _, a := range req.Attributes {
		if a.Type >= 0x8000 || understood(a.Type) {
			continue
		}
		dup := false
		for _, u := range unknown[:nUnknown] {
			if u == a.Type {
				dup = true
				break
			}
		}
		if !dup && nUnknown < maxUnknown {
			unknown[nUnknown] = a.Type
			nUnknown++
		}
	}
	if nUnknown > 0 {
		h.buildError(req, resp, stun.CodeUnknownAttribute, unknown[:nUnknown], lim)
		return reply{act: actError, from: local, to: src, code: int(stun.CodeUnknownAttribute)}
	}

	var change natstun.ChangeRequest
	if req.Contains(stun.AttrChangeRequest) {
		if err := change.GetFrom(req); err != nil {
			h.buildError(req, resp, stun.CodeBadRequest, nil, lim)
			return reply{act: actError, from: local, to: src, code: int(stun.CodeBadRequest)}
		}
	}
	to := src
	if req.Contains(stun.AttrResponsePort) {
		var port natstun.ResponsePort
		if err := port.GetFrom(req); err != nil || port == 0 {
			h.buildError(req, resp, stun.CodeBadRequest, nil, lim)
			return reply{act: actError, from: local, to: src, code: int(stun.CodeBadRequest)}
		}
		if stream {
			// RFC 5780 section 7.5: RESPONSE-PORT names a UDP port;
			// a stream has no other port to answer to.
			h.buildError(req, resp, stun.CodeUnknownAttribute, []stun.AttrType{stun.AttrResponsePort}, lim)
			return reply{act: actError, from: local, to: src, code: int(stun.CodeUnknownAttribute)}
		}
		// RFC 5780 section 7.5: the response goes to the source IP of
		// the request at this port.
		to = netip.AddrPortFrom(src.Addr(), uint16(port))
	}

	from := local
	if (change.ChangeIP || change.ChangePort) && !h.ignoreChange {
		if !h.dual || stream {
			// RFC 5780 section 6.1: a server without an alternate
			// address answers a change request with 420.
			h.buildError(req, resp, stun.CodeUnknownAttribute, []stun.AttrType{stun.AttrChangeRequest}, lim)
			return reply{act: actError, from: local, to: src, code: int(stun.CodeUnknownAttribute)}
		}
		// RFC 5780 section 6.1: answer from the socket with the
		// requested IP and/or port changed.
		if change.ChangeIP {
			from ^= changeIPBit
		}
		if change.ChangePort {
			from ^= changePortBit
		}
	}

	var other netip.AddrPort
	switch {
	case h.advertiseOther.IsValid():
		other = h.advertiseOther
	case h.dual && local >= 0:
		// RFC 5780 section 7.4: the address a change-IP and change-port
		// request would be answered from.
		other = h.addrs[local^(changeIPBit|changePortBit)]
	}
	if from != local {
		origin = h.addrs[from]
	}
	h.buildSuccess(req, resp, src, other, origin, lim)
	return reply{act: actSuccess, from: from, to: to, reflected: from != local || to != src}
}

// understood reports whether a comprehension-required attribute is one the
// server accepts in a Binding request. USERNAME and the MESSAGE-INTEGRITY
// attributes are accepted and ignored: Binding needs no authentication
// (RFC 8489 section 9). PADDING (RFC 5780 section 7.6) is not supported
// and gets 420.
func understood(t stun.AttrType) bool {
	switch t {
	case stun.AttrChangeRequest, stun.AttrResponsePort,
		stun.AttrUsername, stun.AttrMessageIntegrity, stun.AttrMessageIntegritySHA256,
		// pion decodes the pre-RFC 5389 type 0x8020 as 0x0020.
		stun.AttrXORMappedAddress:
		return true
	}
	return false
}

// buildSuccess writes a Binding success response into resp (RFC 5780
// section 6.1 lists its attributes).
// other is sent as OTHER-ADDRESS if valid, origin as RESPONSE-ORIGIN.
func (h *handler) buildSuccess(req, resp *stun.Message, src, other, origin netip.AddrPort, lim sizeLimit) {
	startResponse(resp, stun.BindingSuccess, req.TransactionID)
	addAddress(resp, stun.AttrXORMappedAddress, src, true)
	if !h.omitMapped {
		mapped := src
		if h.mappedOverride != nil {
			mapped = h.mappedOverride(src)
		}
		if mapped.IsValid() {
			addAddress(resp, stun.AttrMappedAddress, mapped, false)
		}
	}
	if other.IsValid() {
		addAddress(resp, stun.AttrOtherAddress, other, false)
	}
	addAddress(resp, stun.AttrResponseOrigin, origin, false)
	h.finish(resp, lim)
}

// reason returns the reason phrase of an error code the server sends
// (RFC 8489 section 14.8).
func reason(code stun.ErrorCode) string {
	switch code {
	case stun.CodeBadRequest:
		return "Bad Request"
	case stun.CodeUnknownAttribute:
		return "Unknown Attribute"
	}
	return ""
}

// buildError writes a Binding error response with ERROR-CODE (RFC 8489
// section 14.8) and, for 420, UNKNOWN-ATTRIBUTES (section 14.9).
func (h *handler) buildError(req, resp *stun.Message, code stun.ErrorCode, unknown []stun.AttrType, lim sizeLimit) {
	startResponse(resp, stun.BindingError, req.TransactionID)
	var v [4 + 32]byte
	v[2] = byte(code / 100)
	v[3] = byte(code % 100)
	n := 4 + copy(v[4:], reason(code))
	resp.Add(stun.AttrErrorCode, v[:n])
	if len(unknown) > 0 {
		var u [2 * maxUnknown]byte
		n := 0
		for _, t := range unknown {
			if n+2 > len(u) {
				break
			}
			binary.BigEndian.PutUint16(u[n:], uint16(t))
			n += 2
		}
		resp.Add(stun.AttrUnknownAttributes, u[:n])
	}
	h.finish(resp, lim)
}

// sizeLimit says how large a response may grow for one request.
type sizeLimit struct {
	stream bool // over TCP or TLS: no spoofed sources, no limit
	reqLen int  // the request's size
}

// finish adds SOFTWARE, if configured, and FINGERPRINT. Over UDP, whose
// source can be spoofed, SOFTWARE goes only into a response no larger than
// its request, so that it cannot turn the server into an amplifier
// (RFC 5780 section 9); the rest of a Binding response is a few tens of
// bytes.
func (h *handler) finish(resp *stun.Message, lim sizeLimit) {
	if n := len(h.software); n > 0 {
		withSoftware := len(resp.Raw) + 4 + (n+3)&^3 + 8 // + SOFTWARE + FINGERPRINT
		if lim.stream || lim.reqLen >= withSoftware {
			resp.Add(stun.AttrSoftware, h.software)
		}
	}
	addFingerprint(resp)
}

func startResponse(m *stun.Message, t stun.MessageType, id [stun.TransactionIDSize]byte) {
	m.Reset()
	m.Type = t
	m.TransactionID = id
	m.WriteHeader()
}

// addAddress adds an address attribute in the format of RFC 8489 section
// 14.1 (MAPPED-ADDRESS, also used by OTHER-ADDRESS and RESPONSE-ORIGIN) or,
// when xor is set, section 14.2 (XOR-MAPPED-ADDRESS). It does not allocate.
func addAddress(m *stun.Message, t stun.AttrType, ap netip.AddrPort, xor bool) {
	var v [20]byte
	ip := ap.Addr().Unmap()
	port := ap.Port()
	if xor {
		port ^= natstun.MagicCookie >> 16
	}
	binary.BigEndian.PutUint16(v[2:4], port)
	n := 8
	if ip.Is4() {
		v[1] = 0x01
		a := ip.As4()
		copy(v[4:8], a[:])
	} else {
		v[1] = 0x02
		a := ip.As16()
		copy(v[4:20], a[:])
		n = 20
	}
	if xor {
		var key [16]byte
		binary.BigEndian.PutUint32(key[0:4], natstun.MagicCookie)
		copy(key[4:], m.TransactionID[:])
		for i := 4; i < n; i++ {
			v[i] ^= key[i-4]
		}
	}
	m.Add(t, v[:n])
}

// addFingerprint adds FINGERPRINT (RFC 8489 section 14.7) as the last
// attribute, like stun.Fingerprint but without allocating.
func addFingerprint(m *stun.Message) {
	const size = 4
	l := m.Length
	m.Length += size + 4 // the CRC covers a header whose length includes FINGERPRINT
	m.WriteLength()
	var v [size]byte
	binary.BigEndian.PutUint32(v[:], stun.FingerprintValue(m.Raw))
	m.Length = l
	m.Add(stun.AttrFingerprint, v[:])
}
