// Package udpbatch reads and writes several UDP datagrams per system call
// (recvmmsg and sendmmsg on Linux) without allocating per datagram. On
// other systems New returns ErrUnsupported and callers keep their
// one-datagram-at-a-time path.
//
// golang.org/x/net's ipv4.PacketConn.ReadBatch makes the same calls but
// allocates a net.UDPAddr and its IP for every datagram read; a STUN
// server's request path must not allocate, so this package decodes the
// source address into a netip.AddrPort in place.
package udpbatch

import (
	"errors"
	"net/netip"
)

// ErrUnsupported is returned by New where batched I/O is not available.
var ErrUnsupported = errors.New("udpbatch: batched UDP I/O is not supported on this system")

// MaxBatch bounds the messages of one call (the kernel's UIO_MAXIOV is 1024).
const MaxBatch = 1024

// Message is one datagram of a batch.
type Message struct {
	// Buf is, for ReadBatch, the buffer to read into (its whole length),
	// and, for WriteBatch, the datagram to send.
	Buf []byte
	// N is the length of the datagram read into Buf.
	N int
	// Trunc is set by ReadBatch when the datagram was longer than Buf and
	// was cut to len(Buf).
	Trunc bool
	// Addr is, for ReadBatch, the source of the datagram; for WriteBatch,
	// its destination, or the zero value on a connected socket.
	Addr netip.AddrPort
}
