package stun

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"testing/iotest"
	"time"

	"github.com/pion/stun/v4"
)

func TestReadFrameBackToBack(t *testing.T) {
	a := stun.MustBuild(stun.BindingRequest, stun.TransactionID, stun.Fingerprint).Raw
	b := stun.MustBuild(stun.BindingSuccess, stun.TransactionID,
		&stun.XORMappedAddress{IP: net.IPv4(192, 0, 2, 1), Port: 32853}, stun.NewSoftware("natcheck"), stun.Fingerprint).Raw
	c := stun.MustBuild(stun.BindingRequest, stun.TransactionID).Raw // header only
	stream := append(append(append([]byte(nil), a...), b...), c...)

	// Whole, and one byte per read: the frames are the same.
	for name, r := range map[string]io.Reader{
		"whole":    bytes.NewReader(stream),
		"one byte": iotest.OneByteReader(bytes.NewReader(stream)),
	} {
		buf := make([]byte, 0, 32) // a fits, b does not
		for i, want := range [][]byte{a, b, c} {
			got, err := ReadFrame(r, buf, DefaultMaxMessageSize)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("%s: message %d: %x, %v; want %x", name, i, got, err, want)
			}
			buf = got[:0]
		}
		if got, err := ReadFrame(r, buf, DefaultMaxMessageSize); !errors.Is(err, io.EOF) || len(got) != 0 {
			t.Errorf("%s: after the last message: %x, %v; want io.EOF", name, got, err)
		}
	}
}

func TestReadFrameErrors(t *testing.T) {
	ok := request()
	for _, c := range []struct {
		name    string
		stream  []byte
		max     int
		err     error // matched with errors.Is
		partial int   // bytes returned with the error
	}{
		{"empty stream", nil, DefaultMaxMessageSize, io.EOF, 0},
		{"inside the header", ok[:7], DefaultMaxMessageSize, io.ErrUnexpectedEOF, 7},
		{"right after the header", ok[:HeaderSize], DefaultMaxMessageSize, io.ErrUnexpectedEOF, HeaderSize},
		{"inside the body", ok[:len(ok)-1], DefaultMaxMessageSize, io.ErrUnexpectedEOF, len(ok) - 1},
		{"HTTP", []byte("GET / HTTP/1.1\r\nHost: example\r\n\r\n"), DefaultMaxMessageSize, ErrMalformed, HeaderSize},
		{"no cookie", header(0x0001, 0, 0), DefaultMaxMessageSize, ErrMalformed, HeaderSize},
		{"top bits", header(0xC001, 0, MagicCookie), DefaultMaxMessageSize, ErrMalformed, HeaderSize},
		{"odd length", append(header(0x0101, 5, MagicCookie), make([]byte, 8)...), DefaultMaxMessageSize, ErrMalformed, HeaderSize},
		{"over the limit", ok, len(ok) - 4, ErrMalformed, HeaderSize},
		{"over the largest limit", header(0x0101, 0xFFFC, MagicCookie), MaxMessageSize + 1000, io.ErrUnexpectedEOF, HeaderSize},
		{"limit below the header", header(0x0001, 0, MagicCookie), 3, nil, HeaderSize},
	} {
		got, err := ReadFrame(bytes.NewReader(c.stream), nil, c.max)
		if !errors.Is(err, c.err) || (c.err == nil) != (err == nil) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.err)
		}
		if len(got) != c.partial || !bytes.Equal(got, c.stream[:len(got)]) {
			t.Errorf("%s: returned %x, want the first %d bytes", c.name, got, c.partial)
		}
	}
}

func TestReadFrameBounded(t *testing.T) {
	// A header that claims 64 KiB allocates nothing beyond the limit.
	huge := header(0x0001, 0xFFFC, MagicCookie)
	buf := make([]byte, 0, 64)
	got, err := ReadFrame(bytes.NewReader(huge), buf, 512)
	if !errors.Is(err, ErrMalformed) || cap(got) != 64 {
		t.Errorf("huge header: cap %d, %v", cap(got), err)
	}
	// A message that fits the buffer is read without allocating.
	msg := stun.MustBuild(stun.BindingRequest, stun.TransactionID, stun.Fingerprint).Raw
	r := bytes.NewReader(msg)
	if n := testing.AllocsPerRun(100, func() {
		r.Reset(msg)
		if _, err := ReadFrame(r, buf, 512); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("ReadFrame allocates %v times", n)
	}
	// A larger one gets an array of its own size, not more.
	big := stun.MustBuild(stun.BindingRequest, stun.TransactionID, stun.NewSoftware(string(make([]byte, 200)))).Raw
	got, err = ReadFrame(bytes.NewReader(big), buf, 512)
	if err != nil || cap(got) != len(big) {
		t.Errorf("larger message: cap %d for %d bytes, %v", cap(got), len(big), err)
	}
}

// TestReadFrameDeadline: a peer that stops inside a message does not hold
// the reader past the connection's deadline.
func TestReadFrameDeadline(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	defer server.Close()
	msg := stun.MustBuild(stun.BindingRequest, stun.TransactionID, stun.Fingerprint).Raw
	go func() { _, _ = client.Write(msg[:HeaderSize+2]) }()
	if err := server.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	got, err := ReadFrame(server, nil, DefaultMaxMessageSize)
	if !errors.Is(err, os.ErrDeadlineExceeded) || len(got) != HeaderSize+2 {
		t.Errorf("returned %d bytes, %v; want %d and a deadline error", len(got), err, HeaderSize+2)
	}
}

func TestReadMessage(t *testing.T) {
	want := stun.MustBuild(stun.BindingSuccess, stun.TransactionID,
		&stun.XORMappedAddress{IP: net.IPv4(192, 0, 2, 1), Port: 32853}, stun.Fingerprint)
	m, err := ReadMessage(bytes.NewReader(want.Raw), DefaultMaxMessageSize)
	if err != nil {
		t.Fatal(err)
	}
	var xor stun.XORMappedAddress
	if m.TransactionID != want.TransactionID || m.Type != stun.BindingSuccess || xor.GetFrom(m) != nil || xor.Port != 32853 {
		t.Errorf("decoded %v", m)
	}
	// Well framed, but an attribute overruns the message: pion refuses it.
	bad := append(header(0x0101, 8, MagicCookie), 0x80, 0x22, 0x00, 0x40, 'x', 'y', 'z', 'w')
	if _, err := ReadMessage(bytes.NewReader(bad), DefaultMaxMessageSize); !errors.Is(err, ErrMalformed) {
		t.Errorf("attribute overrun: err = %v", err)
	}
	if _, err := ReadMessage(bytes.NewReader(nil), DefaultMaxMessageSize); !errors.Is(err, io.EOF) {
		t.Errorf("empty stream: err = %v", err)
	}
}

func TestWriteMessage(t *testing.T) {
	msg := stun.MustBuild(stun.BindingRequest, stun.TransactionID, stun.Fingerprint).Raw
	var w bytes.Buffer
	if err := WriteMessage(&w, msg); err != nil || !bytes.Equal(w.Bytes(), msg) {
		t.Fatalf("wrote %x, %v", w.Bytes(), err)
	}
	w.Reset()
	for name, b := range map[string][]byte{
		"truncated": msg[:len(msg)-1],
		"trailing":  append(append([]byte(nil), msg...), 0, 0, 0, 0),
		"not STUN":  []byte("GET / HTTP/1.1\r\n\r\n"),
	} {
		if err := WriteMessage(&w, b); !errors.Is(err, ErrMalformed) || w.Len() != 0 {
			t.Errorf("%s: wrote %d bytes, err %v", name, w.Len(), err)
		}
	}
	// Errors of the writer come back.
	client, server := net.Pipe()
	server.Close()
	if err := WriteMessage(client, msg); !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("closed pipe: err = %v", err)
	}
}

// FuzzReadFrame feeds arbitrary streams and limits to the stream framing
// that client and server share: no panic; messages come out back to back,
// each exactly the next bytes of the stream, well framed and within the
// limit; nothing is read past what is returned; and the buffer never grows
// past the limit.
func FuzzReadFrame(f *testing.F) {
	req := stun.MustBuild(stun.BindingRequest, stun.TransactionID, stun.Fingerprint).Raw
	resp := stun.MustBuild(stun.BindingSuccess, stun.TransactionID,
		&stun.XORMappedAddress{IP: net.IPv4(198, 51, 100, 1), Port: 4000}, stun.Fingerprint).Raw
	f.Add(append(append([]byte(nil), req...), resp...), uint16(DefaultMaxMessageSize))
	f.Add(req[:HeaderSize+3], uint16(512))
	f.Add(header(0x0001, 0xFFFC, MagicCookie), uint16(0xFFFF))
	f.Add(header(0x0101, 6, MagicCookie), uint16(64))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"), uint16(100))
	f.Fuzz(func(t *testing.T, stream []byte, limit uint16) {
		maxSize := min(max(int(limit), HeaderSize), MaxMessageSize)
		r := bytes.NewReader(stream)
		buf := make([]byte, 0, 32)
		off := 0
		for {
			got, err := ReadFrame(r, buf, int(limit))
			if consumed := len(stream) - r.Len(); consumed != off+len(got) {
				t.Fatalf("read %d bytes, returned %d after %d", consumed, len(got), off)
			}
			if !bytes.Equal(got, stream[off:off+len(got)]) {
				t.Fatalf("returned bytes that are not the stream's")
			}
			if cap(got) > max(32, maxSize) {
				t.Fatalf("buffer of %d bytes for a limit of %d", cap(got), maxSize)
			}
			if err != nil {
				switch {
				case errors.Is(err, ErrMalformed):
					if len(got) != HeaderSize {
						t.Fatalf("%v with %d bytes", err, len(got))
					}
				case errors.Is(err, io.ErrUnexpectedEOF):
					if len(got) == 0 || r.Len() != 0 {
						t.Fatalf("%v with %d bytes, %d unread", err, len(got), r.Len())
					}
				case errors.Is(err, io.EOF):
					if len(got) != 0 || r.Len() != 0 {
						t.Fatalf("%v with %d bytes, %d unread", err, len(got), r.Len())
					}
				default:
					t.Fatalf("unexpected error %v", err)
				}
				break
			}
			if len(got) > maxSize || CheckMessage(got) != nil {
				t.Fatalf("returned %d bytes (limit %d), %v", len(got), maxSize, CheckMessage(got))
			}
			m := new(stun.Message)
			_ = stun.Decode(got, m) // pion must not panic on what the framing passes
			off += len(got)
			buf = got[:0]
		}
	})
}
