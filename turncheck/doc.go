// Package turncheck verifies TURN servers by allocating a relay and sending
// data through it, and gathers ICE candidates with pion/ice.
package turncheck
