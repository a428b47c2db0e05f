package probe

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/natcheck/natcheck/natclass"
	"github.com/natcheck/natcheck/stunserver"
)

// TestReplyAtWindowEnd: a reply that is in hand when the window ends
// counts. select picks at random among ready cases, so without a last look
// at the reply channel half of these transactions would read "no reply"
// (a false negative that only CPU contention makes likely).
func TestReplyAtWindowEnd(t *testing.T) {
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := newSocket(conn, "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	// The sends go to a loopback port nothing listens on.
	dest := netip.MustParseAddrPort("127.0.0.1:9")
	e := &engine{deadline: time.Now().Add(time.Minute)}
	for i := range 200 {
		req, err := stun.Build(stun.TransactionID, stun.BindingRequest)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := stun.Build(stun.NewTransactionIDSetter(req.TransactionID), stun.BindingSuccess,
			&stun.XORMappedAddress{IP: net.IPv4(192, 0, 2, 1), Port: 4242})
		if err != nil {
			t.Fatal(err)
		}
		ch := make(chan response, 1)
		ch <- response{msg: resp, from: dest, at: time.Now()}
		p := natclass.Transaction{Local: s.local, Dest: dest}
		// The window has already ended: its timer and the reply are both
		// ready at the first select.
		w := wait{deadline: time.Now().Add(-time.Millisecond), interval: time.Hour}
		e.retransmitLoop(context.Background(), s, "test", req, &p, w, ch)
		if p.Status != natclass.StatusReply {
			t.Fatalf("transaction %d: status %s with a reply in hand", i, p.Status)
		}
	}
}

// TestPaddedRequestsNeverLimited: natcheck's requests are no smaller than
// natcheck serve's responses, so a server whose byte budgets are all but
// empty (1 byte per source and in all, loopback untrusted) still answers
// every one of them.
func TestPaddedRequestsNeverLimited(t *testing.T) {
	s := startServer(t, stunserver.Config{SourceBudget: 1, GlobalBudget: 1})
	_, r := diagnose(t, Config{Servers: []Target{target(s.Primary())}})
	if r.Type != natclass.TypeOpenInternet || r.Filtering != natclass.BehaviorNone {
		t.Errorf("type %s filtering %s; reasons %q", r.Type, r.Filtering, r.Reasons)
	}
	if st := s.Stats(); st.RateLimited != 0 || st.Responses == 0 {
		t.Errorf("server stats %+v: want responses and no budget drops", st)
	}
}

// TestPaddingSize: every request the engine builds is 128 bytes whatever
// attributes it carries, and FINGERPRINT still checks.
func TestPaddingSize(t *testing.T) {
	for name, extra := range map[string][]stun.Setter{
		"plain":        nil,
		"change":       {stun.RawAttribute{Type: stun.AttrChangeRequest, Value: []byte{0, 0, 0, 6}}},
		"change, port": {stun.RawAttribute{Type: stun.AttrChangeRequest, Value: []byte{0, 0, 0, 2}}, stun.RawAttribute{Type: 0x0027, Value: []byte{0x12, 0x34, 0, 0}}},
	} {
		setters := append([]stun.Setter{stun.TransactionID, stun.BindingRequest}, extra...)
		m, err := stun.Build(append(setters, padding{}, stun.Fingerprint)...)
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Raw) != 128 {
			t.Errorf("%s: %d bytes, want 128", name, len(m.Raw))
		}
		if err := stun.Fingerprint.Check(m); err != nil {
			t.Errorf("%s: fingerprint: %v", name, err)
		}
		if _, err := m.Get(stun.AttrSoftware); err != nil {
			t.Errorf("%s: no SOFTWARE: %v", name, err)
		}
	}
}
