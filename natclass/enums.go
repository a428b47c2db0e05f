package natclass

import (
	"fmt"
)

// Behavior is an RFC 4787 mapping or filtering behaviour. The zero value is
// BehaviorUnknown.
type Behavior int

// Behaviours, in the vocabulary of RFC 4787 and RFC 5780.
const (
	BehaviorUnknown                 Behavior = iota // not determined
	BehaviorNone                                    // no NAT (mapping) or no filtering at all
	BehaviorEndpointIndependent                     // EIM / EIF
	BehaviorAddressDependent                        // ADM / ADF
	BehaviorAddressAndPortDependent                 // APDM / APDF
)

var behaviorNames = [...]string{"unknown", "none", "endpoint-independent", "address-dependent", "address-and-port-dependent"}

func (b Behavior) String() string {
	if b < 0 || int(b) >= len(behaviorNames) {
		return fmt.Sprintf("Behavior(%d)", int(b))
	}
	return behaviorNames[b]
}

// MarshalText implements encoding.TextMarshaler.
func (b Behavior) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (b *Behavior) UnmarshalText(t []byte) error {
	return unmarshalEnum(t, behaviorNames[:], (*int)(b), "behavior")
}

// Type is the classic RFC 3489 NAT type name people search for. The zero
// value is TypeUnknown.
type Type int

// NAT types.
const (
	TypeUnknown            Type = iota
	TypeOpenInternet            // no NAT, no filtering
	TypeFirewall                // no NAT, unsolicited inbound dropped
	TypeFullCone                // EIM + EIF
	TypeRestrictedCone          // EIM + ADF
	TypePortRestrictedCone      // EIM + APDF
	TypeSymmetric               // ADM or APDM
	TypeUDPBlocked              // no UDP reply from any server
)

var typeNames = [...]string{"unknown", "open-internet", "firewall", "full-cone", "restricted-cone", "port-restricted-cone", "symmetric", "udp-blocked"}

func (t Type) String() string {
	if t < 0 || int(t) >= len(typeNames) {
		return fmt.Sprintf("Type(%d)", int(t))
	}
	return typeNames[t]
}

// MarshalText implements encoding.TextMarshaler.
func (t Type) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (t *Type) UnmarshalText(b []byte) error {
	return unmarshalEnum(b, typeNames[:], (*int)(t), "NAT type")
}

// Tri is a yes/no answer that may also be unknown (the zero value). In JSON it
// is true, false or null.
type Tri int

// Tri values.
const (
	TriUnknown Tri = iota
	TriNo
	TriYes
)

// TriOf returns Yes for true and No for false.
func TriOf(b bool) Tri {
	if b {
		return TriYes
	}
	return TriNo
}

func (t Tri) String() string {
	switch t {
	case TriYes:
		return "yes"
	case TriNo:
		return "no"
	}
	return "unknown"
}

// MarshalJSON encodes Yes as true, No as false and Unknown as null.
func (t Tri) MarshalJSON() ([]byte, error) {
	switch t {
	case TriYes:
		return []byte("true"), nil
	case TriNo:
		return []byte("false"), nil
	}
	return []byte("null"), nil
}

// UnmarshalJSON decodes true, false and null.
func (t *Tri) UnmarshalJSON(b []byte) error {
	switch string(b) {
	case "true":
		*t = TriYes
	case "false":
		*t = TriNo
	case "null":
		*t = TriUnknown
	default:
		return fmt.Errorf("natclass: %q is not true, false or null", b)
	}
	return nil
}

// Likelihood is the overall answer to "will direct UDP work?". The zero
// value is LikelihoodUnknown.
type Likelihood int

// Likelihoods.
const (
	LikelihoodUnknown    Likelihood = iota
	LikelihoodLikely                // direct with every kind of NAT peer
	LikelihoodPossible              // direct with some kinds of peer; which could not be fully told
	LikelihoodUnlikely              // relay needed with the most common home-router peers
	LikelihoodImpossible            // UDP does not get out
)

var likelihoodNames = [...]string{"unknown", "likely", "possible", "unlikely", "impossible"}

func (l Likelihood) String() string {
	if l < 0 || int(l) >= len(likelihoodNames) {
		return fmt.Sprintf("Likelihood(%d)", int(l))
	}
	return likelihoodNames[l]
}

// MarshalText implements encoding.TextMarshaler.
func (l Likelihood) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (l *Likelihood) UnmarshalText(b []byte) error {
	return unmarshalEnum(b, likelihoodNames[:], (*int)(l), "likelihood")
}

// Route is how traffic to one kind of peer will flow: a route to a peer
// (JSON "path"). The zero value is RouteUnknown.
type Route int

// Routes.
const (
	RouteUnknown        Route = iota
	RouteDirect               // UDP hole punching works
	RouteProbablyDirect       // works in most cases (EIM + APDF on both sides)
	RouteRelay                // a TURN relay is needed
)

var routeNames = [...]string{"unknown", "direct", "probably-direct", "relay"}

func (p Route) String() string {
	if p < 0 || int(p) >= len(routeNames) {
		return fmt.Sprintf("Route(%d)", int(p))
	}
	return routeNames[p]
}

// MarshalText implements encoding.TextMarshaler.
func (p Route) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (p *Route) UnmarshalText(b []byte) error {
	return unmarshalEnum(b, routeNames[:], (*int)(p), "path")
}

func unmarshalEnum(b []byte, names []string, v *int, what string) error {
	for i, n := range names {
		if n == string(b) {
			*v = i
			return nil
		}
	}
	return fmt.Errorf("natclass: unknown %s %q", what, b)
}

// Status is the outcome of one STUN transaction. The zero value StatusNotRun
// means the request was never sent, or the run ended before its waiting
// window did: that is "unknown", never "no reply".
type Status int

// Statuses.
const (
	StatusNotRun     Status = iota
	StatusNoReply           // sent (with retransmissions) and nothing came back within the window
	StatusReply             // a success response arrived
	StatusErrorReply        // an error response arrived (e.g. 420 Unknown Attribute)
)

var statusNames = [...]string{"not-run", "no-reply", "reply", "error-reply"}

func (s Status) String() string {
	if s < 0 || int(s) >= len(statusNames) {
		return fmt.Sprintf("Status(%d)", int(s))
	}
	return statusNames[s]
}

// MarshalText implements encoding.TextMarshaler.
func (s Status) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Status) UnmarshalText(b []byte) error {
	return unmarshalEnum(b, statusNames[:], (*int)(s), "status")
}
