package probe

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/stun/v4"

	natstun "github.com/natcheck/natcheck/stun"
)

// maxPacket bounds what one read takes: a STUN message over UDP is at most
// the path MTU.
const maxPacket = 1500

// response is a decoded STUN response with where and when it arrived.
type response struct {
	msg  *stun.Message
	from netip.AddrPort
	at   time.Time
}

// socket is one local UDP socket owned by the engine. A reader goroutine
// hands each response to the transaction waiting for its transaction ID;
// anything else (malformed packets, unknown IDs) is dropped.
type socket struct {
	conn  net.PacketConn
	local netip.AddrPort // concrete address the socket is bound to
	name  string
	trace func(Event)

	mu       sync.Mutex
	pending  map[[stun.TransactionIDSize]byte]chan response // client transactions
	inbound  map[[stun.TransactionIDSize]byte]chan response // requests we expect (hairpin)
	done     chan struct{}
	closeErr error
	once     sync.Once
}

func newSocket(conn net.PacketConn, name string, trace func(Event)) (*socket, error) {
	ua, ok := conn.LocalAddr().(*net.UDPAddr)
	if !ok {
		return nil, errors.New("probe: socket has no UDP local address")
	}
	s := &socket{
		conn:    conn,
		local:   natstun.AddrPortOf(ua),
		name:    name,
		trace:   trace,
		pending: map[[stun.TransactionIDSize]byte]chan response{},
		inbound: map[[stun.TransactionIDSize]byte]chan response{},
		done:    make(chan struct{}),
	}
	go s.readLoop()
	return s, nil
}

func (s *socket) readLoop() {
	defer close(s.done)
	buf := make([]byte, maxPacket)
	for {
		n, addr, err := s.conn.ReadFrom(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return // closed
		}
		s.handle(buf[:n], addr)
	}
}

// handle decodes one packet; it never panics on malformed input.
func (s *socket) handle(b []byte, addr net.Addr) {
	at := time.Now()
	from := natstun.AddrPortOf(addr)
	if !stun.IsMessage(b) {
		s.emit(Event{Kind: EventDropped, Socket: s.local, Peer: from, Detail: "not a STUN message"})
		return
	}
	m := &stun.Message{Raw: append([]byte(nil), b...)}
	if err := m.Decode(); err != nil {
		s.emit(Event{Kind: EventDropped, Socket: s.local, Peer: from, Detail: "malformed STUN: " + err.Error()})
		return
	}
	if m.Contains(stun.AttrFingerprint) {
		if err := stun.Fingerprint.Check(m); err != nil {
			s.emit(Event{Kind: EventDropped, Socket: s.local, Peer: from, Detail: "bad FINGERPRINT"})
			return
		}
	}
	if m.Type.Method != stun.MethodBinding {
		s.emit(Event{Kind: EventDropped, Socket: s.local, Peer: from, Detail: "not a Binding message"})
		return
	}
	table := s.pending
	if m.Type.Class == stun.ClassRequest {
		table = s.inbound
	} else if m.Type.Class == stun.ClassIndication {
		return
	}
	s.mu.Lock()
	ch, ok := table[m.TransactionID]
	if ok {
		delete(table, m.TransactionID)
	}
	s.mu.Unlock()
	if !ok {
		s.emit(Event{Kind: EventDropped, Socket: s.local, Peer: from, Detail: "unknown transaction ID"})
		return
	}
	ch <- response{msg: m, from: from, at: at} // buffered, one value per registration
}

// register starts waiting for a message with the given transaction ID: a
// response (client transaction) or, with request true, an incoming request.
func (s *socket) register(id [stun.TransactionIDSize]byte, request bool) chan response {
	ch := make(chan response, 1)
	s.mu.Lock()
	if request {
		s.inbound[id] = ch
	} else {
		s.pending[id] = ch
	}
	s.mu.Unlock()
	return ch
}

func (s *socket) unregister(id [stun.TransactionIDSize]byte) {
	s.mu.Lock()
	delete(s.pending, id)
	delete(s.inbound, id)
	s.mu.Unlock()
}

func (s *socket) emit(e Event) {
	if s.trace != nil {
		e.Time = time.Now()
		e.SocketName = s.name
		s.trace(e)
	}
}

func (s *socket) close() {
	s.once.Do(func() {
		s.closeErr = s.conn.Close()
		<-s.done
	})
}
