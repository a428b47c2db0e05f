package stun

import (
	"errors"
	"testing"

	"github.com/pion/stun/v4"
)

func TestChangeRequestRoundTrip(t *testing.T) {
	for _, c := range []ChangeRequest{{}, {ChangeIP: true}, {ChangePort: true}, {ChangeIP: true, ChangePort: true}} {
		m, err := stun.Build(stun.BindingRequest, stun.TransactionID, c, stun.Fingerprint)
		if err != nil {
			t.Fatal(err)
		}
		decoded := new(stun.Message)
		if err := stun.Decode(m.Raw, decoded); err != nil {
			t.Fatal(err)
		}
		var got ChangeRequest
		if err := got.GetFrom(decoded); err != nil {
			t.Fatal(err)
		}
		if got != c {
			t.Errorf("round trip of %v gave %v", c, got)
		}
	}
}

func TestChangeRequestWireFormat(t *testing.T) {
	// RFC 5780 section 7.2: flag A (0x4) is change IP, flag B (0x2) change port.
	m := new(stun.Message)
	_ = ChangeRequest{ChangeIP: true, ChangePort: true}.AddTo(m)
	v, err := m.Get(stun.AttrChangeRequest)
	if err != nil {
		t.Fatal(err)
	}
	if want := []byte{0, 0, 0, 6}; string(v) != string(want) {
		t.Errorf("value = %x, want %x", v, want)
	}
}

func TestResponsePortRoundTrip(t *testing.T) {
	m, err := stun.Build(stun.BindingRequest, stun.TransactionID, ResponsePort(54321))
	if err != nil {
		t.Fatal(err)
	}
	v, _ := m.Get(stun.AttrResponsePort)
	if want := []byte{0xd4, 0x31, 0, 0}; string(v) != string(want) {
		t.Errorf("value = %x, want %x", v, want)
	}
	var p ResponsePort
	if err := p.GetFrom(m); err != nil {
		t.Fatal(err)
	}
	if p != 54321 {
		t.Errorf("port = %d", p)
	}
}

func TestBadLengths(t *testing.T) {
	m := new(stun.Message)
	m.Add(stun.AttrChangeRequest, []byte{1, 2})
	m.Add(stun.AttrResponsePort, []byte{1, 2, 3, 4, 5, 6, 7, 8})
	var c ChangeRequest
	if err := c.GetFrom(m); !errors.Is(err, ErrBadLength) {
		t.Errorf("CHANGE-REQUEST: err = %v", err)
	}
	var p ResponsePort
	if err := p.GetFrom(m); !errors.Is(err, ErrBadLength) {
		t.Errorf("RESPONSE-PORT: err = %v", err)
	}
	empty := new(stun.Message)
	if err := c.GetFrom(empty); !errors.Is(err, stun.ErrAttributeNotFound) {
		t.Errorf("absent: err = %v", err)
	}
}

// FuzzRFC5780Attributes feeds arbitrary bytes through the STUN decoder and
// both getters: they must never panic.
func FuzzRFC5780Attributes(f *testing.F) {
	m, _ := stun.Build(stun.BindingRequest, stun.TransactionID, ChangeRequest{ChangeIP: true}, ResponsePort(1), stun.Fingerprint)
	f.Add(m.Raw)
	f.Add([]byte{0, 1, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		msg := new(stun.Message)
		if err := stun.Decode(b, msg); err != nil {
			return
		}
		var c ChangeRequest
		_ = c.GetFrom(msg)
		var p ResponsePort
		_ = p.GetFrom(msg)
	})
}
