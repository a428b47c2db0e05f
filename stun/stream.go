package stun

import (
	"errors"
	"fmt"
	"io"

	"github.com/pion/stun/v4"
)

// Over TCP and TLS, STUN messages follow each other on the stream with
// nothing between them: the length field of each header delimits it
// (RFC 8489 section 6.2.2). Once one message is malformed, the framing of
// the rest cannot be trusted; a reader then closes the connection.

// ReadFrame reads one message from the stream r: its header, which must
// pass CheckHeader and announce at most maxSize bytes, then the rest of
// the message. It reads nothing past the message, so messages sent back to
// back come out one per call.
//
// The message is read into buf's backing array (buf[:cap(buf)]) when it
// fits, else into a new array of exactly the message's size; passing the
// returned slice back in reuses it. Since the header is checked first, a
// peer cannot make ReadFrame allocate an array larger than maxSize (nor
// anything when buf holds HeaderSize bytes and the message fits). maxSize
// is taken as HeaderSize if smaller and as MaxMessageSize if larger.
//
// ReadFrame sets no deadline: a caller reading a connection sets one that
// covers a whole message (a peer sending one byte at a time must not hold
// it), and each read returns when it passes. r must follow the io.Reader
// rules.
//
// The error is io.EOF when the stream ends before a message begins, and
// io.ErrUnexpectedEOF when it ends inside one. A header that fails the
// checks or announces more than maxSize bytes is an error wrapping
// ErrMalformed. Other errors of r (a deadline, a reset) are returned as
// they are. With an error, the returned slice holds the bytes of the
// message read before it: a caller can tell a stream that broke inside a
// message from one that broke between messages, and a rejected header
// from an incomplete one (only the first is HeaderSize bytes long).
func ReadFrame(r io.Reader, buf []byte, maxSize int) ([]byte, error) {
	maxSize = min(max(maxSize, HeaderSize), MaxMessageSize)
	if cap(buf) < HeaderSize {
		buf = make([]byte, HeaderSize)
	}
	buf = buf[:HeaderSize]
	if n, err := io.ReadFull(r, buf); err != nil {
		return buf[:n], err
	}
	size, err := CheckHeader(buf)
	if err != nil {
		return buf, err
	}
	if size > maxSize {
		return buf, fmt.Errorf("%w: %d bytes, more than the limit of %d", ErrMalformed, size, maxSize)
	}
	if size > cap(buf) {
		b := make([]byte, size)
		copy(b, buf)
		buf = b
	}
	buf = buf[:size]
	if n, err := io.ReadFull(r, buf[HeaderSize:]); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return buf[:HeaderSize+n], err
	}
	return buf, nil
}

// ReadMessage reads one message from the stream r with ReadFrame, into a
// buffer of its own, and decodes it with pion. A message that pion cannot
// decode is an error wrapping ErrMalformed; the other errors are those of
// ReadFrame.
func ReadMessage(r io.Reader, maxSize int) (*stun.Message, error) {
	raw, err := ReadFrame(r, nil, maxSize)
	if err != nil {
		return nil, err
	}
	m := &stun.Message{Raw: raw}
	if err := m.Decode(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return m, nil
}

// WriteMessage writes msg, which must be exactly one message (see
// CheckMessage), to the stream w in one Write. A malformed msg is refused
// before anything is written, since the peer could not find the next
// message after it. Like ReadFrame, it sets no deadline.
func WriteMessage(w io.Writer, msg []byte) error {
	if err := CheckMessage(msg); err != nil {
		return err
	}
	_, err := w.Write(msg)
	return err
}
