package rendezvous

import "context"

// Conn is one member's end of a room: the client (*Client) on a peer, or
// the server's in-process end when the server itself is the second peer.
// Send and Recv may be called from different goroutines, but each by one
// goroutine at a time.
type Conn interface {
	// Send sends m to the room (the server forwards peer types to the
	// other member).
	Send(ctx context.Context, m Message) error
	// Recv returns the next message: a control message from the server
	// or a peer message from the other member.
	Recv(ctx context.Context) (Message, error)
}
