package stun

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/pion/stun/v4"
)

// header returns a 20-byte header of type t with the given length and
// cookie.
func header(t uint16, length uint16, cookie uint32) []byte {
	b := make([]byte, HeaderSize)
	binary.BigEndian.PutUint16(b[0:2], t)
	binary.BigEndian.PutUint16(b[2:4], length)
	binary.BigEndian.PutUint32(b[4:8], cookie)
	copy(b[8:], "0123456789ab")
	return b
}

// request returns a Binding request with attributes, FINGERPRINT last.
func request() []byte {
	return stun.MustBuild(stun.BindingRequest, stun.TransactionID, stun.NewSoftware("natcheck"), stun.Fingerprint).Raw
}

func TestHeaderConstantsMatchPion(t *testing.T) {
	m := stun.MustBuild(stun.BindingRequest, stun.TransactionID)
	if len(m.Raw) != HeaderSize {
		t.Errorf("empty message of %d bytes, HeaderSize %d", len(m.Raw), HeaderSize)
	}
	if got := binary.BigEndian.Uint32(m.Raw[4:8]); got != MagicCookie {
		t.Errorf("pion's cookie %#x, MagicCookie %#x", got, uint32(MagicCookie))
	}
	if MaxMessageSize != 65555 {
		t.Errorf("MaxMessageSize %d", MaxMessageSize)
	}
}

func TestCheckHeader(t *testing.T) {
	ok := request()
	for _, c := range []struct {
		name string
		b    []byte
		size int
		err  error // nil, or the reason wrapped around ErrMalformed
	}{
		{"binding request", ok, len(ok), nil},
		{"header only", header(0x0001, 0, MagicCookie), HeaderSize, nil},
		{"largest length", header(0x0101, 0xFFFC, MagicCookie), HeaderSize + 0xFFFC, nil},
		{"header of a longer buffer", append(header(0x0001, 4, MagicCookie), 1, 2, 3, 4, 5, 6, 7, 8), HeaderSize + 4, nil},
		{"empty", nil, 0, errShort},
		{"19 bytes", ok[:19], 0, errShort},
		{"top bit", header(0x8001, 0, MagicCookie), 0, errTopBits},
		{"second bit", header(0x4001, 0, MagicCookie), 0, errTopBits},
		{"no cookie (RFC 3489)", header(0x0001, 0, 0), 0, errCookie},
		{"length 2", header(0x0001, 2, MagicCookie), 0, errPadding},
		{"length 0xFFFF", header(0x0001, 0xFFFF, MagicCookie), 0, errPadding},
	} {
		size, err := CheckHeader(c.b)
		if size != c.size || err != c.err {
			t.Errorf("%s: CheckHeader = %d, %v; want %d, %v", c.name, size, err, c.size, c.err)
		}
		if err != nil && !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v does not wrap ErrMalformed", c.name, err)
		}
	}
}

func TestCheckMessage(t *testing.T) {
	ok := request()
	if err := CheckMessage(ok); err != nil {
		t.Errorf("valid request: %v", err)
	}
	for name, b := range map[string][]byte{
		"trailing bytes": append(append([]byte(nil), ok...), 0, 0, 0, 0),
		"truncated":      ok[:len(ok)-4],
		"header only":    ok[:HeaderSize],
		"no cookie":      header(0x0001, 0, 0),
		"short":          ok[:3],
	} {
		if err := CheckMessage(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
	bad := header(0x0001, 8, MagicCookie)
	if n := testing.AllocsPerRun(100, func() { _ = CheckMessage(ok); _ = CheckMessage(bad) }); n != 0 {
		t.Errorf("CheckMessage allocates %v times", n)
	}
}
