// Package rendezvous is the signaling channel of natcheck pair: a WebSocket
// endpoint (/pair on natcheck serve --http) where two peers meet in a named
// room and pass signaling messages (their diagnoses, an SDP offer and
// answer, trickled ICE candidates, results) to each other. It carries
// signaling only, never media.
//
// Every WebSocket text message is one JSON Message. The server sends the
// control types (joined, peer, error); the peers send the peer types, which
// the server checks (type, size, rate) and forwards verbatim to the other
// member of the room.
package rendezvous

import "encoding/json"

// MaxMessage is the largest message, in bytes, either side accepts.
const MaxMessage = 64 << 10

// Control message types: server to client only.
const (
	// TypeJoined is the server's first message after the upgrade: Room,
	// Role, ExpiresInS and RemoteAddr are set.
	TypeJoined = "joined"
	// TypePeer says the other member arrived (Present true) or left
	// (Present false).
	TypePeer = "peer"
	// TypeError carries Error; the server closes the connection after it.
	TypeError = "error"
)

// Peer message types: sent by one peer, forwarded to the other.
const (
	TypeSummary         = "summary"           // Data: the sender's diagnosis summary
	TypeOffer           = "offer"             // Phase, SDP: from the first member
	TypeAnswer          = "answer"            // Phase, SDP: from the second member
	TypeCandidate       = "candidate"         // Phase, Candidate: an a=candidate value (RFC 8839)
	TypeEndOfCandidates = "end-of-candidates" // Phase: no more candidates in this phase
	TypeResult          = "result"            // Phase, Data: the sender's outcome of a phase
	TypeBye             = "bye"               // the sender is done and leaves
)

// PeerTypes are the message types a client may send.
var PeerTypes = []string{TypeSummary, TypeOffer, TypeAnswer, TypeCandidate, TypeEndOfCandidates, TypeResult, TypeBye}

// Roles in a room. The first member is ICE-controlling and sends the offers.
const (
	RoleFirst  = "first"
	RoleSecond = "second"
)

// Message is one message of the /pair protocol. Which fields are set
// depends on Type (see the Type constants).
type Message struct {
	Type string `json:"type"`

	// Server to client.
	Room       string `json:"room,omitempty"`
	Role       string `json:"role,omitempty"`
	ExpiresInS int    `json:"expires_in_s,omitempty"`
	// RemoteAddr is the client's IP:port as the rendezvous saw it.
	RemoteAddr string `json:"remote_addr,omitempty"`
	Present    *bool  `json:"present,omitempty"`
	Error      string `json:"error,omitempty"`

	// Peer to peer.
	Phase     string          `json:"phase,omitempty"`
	SDP       string          `json:"sdp,omitempty"`
	Candidate string          `json:"candidate,omitempty"`
	Data      json.RawMessage `json:"data,omitempty"`
}
