package portmap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// The gateway's port for NAT-PMP (RFC 6886 section 3.1) and PCP (RFC 6887
// section 19.1).
const gatewayPort = 5351

// errSkip marks a reply that is not an answer to this request (short,
// malformed, another opcode or nonce); the exchange keeps waiting.
type errSkip struct{ reason string }

func (e errSkip) Error() string { return e.reason }

func skip(format string, args ...any) error { return errSkip{fmt.Sprintf(format, args...)} }

// ResultError is a gateway's answer that refuses a request: a NAT-PMP or
// PCP result code other than success.
type ResultError struct {
	Protocol Protocol
	Code     int
}

func (e *ResultError) Error() string {
	names := natpmpResults
	if e.Protocol == PCP {
		names = pcpResults
	}
	name := "unknown result code"
	if e.Code >= 0 && e.Code < len(names) {
		name = names[e.Code]
	}
	return fmt.Sprintf("the gateway refused: %s result %d (%s)", e.Protocol, e.Code, name)
}

// errOtherVersion: the gateway answered in the other protocol's version,
// so it does not speak the one asked for.
var errOtherVersion = errors.New("other version")

var natpmpResults = []string{"success", "unsupported version", "not authorized/refused", "network failure", "out of resources", "unsupported opcode"}

var pcpResults = []string{"SUCCESS", "UNSUPP_VERSION", "NOT_AUTHORIZED", "MALFORMED_REQUEST", "UNSUPP_OPCODE",
	"UNSUPP_OPTION", "MALFORMED_OPTION", "NETWORK_FAILURE", "NO_RESOURCES", "UNSUPP_PROTOCOL", "USER_EX_QUOTA",
	"CANNOT_PROVIDE_EXTERNAL", "ADDRESS_MISMATCH", "EXCESSIVE_REMOTE_PEERS"}

// NAT-PMP, RFC 6886.
const (
	natpmpOpExternal = 0
	natpmpOpMapUDP   = 1
)

func natpmpExternalRequest() []byte { return []byte{0, natpmpOpExternal} }

// natpmpMapRequest is a UDP mapping request (section 3.3); lifetime 0 and
// external port 0 delete the mapping.
func natpmpMapRequest(internal, external uint16, lifetime uint32) []byte {
	b := make([]byte, 12)
	b[1] = natpmpOpMapUDP
	binary.BigEndian.PutUint16(b[4:], internal)
	binary.BigEndian.PutUint16(b[6:], external)
	binary.BigEndian.PutUint32(b[8:], lifetime)
	return b
}

// natpmpHeader checks version, opcode and result code of a reply to op.
func natpmpHeader(b []byte, op byte, size int) error {
	if len(b) < 4 {
		return skip("NAT-PMP reply of %d bytes is too short", len(b))
	}
	if b[0] != 0 {
		if b[0] == 2 {
			return errOtherVersion
		}
		return skip("NAT-PMP reply has version %d", b[0])
	}
	if b[1] != 128+op {
		return skip("NAT-PMP reply has opcode %d, want %d", b[1], 128+op)
	}
	if code := binary.BigEndian.Uint16(b[2:]); code != 0 {
		return &ResultError{Protocol: NATPMP, Code: int(code)}
	}
	if len(b) < size {
		return skip("NAT-PMP reply of %d bytes is too short for opcode %d (%d)", len(b), op, size)
	}
	return nil
}

// parseNATPMPExternal parses the reply to an external address request
// (section 3.2).
func parseNATPMPExternal(b []byte) (netip.Addr, error) {
	if err := natpmpHeader(b, natpmpOpExternal, 12); err != nil {
		return netip.Addr{}, err
	}
	return netip.AddrFrom4([4]byte(b[8:12])), nil
}

type natpmpMapping struct {
	internal, external uint16
	lifetime           uint32
}

// parseNATPMPMap parses the reply to a UDP mapping request for internal
// (section 3.3).
func parseNATPMPMap(b []byte, internal uint16) (natpmpMapping, error) {
	if err := natpmpHeader(b, natpmpOpMapUDP, 16); err != nil {
		return natpmpMapping{}, err
	}
	m := natpmpMapping{
		internal: binary.BigEndian.Uint16(b[8:]),
		external: binary.BigEndian.Uint16(b[10:]),
		lifetime: binary.BigEndian.Uint32(b[12:]),
	}
	if m.internal != internal {
		return natpmpMapping{}, skip("NAT-PMP reply is for internal port %d, want %d", m.internal, internal)
	}
	return m, nil
}

// PCP, RFC 6887.
const (
	pcpVersion    = 2
	pcpOpAnnounce = 0
	pcpOpMap      = 1
	pcpHeaderLen  = 24
	pcpMapLen     = pcpHeaderLen + 36
	pcpMaxLen     = 1100
	protoUDP      = 17
)

// pcpHeader writes the common request header (section 7.1).
func pcpHeader(b []byte, op byte, lifetime uint32, client netip.Addr) {
	b[0] = pcpVersion
	b[1] = op
	binary.BigEndian.PutUint32(b[4:], lifetime)
	a := client.Unmap().As16() // IPv4 becomes IPv4-mapped IPv6 (section 5)
	copy(b[8:24], a[:])
}

func pcpAnnounceRequest(client netip.Addr) []byte {
	b := make([]byte, pcpHeaderLen)
	pcpHeader(b, pcpOpAnnounce, 0, client)
	return b
}

// pcpMapRequest is a MAP request for UDP (section 11.1); lifetime 0
// deletes the mapping with that nonce.
func pcpMapRequest(client netip.Addr, nonce [12]byte, internal, external uint16, lifetime uint32) []byte {
	b := make([]byte, pcpMapLen)
	pcpHeader(b, pcpOpMap, lifetime, client)
	copy(b[24:36], nonce[:])
	b[36] = protoUDP
	binary.BigEndian.PutUint16(b[40:], internal)
	binary.BigEndian.PutUint16(b[42:], external)
	// Suggested external address: all zeros in the family of the client
	// (::ffff:0.0.0.0 for IPv4).
	if client.Unmap().Is4() {
		b[54], b[55] = 0xff, 0xff
	}
	return b
}

type pcpReply struct {
	op                 byte
	lifetime, epoch    uint32
	nonce              [12]byte
	protocol           byte
	internal, external uint16
	externalIP         netip.Addr
}

// parsePCP parses a response to opcode op (section 7.2; MAP: 11.1). For
// MAP the nonce, protocol and internal port must match the request's.
func parsePCP(b []byte, op byte, nonce [12]byte, internal uint16) (pcpReply, error) {
	var r pcpReply
	if len(b) < 4 {
		return r, skip("PCP reply of %d bytes is too short", len(b))
	}
	if b[0] != pcpVersion {
		if b[0] == 0 {
			return r, errOtherVersion
		}
		return r, skip("PCP reply has version %d", b[0])
	}
	if len(b) < pcpHeaderLen || len(b) > pcpMaxLen || len(b)%4 != 0 {
		return r, skip("PCP reply of %d bytes is malformed (24 to 1100, a multiple of 4)", len(b))
	}
	if b[1]&0x80 == 0 {
		return r, skip("PCP message is a request, not a response")
	}
	r.op = b[1] & 0x7f
	if r.op != op {
		return r, skip("PCP reply has opcode %d, want %d", r.op, op)
	}
	code := b[3]
	r.lifetime = binary.BigEndian.Uint32(b[4:])
	r.epoch = binary.BigEndian.Uint32(b[8:])
	if op == pcpOpMap {
		if len(b) < pcpMapLen {
			if code != 0 {
				// A refusal may omit the opcode data (section 7.2).
				return r, &ResultError{Protocol: PCP, Code: int(code)}
			}
			return r, skip("PCP MAP reply of %d bytes is too short (%d)", len(b), pcpMapLen)
		}
		copy(r.nonce[:], b[24:36])
		if r.nonce != nonce {
			return r, skip("PCP MAP reply has another nonce")
		}
		r.protocol = b[36]
		r.internal = binary.BigEndian.Uint16(b[40:])
		r.external = binary.BigEndian.Uint16(b[42:])
		r.externalIP = netip.AddrFrom16([16]byte(b[44:60])).Unmap()
		if r.protocol != protoUDP || r.internal != internal {
			return r, skip("PCP MAP reply is for protocol %d internal port %d, want %d and %d", r.protocol, r.internal, protoUDP, internal)
		}
	}
	if code != 0 {
		return r, &ResultError{Protocol: PCP, Code: int(code)}
	}
	return r, nil
}
