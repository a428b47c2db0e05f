package rendezvous

import (
	"context"
	"encoding/json"
	"errors"
)

// Conn is one member's end of a room: what it sends goes to the other
// member, and Recv returns what the server and the other member sent.
// *Client (a WebSocket member) and the server peer's in-process end
// (given to Server.Peer) implement it. Send and Recv may be called from
// different goroutines, but each from one at a time.
type Conn interface {
	// Send sends a peer message (one of PeerTypes) to the other member.
	Send(ctx context.Context, m Message) error
	// Recv returns the next message: a peer message from the other
	// member, or a control message (TypePeer, TypeError) from the
	// server. After the connection ends it returns an error wrapping
	// ErrClosed.
	Recv(ctx context.Context) (Message, error)
}

// ErrClosed is wrapped by the errors of Send and Recv once the connection
// has ended: closed by this side, by the server (the error then holds the
// server's reason), or lost.
var ErrClosed = errors.New("rendezvous connection closed")

// peerConn is the server peer's end of a room (Server.Peer's Conn): its
// messages go through the same checks and forwarding as a WebSocket
// member's, without a network in between.
type peerConn struct {
	m *member
}

func (p peerConn) Send(ctx context.Context, msg Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	data, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	if _, err := validateMessage(data); err != nil {
		return err
	}
	select {
	case <-p.m.quit:
		return p.m.closedErr()
	default:
	}
	p.m.s.forward(p.m, data)
	return nil
}

func (p peerConn) Recv(ctx context.Context) (Message, error) {
	var data []byte
	select {
	case data = <-p.m.out:
		p.m.pop(data)
	case <-ctx.Done():
		return Message{}, ctx.Err()
	case <-p.m.quit:
		// Whatever was queued before the end is still delivered.
		select {
		case data = <-p.m.out:
			p.m.pop(data)
		default:
			return Message{}, p.m.closedErr()
		}
	}
	var msg Message
	if err := json.Unmarshal(data, &msg); err != nil {
		return Message{}, err
	}
	return msg, nil
}
