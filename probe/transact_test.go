package probe

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v3"

	"github.com/natcheck/natcheck/natclass"
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
