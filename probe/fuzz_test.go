package probe

import (
	"net"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/natcheck/natcheck/natclass"
	natstun "github.com/natcheck/natcheck/stun"
)

// fuzzID is the transaction ID the fuzz targets wait for, so that mutated
// responses reach the attribute decoding in fill.
var fuzzID = [stun.TransactionIDSize]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}

func seedResponses(f *testing.F) {
	ok, _ := stun.Build(stun.NewTransactionIDSetter(fuzzID), stun.BindingSuccess,
		&stun.XORMappedAddress{IP: net.IPv4(198, 51, 100, 1), Port: 4000},
		&stun.MappedAddress{IP: net.IPv4(198, 51, 100, 1), Port: 4000},
		&stun.OtherAddress{IP: net.IPv4(203, 0, 113, 2), Port: 3479},
		&stun.ResponseOrigin{IP: net.IPv4(203, 0, 113, 1), Port: 3478}, stun.Fingerprint)
	f.Add(ok.Raw)
	errResp, _ := stun.Build(stun.NewTransactionIDSetter(fuzzID), stun.BindingError, stun.CodeUnknownAttribute, stun.Fingerprint)
	f.Add(errResp.Raw)
	req, _ := stun.Build(stun.NewTransactionIDSetter(fuzzID), stun.BindingRequest, natstun.ChangeRequest{ChangeIP: true})
	f.Add(req.Raw)
	f.Add([]byte{0x01, 0x01, 0x00, 0x04, 0x21, 0x12, 0xa4, 0x42})
}

// FuzzHandle feeds arbitrary packets to a socket's receive path and the
// reply decoding: no input may panic, and only a response with the awaited
// transaction ID is delivered.
func FuzzHandle(f *testing.F) {
	seedResponses(f)
	from := &net.UDPAddr{IP: net.IPv4(203, 0, 113, 1), Port: 3478}
	f.Fuzz(func(t *testing.T, b []byte) {
		s := &socket{pending: map[[stun.TransactionIDSize]byte]chan response{}, inbound: map[[stun.TransactionIDSize]byte]chan response{}}
		ch := s.register(fuzzID, false)
		in := s.register(fuzzID, true)
		s.handle(b, from)
		select {
		case r := <-ch:
			if r.msg.TransactionID != fuzzID || r.msg.Type.Class == stun.ClassRequest {
				t.Fatalf("delivered %v with ID %x", r.msg.Type, r.msg.TransactionID)
			}
			var p natclass.Transaction
			fill(&p, r, time.Now(), time.Now())
			if p.Status != natclass.StatusReply && p.Status != natclass.StatusErrorReply {
				t.Fatalf("status %s after a response", p.Status)
			}
		case r := <-in:
			if r.msg.Type.Class != stun.ClassRequest {
				t.Fatalf("non-request delivered as a request: %v", r.msg.Type)
			}
		default:
		}
	})
}
