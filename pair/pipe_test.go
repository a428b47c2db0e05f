package pair

import (
	"context"
	"encoding/json"
	"errors"
	"sync"

	"github.com/natcheck/natcheck/rendezvous"
)

// pipeEnd is one member of an in-memory room: what it sends, the other end
// receives, as the rendezvous forwards peer messages. It marshals every
// message to JSON and back, as the WebSocket would.
type pipeEnd struct {
	in     chan []byte
	out    chan []byte
	closed chan struct{}
	once   *sync.Once
	// filter, when set, sees each message this end sends and returns the
	// messages to deliver instead (none drops it).
	filter func(rendezvous.Message) []rendezvous.Message
	mu     *sync.Mutex
}

// newPipe returns two connected ends, each already told that the other is
// present, as the server does.
func newPipe() (*pipeEnd, *pipeEnd) {
	ab, ba := make(chan []byte, 1024), make(chan []byte, 1024)
	closed := make(chan struct{})
	once := &sync.Once{}
	a := &pipeEnd{in: ba, out: ab, closed: closed, once: once, mu: &sync.Mutex{}}
	b := &pipeEnd{in: ab, out: ba, closed: closed, once: once, mu: &sync.Mutex{}}
	return a, b
}

var errPipeClosed = errors.New("pipe closed")

func (p *pipeEnd) Send(ctx context.Context, m rendezvous.Message) error {
	msgs := []rendezvous.Message{m}
	p.mu.Lock()
	f := p.filter
	p.mu.Unlock()
	if f != nil {
		msgs = f(m)
	}
	for _, m := range msgs {
		b, err := json.Marshal(m)
		if err != nil {
			return err
		}
		select {
		case p.out <- b:
		case <-p.closed:
			return errPipeClosed
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (p *pipeEnd) Recv(ctx context.Context) (rendezvous.Message, error) {
	var m rendezvous.Message
	select {
	case b := <-p.in:
		err := json.Unmarshal(b, &m)
		return m, err
	case <-p.closed:
		return m, errPipeClosed
	case <-ctx.Done():
		return m, ctx.Err()
	}
}

func (p *pipeEnd) setFilter(f func(rendezvous.Message) []rendezvous.Message) {
	p.mu.Lock()
	p.filter = f
	p.mu.Unlock()
}

func (p *pipeEnd) Close() { p.once.Do(func() { close(p.closed) }) }

// inject delivers m to this end as if the server or the peer sent it.
func (p *pipeEnd) inject(m rendezvous.Message) {
	b, _ := json.Marshal(m)
	p.in <- b
}

func present(v bool) *bool { return &v }

var _ rendezvous.Conn = (*pipeEnd)(nil)
