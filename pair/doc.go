// Package pair is the engine of natcheck pair: two peers on different
// networks meet in a rendezvous room (package rendezvous), exchange their
// diagnoses, predict the path ICE will find between them, and then connect
// for real with pion/ice, the way WebRTC does: an SDP offer and answer
// (RFC 8866, RFC 8839) carrying the ICE credentials, candidates trickled
// as a=candidate values (RFC 8838), a direct phase with host and
// server-reflexive candidates, then, when either side has TURN servers, a
// relay phase (RFC 8656). Over the selected pair each side sends a bounded
// burst the other echoes, for the round-trip time and loss.
//
// Run is one peer. ServePeer is natcheck serve acting as the second peer,
// a public peer like an SFU: host candidates only, on one UDP and one TCP
// port (passive ICE-TCP, RFC 6544), and it sends checks only to the
// address the rendezvous saw the client connect from.
package pair
