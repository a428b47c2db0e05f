package stunserver

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	natstun "github.com/natcheck/natcheck/stun"
)

// TestLoopbackBatch sends a burst of requests from several sockets before
// reading any reply, so that the server reads them in batches of more than
// one, with CHANGE-REQUESTs mixed in (their responses leave from other
// sockets, not with the batch). Every request must get exactly one reply,
// from the right address and with the requester's address in it.
func TestLoopbackBatch(t *testing.T) {
	// Unlimited: the reflected responses here are far beyond the limit's
	// burst, and the limit is not what this test is about.
	s := mustStart(t, Config{Primary: loopP, Alternate: loopA, ReflectionRate: -1})
	addrs := s.Addrs()
	const clients, perClient = 4, 3 * batchSize // more than one batch
	type want struct {
		from   netip.AddrPort
		mapped netip.AddrPort
	}
	wants := map[[stun.TransactionIDSize]byte]want{}
	var conns []*net.UDPConn
	for range clients {
		c := listenClient(t, "127.0.0.1")
		if err := c.SetReadBuffer(1 << 20); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	for k := range perClient {
		for _, c := range conns {
			to := k % 4
			from := to
			var setters []stun.Setter
			if k%3 == 1 { // a third ask for the other address and port
				setters = append(setters, natstun.ChangeRequest{ChangeIP: true, ChangePort: true})
				from ^= changeIPBit | changePortBit
			}
			req := send(t, c, addrs[to], setters...)
			wants[req.TransactionID] = want{from: addrs[from], mapped: localAddr(t, c)}
		}
	}
	buf := make([]byte, 1500)
	got := 0
	deadline := time.Now().Add(10 * time.Second)
	for _, c := range conns {
		for range perClient {
			if err := c.SetReadDeadline(deadline); err != nil {
				t.Fatal(err)
			}
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatalf("after %d of %d replies: %v", got, clients*perClient, err)
			}
			m := new(stun.Message)
			if err := stun.Decode(append([]byte(nil), buf[:n]...), m); err != nil {
				t.Fatalf("reply does not decode: %v", err)
			}
			w, ok := wants[m.TransactionID]
			if !ok {
				t.Fatalf("reply to an unknown or already answered transaction from %v", from)
			}
			delete(wants, m.TransactionID)
			got++
			if from != w.from {
				t.Errorf("reply from %v, want %v", from, w.from)
			}
			if a := getAddr(t, m, stun.AttrXORMappedAddress); a != w.mapped {
				t.Errorf("XOR-MAPPED-ADDRESS %v, want %v", a, w.mapped)
			}
		}
	}
	st := waitStats(s, func(st Stats) bool { return st.Responses == clients*perClient })
	if st.Requests != clients*perClient || st.Responses != clients*perClient || st.SendErrors != 0 {
		t.Errorf("stats %+v, want %d requests and responses", st, clients*perClient)
	}
}

// TestLoopbackNoAllocs checks that answering a Binding request on a real
// socket allocates nothing in the server (nor in this client's calls):
// allocation counts are process-wide. The source is not trusted, so the
// byte budget runs; the request is padded to no less than its response,
// as natcheck's are, so that the budget never drops one.
func TestLoopbackNoAllocs(t *testing.T) {
	s := mustStart(t, Config{Primary: loopP, Alternate: loopA})
	c := listenClient(t, "127.0.0.1")
	req, err := stun.Build(stun.BindingRequest, stun.TransactionID, stun.NewSoftware(strings.Repeat("p", 80)), stun.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	to := s.Primary()
	buf := make([]byte, 1500)
	if err := c.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	roundTrip := func() {
		if _, err := c.WriteToUDPAddrPort(req.Raw, to); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
			t.Fatal(err)
		}
	}
	for range 10 { // warm up: the server's buffers grow once
		roundTrip()
	}
	if a := testing.AllocsPerRun(500, roundTrip); a != 0 {
		t.Errorf("%v allocations per request, want 0", a)
	}
}

// BenchmarkLoopback measures Binding requests answered per second over
// loopback, with 32 requests in flight from one socket, so that the server
// reads and writes in batches: go test -bench Loopback -benchmem.
func BenchmarkLoopback(b *testing.B) {
	// The load is trusted, as bench/serve-vs-coturn.sh's is: the figure
	// includes the budget's trust check.
	s := mustStart(b, Config{Primary: loopP, Alternate: loopA, Trust: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	c := listenClient(b, "127.0.0.1")
	req, err := stun.Build(stun.BindingRequest, stun.TransactionID)
	if err != nil {
		b.Fatal(err)
	}
	to := s.Primary()
	buf := make([]byte, 1500)
	const window = 32
	if err := c.SetReadDeadline(time.Now().Add(time.Minute)); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	inFlight := 0
	for range b.N {
		for inFlight < window {
			if _, err := c.WriteToUDPAddrPort(req.Raw, to); err != nil {
				b.Fatal(err)
			}
			inFlight++
		}
		if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
			b.Fatal(err)
		}
		inFlight--
	}
	b.StopTimer()
	for ; inFlight > 0; inFlight-- {
		if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
			b.Fatal(err)
		}
	}
}
