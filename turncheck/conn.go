package turncheck

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pion/logging"
	"github.com/pion/stun/v4"

	natstun "github.com/natcheck/natcheck/stun"
)

// Event is one STUN/TURN message sent or received by a check, for tracing.
// It never holds attribute values, so no credential can leak through it.
type Event struct {
	Time   time.Time
	URL    string // the URL checked
	Sent   bool   // sent by us; false for received
	Method string // e.g. "Allocate"
	Class  string // request, success response, error response, indication
	Code   int    // STUN error code of an error response
	RTT    time.Duration
}

func (e Event) String() string {
	dir := "<-"
	if e.Sent {
		dir = "->"
	}
	s := fmt.Sprintf("%s %s %s %s", e.URL, dir, e.Method, e.Class)
	if e.Code != 0 {
		s += fmt.Sprintf(" %d", e.Code)
	}
	if e.RTT > 0 {
		s += fmt.Sprintf(" rtt=%.1fms", float64(e.RTT.Microseconds())/1000)
	}
	return s
}

// response is a STUN response the recorder saw.
type response struct {
	method stun.Method
	class  stun.MessageClass
	code   int
	mapped netip.AddrPort
	life   time.Duration
	at     time.Time
	rtt    time.Duration
}

// recorder wraps the control connection to a TURN server. It lets the pion
// client read and write as usual and records, for the check, the time each
// request was first sent, each response (its error code and
// XOR-MAPPED-ADDRESS), when probe packets leave, and an ICMP
// port-unreachable on UDP.
type recorder struct {
	pc        net.PacketConn // nil when conn is a connected UDP socket
	udp       *net.UDPConn   // connected UDP socket, or nil
	server    net.Addr
	url       string
	token     []byte
	trace     func(Event)
	now       func() time.Time
	mu        sync.Mutex
	sent      map[[stun.TransactionIDSize]byte]time.Time
	responses []response
	probeSent map[uint32]time.Time
	changed   chan struct{} // closed and replaced on every new response
	refused   chan struct{}
	refuseErr error
}

func newRecorder(url string, token []byte, trace func(Event), now func() time.Time) *recorder {
	return &recorder{
		url: url, token: token, trace: trace, now: now,
		sent:      map[[stun.TransactionIDSize]byte]time.Time{},
		probeSent: map[uint32]time.Time{},
		changed:   make(chan struct{}),
		refused:   make(chan struct{}),
	}
}

// ReadFrom implements net.PacketConn.
func (r *recorder) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		var n int
		var from net.Addr
		var err error
		if r.udp != nil {
			n, err = r.udp.Read(b)
			from = r.server
		} else {
			n, from, err = r.pc.ReadFrom(b)
		}
		if err != nil {
			if r.udp != nil && errors.Is(err, syscall.ECONNREFUSED) {
				// ICMP port unreachable: nothing listens there. The
				// socket stays usable; keep reading until it is closed.
				r.mu.Lock()
				if r.refuseErr == nil {
					r.refuseErr = err
					close(r.refused)
				}
				r.mu.Unlock()
				continue
			}
			return n, from, err
		}
		r.observe(b[:n], false)
		return n, from, nil
	}
}

// WriteTo implements net.PacketConn; on a connected UDP socket the address
// is the server's anyway.
func (r *recorder) WriteTo(b []byte, to net.Addr) (int, error) {
	r.observe(b, true)
	if r.udp != nil {
		return r.udp.Write(b)
	}
	return r.pc.WriteTo(b, to)
}

func (r *recorder) observe(b []byte, sent bool) {
	now := r.now()
	if sent && len(r.token) > 0 {
		if i := bytes.Index(b, r.token); i >= 0 && len(b) >= i+len(r.token)+4 {
			seq := binary.BigEndian.Uint32(b[i+len(r.token):])
			r.mu.Lock()
			if _, ok := r.probeSent[seq]; !ok {
				r.probeSent[seq] = now
			}
			r.mu.Unlock()
		}
	}
	if !stun.IsMessage(b) {
		return
	}
	m := &stun.Message{Raw: append([]byte(nil), b...)}
	if err := m.Decode(); err != nil {
		return
	}
	ev := Event{Time: now, URL: r.url, Sent: sent, Method: m.Type.Method.String(), Class: m.Type.Class.String()}
	if m.Type.Method == stun.MethodData || m.Type.Method == stun.MethodSend {
		return // data, traced by count elsewhere
	}
	r.mu.Lock()
	switch {
	case sent && m.Type.Class == stun.ClassRequest:
		if _, ok := r.sent[m.TransactionID]; !ok {
			r.sent[m.TransactionID] = now
		}
	case !sent && (m.Type.Class == stun.ClassSuccessResponse || m.Type.Class == stun.ClassErrorResponse):
		resp := response{method: m.Type.Method, class: m.Type.Class, at: now}
		if t, ok := r.sent[m.TransactionID]; ok {
			resp.rtt = now.Sub(t)
			ev.RTT = resp.rtt
		}
		var ec stun.ErrorCodeAttribute
		if ec.GetFrom(m) == nil {
			resp.code = int(ec.Code)
			ev.Code = resp.code
		}
		var xm stun.XORMappedAddress
		if xm.GetFrom(m) == nil {
			resp.mapped = natstun.AddrPortFromIP(xm.IP, xm.Port)
		}
		if v, err := m.Get(stun.AttrLifetime); err == nil && len(v) == 4 {
			resp.life = time.Duration(binary.BigEndian.Uint32(v)) * time.Second
		}
		r.responses = append(r.responses, resp)
		close(r.changed)
		r.changed = make(chan struct{})
	}
	r.mu.Unlock()
	if r.trace != nil {
		r.trace(ev)
	}
}

// last returns the last response to a request of method m.
func (r *recorder) last(m stun.Method) (response, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.responses) - 1; i >= 0; i-- {
		if r.responses[i].method == m {
			return r.responses[i], true
		}
	}
	return response{}, false
}

// count returns how many responses there were to requests of method m.
func (r *recorder) count(m stun.Method) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, x := range r.responses {
		if x.method == m {
			n++
		}
	}
	return n
}

// waitResponse waits until more than after responses to method m arrived,
// or until timeout; it returns the last one.
func (r *recorder) waitResponse(m stun.Method, after int, timeout time.Duration) (response, bool) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		ch := r.changed
		r.mu.Unlock()
		if r.count(m) > after {
			return r.last(m)
		}
		select {
		case <-ch:
		case <-deadline.C:
			return response{}, false
		}
	}
}

func (r *recorder) probeTime(seq uint32) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.probeSent[seq]
	return t, ok
}

func (r *recorder) Close() error {
	if r.udp != nil {
		return r.udp.Close()
	}
	return r.pc.Close()
}

func (r *recorder) LocalAddr() net.Addr {
	if r.udp != nil {
		return r.udp.LocalAddr()
	}
	return r.pc.LocalAddr()
}

func (r *recorder) SetDeadline(t time.Time) error {
	if r.udp != nil {
		return r.udp.SetDeadline(t)
	}
	return r.pc.SetDeadline(t)
}

func (r *recorder) SetReadDeadline(t time.Time) error {
	if r.udp != nil {
		return r.udp.SetReadDeadline(t)
	}
	return r.pc.SetReadDeadline(t)
}

func (r *recorder) SetWriteDeadline(t time.Time) error {
	if r.udp != nil {
		return r.udp.SetWriteDeadline(t)
	}
	return r.pc.SetWriteDeadline(t)
}

// logFactory is a pion LoggerFactory that prints nothing and keeps the
// warnings and errors, with every secret in redact replaced, so that a
// failure inside pion (an ICE agent's TURN allocation, say) can be told in
// plain words.
type logFactory struct {
	redact []string
	mu     sync.Mutex
	lines  []string
}

func newLogFactory(secrets ...string) *logFactory {
	f := &logFactory{}
	for _, s := range secrets {
		if s != "" {
			f.redact = append(f.redact, s)
		}
	}
	return f
}

func (f *logFactory) NewLogger(string) logging.LeveledLogger { return logger{f} }

func (f *logFactory) add(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	for _, r := range f.redact {
		s = strings.ReplaceAll(s, r, "REDACTED")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.lines) < 100 {
		f.lines = append(f.lines, s)
	}
}

func (f *logFactory) messages() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.lines...)
}

type logger struct{ f *logFactory }

func (logger) Trace(string)                     {}
func (logger) Tracef(string, ...any)            {}
func (logger) Debug(string)                     {}
func (logger) Debugf(string, ...any)            {}
func (logger) Info(string)                      {}
func (logger) Infof(string, ...any)             {}
func (l logger) Warn(msg string)                { l.f.add("%s", msg) }
func (l logger) Warnf(format string, a ...any)  { l.f.add(format, a...) }
func (l logger) Error(msg string)               { l.f.add("%s", msg) }
func (l logger) Errorf(format string, a ...any) { l.f.add(format, a...) }
