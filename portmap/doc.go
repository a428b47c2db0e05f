// Package portmap asks the default gateway for port mappings with the three
// protocols home routers speak: UPnP IGD v1/v2 (SSDP discovery, then SOAP
// control through github.com/huin/goupnp), NAT-PMP (RFC 6886) and PCP
// (RFC 6887).
//
// Detect finds out, within a small budget, which of the three the gateway
// answers and which external address it claims; it changes nothing on the
// gateway. Map creates one short-lived UDP mapping with the first protocol
// that works and returns a Mapping whose Delete removes it again.
//
// NAT-PMP and PCP are written on the standard library: both are a few fixed
// binary layouts on UDP port 5351, they share that port and its version
// negotiation, and the one maintained Go module (jackpal/go-nat-pmp) speaks
// NAT-PMP only, takes no context and cannot be pointed at another port for
// tests.
//
// Replies are accepted only from the gateway's address and protocol port;
// short, malformed, wrong-opcode and wrong-nonce replies are skipped (the
// reason is kept for the error if nothing valid arrives).
package portmap
