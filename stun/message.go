package stun

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Facts of the STUN message header, RFC 8489 section 5.
const (
	// HeaderSize is the size of the message header: type, length, magic
	// cookie and transaction ID.
	HeaderSize = 20
	// MagicCookie is the fixed value of header bytes 4 to 7.
	MagicCookie = 0x2112A442
	// MaxMessageSize is the largest message the 16-bit length field of the
	// header can describe, header included.
	MaxMessageSize = HeaderSize + 0xFFFF
	// DefaultMaxMessageSize is the bound that both ends put on one message
	// by default: the client on a response read from a stream, the server
	// on a request (over UDP, its read buffer; over TCP and TLS, its
	// Config.MaxMessageSize). A Binding message is a few tens of bytes.
	DefaultMaxMessageSize = 4096
)

// ErrMalformed is the error, wrapped with the reason, for bytes that are
// not one STUN message a reader accepts: the header checks of CheckHeader,
// a datagram whose size disagrees with its length field, a message over
// the reader's size limit, or one that pion cannot decode.
var ErrMalformed = errors.New("stun: malformed message")

// The reasons for ErrMalformed that CheckHeader and CheckMessage return.
// They are values, so that checking a datagram does not allocate.
var (
	errShort    = fmt.Errorf("%w: shorter than the %d-byte header", ErrMalformed, HeaderSize)
	errTopBits  = fmt.Errorf("%w: the two top bits of the type are not zero", ErrMalformed)
	errCookie   = fmt.Errorf("%w: no magic cookie", ErrMalformed)
	errPadding  = fmt.Errorf("%w: length is not a multiple of 4", ErrMalformed)
	errDatagram = fmt.Errorf("%w: length field does not match the datagram", ErrMalformed)
)

// CheckHeader checks the header at the start of b (at least HeaderSize
// bytes) as RFC 8489 section 5 requires before its length can be trusted:
// the two most significant bits are zero, the magic cookie is present and
// the length is a multiple of 4, since attributes are padded to 4 bytes.
// It returns the size of the whole message, header included. pion's
// decoder checks only the cookie.
func CheckHeader(b []byte) (size int, err error) {
	switch {
	case len(b) < HeaderSize:
		return 0, errShort
	case b[0]&0xC0 != 0:
		return 0, errTopBits
	case binary.BigEndian.Uint32(b[4:8]) != MagicCookie:
		return 0, errCookie
	}
	n := int(binary.BigEndian.Uint16(b[2:4]))
	if n%4 != 0 {
		return 0, errPadding
	}
	return HeaderSize + n, nil
}

// CheckMessage checks that b is exactly one message: a header that passes
// CheckHeader and as many bytes after it as its length field says, the
// rule for a UDP datagram (RFC 8489 section 6.2.1). It does not allocate.
func CheckMessage(b []byte) error {
	size, err := CheckHeader(b)
	if err != nil {
		return err
	}
	if size != len(b) {
		return errDatagram
	}
	return nil
}
