package stun

// The attributes of RFC 5780 that pion/stun does not type: CHANGE-REQUEST
// (section 7.2) and RESPONSE-PORT (section 7.5).

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/pion/stun/v4"
)

// Flags of the CHANGE-REQUEST value, RFC 5780 section 7.2.
const (
	flagChangeIP   = 0x04
	flagChangePort = 0x02
)

// ErrBadLength is returned when an RFC 5780 attribute's value has the
// wrong size.
var ErrBadLength = errors.New("stun: attribute has wrong length")

// ChangeRequest is the CHANGE-REQUEST attribute (RFC 5780 section 7.2): it
// asks the server to answer from its alternate IP address, its alternate
// port, or both.
type ChangeRequest struct {
	ChangeIP   bool
	ChangePort bool
}

// AddTo adds CHANGE-REQUEST to m. It implements stun.Setter.
func (c ChangeRequest) AddTo(m *stun.Message) error {
	var v [4]byte
	if c.ChangeIP {
		v[3] |= flagChangeIP
	}
	if c.ChangePort {
		v[3] |= flagChangePort
	}
	m.Add(stun.AttrChangeRequest, v[:])
	return nil
}

// GetFrom decodes CHANGE-REQUEST from m. It implements stun.Getter.
func (c *ChangeRequest) GetFrom(m *stun.Message) error {
	v, err := m.Get(stun.AttrChangeRequest)
	if err != nil {
		return err
	}
	if len(v) != 4 {
		return fmt.Errorf("CHANGE-REQUEST of %d bytes: %w", len(v), ErrBadLength)
	}
	c.ChangeIP = v[3]&flagChangeIP != 0
	c.ChangePort = v[3]&flagChangePort != 0
	return nil
}

// String returns a short description such as "change-ip|change-port".
func (c ChangeRequest) String() string {
	switch {
	case c.ChangeIP && c.ChangePort:
		return "change-ip|change-port"
	case c.ChangeIP:
		return "change-ip"
	case c.ChangePort:
		return "change-port"
	default:
		return "none"
	}
}

// ResponsePort is the RESPONSE-PORT attribute (RFC 5780 section 7.5): the
// port the server must send its response to, at the request's source IP.
type ResponsePort uint16

// AddTo adds RESPONSE-PORT to m. It implements stun.Setter.
func (p ResponsePort) AddTo(m *stun.Message) error {
	var v [4]byte // 16-bit port and 16 bits of padding
	binary.BigEndian.PutUint16(v[:2], uint16(p))
	m.Add(stun.AttrResponsePort, v[:])
	return nil
}

// GetFrom decodes RESPONSE-PORT from m. It implements stun.Getter.
func (p *ResponsePort) GetFrom(m *stun.Message) error {
	v, err := m.Get(stun.AttrResponsePort)
	if err != nil {
		return err
	}
	if len(v) != 4 {
		return fmt.Errorf("RESPONSE-PORT of %d bytes: %w", len(v), ErrBadLength)
	}
	*p = ResponsePort(binary.BigEndian.Uint16(v[:2]))
	return nil
}
