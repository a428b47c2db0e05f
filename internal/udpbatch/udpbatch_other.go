//go:build !linux

package udpbatch

import "net"

// Conn is a UDP socket with batched reads and writes.
type Conn struct{}

// New returns ErrUnsupported on this system.
func New(c *net.UDPConn, batch int) (*Conn, error) { return nil, ErrUnsupported }

// ReadBatch is not available on this system.
func (c *Conn) ReadBatch(ms []Message) (int, error) { return 0, ErrUnsupported }

// WriteBatch is not available on this system.
func (c *Conn) WriteBatch(ms []Message) (int, error) { return 0, ErrUnsupported }
