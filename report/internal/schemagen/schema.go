package main

import (
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"time"

	"github.com/invopop/jsonschema"

	"github.com/natcheck/natcheck/natclass"
	"github.com/natcheck/natcheck/report"
)

var (
	timeType            = reflect.TypeFor[time.Time]()
	triType             = reflect.TypeFor[natclass.Tri]()
	textMarshalerType   = reflect.TypeFor[encoding.TextMarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// mapper gives the schemas of types whose JSON is not their Go shape. It
// returns a new schema on every call: the reflector writes the field's
// description into it.
func mapper(t reflect.Type) *jsonschema.Schema {
	switch t {
	case triType:
		return nullable(&jsonschema.Schema{Type: "boolean"})
	case reflect.TypeFor[netip.Addr](), reflect.TypeFor[netip.AddrPort](), reflect.TypeFor[netip.Prefix]():
		return &jsonschema.Schema{Type: "string"}
	}
	if names := enumNames(t); names != nil {
		return &jsonschema.Schema{Type: "string", Enum: names}
	}
	return nil
}

// enumNames returns the names of an enumeration: an integer type that
// marshals to text and back. They are the MarshalText of 0, 1, 2, ... up to
// the first value whose name does not unmarshal back to it (natclass's
// String of a value out of range is "Type(8)").
func enumNames(t reflect.Type) []any {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
	default:
		return nil
	}
	if !t.Implements(textMarshalerType) || !reflect.PointerTo(t).Implements(textUnmarshalerType) {
		return nil
	}
	var names []any
	for i := range 1 << 10 {
		v := reflect.New(t).Elem()
		if v.CanInt() {
			v.SetInt(int64(i))
		} else {
			v.SetUint(uint64(i))
		}
		text, err := v.Interface().(encoding.TextMarshaler).MarshalText()
		if err != nil {
			break
		}
		back := reflect.New(t)
		if err := back.Interface().(encoding.TextUnmarshaler).UnmarshalText(text); err != nil || !back.Elem().Equal(v) {
			break
		}
		names = append(names, string(text))
	}
	return names
}

// nullable returns a schema for s or null, with s's description.
func nullable(s *jsonschema.Schema) *jsonschema.Schema {
	d := s.Description
	s.Description = ""
	return &jsonschema.Schema{AnyOf: []*jsonschema.Schema{s, {Type: "null"}}, Description: d}
}

// build returns the schema of the first root, with every root in $defs.
func build(r *jsonschema.Reflector, roots ...reflect.Type) (*jsonschema.Schema, error) {
	var s *jsonschema.Schema
	for _, t := range roots {
		rs := r.ReflectFromType(t)
		if s == nil {
			s = rs
			continue
		}
		for name, def := range rs.Definitions {
			if old, ok := s.Definitions[name]; ok {
				a, _ := json.Marshal(old)
				b, _ := json.Marshal(def)
				if string(a) != string(b) {
					return nil, fmt.Errorf("two types named %s", name)
				}
				continue
			}
			s.Definitions[name] = def
		}
	}
	return s, finish(s.Definitions, roots)
}

// finish checks that every object and field of the JSON has a
// description, makes nullable fields nullable and gives string fields
// their vocabularies.
func finish(defs jsonschema.Definitions, roots []reflect.Type) error {
	var errs []error
	used := map[string]bool{} // vocabularies, by "type.field"
	names := map[string]reflect.Type{}
	walk(roots, func(t reflect.Type) {
		if other, ok := names[t.Name()]; ok {
			errs = append(errs, fmt.Errorf("%s and %s: two objects of one name", t, other))
			return
		}
		names[t.Name()] = t
		def := defs[t.Name()]
		if def == nil || def.Properties == nil {
			errs = append(errs, fmt.Errorf("%s: not in $defs", t))
			return
		}
		if def.Description == "" {
			errs = append(errs, fmt.Errorf("%s: no description: write a doc comment on the type", t))
		}
		for _, sf := range jsonFields(t) {
			name, optional := jsonName(sf)
			p, ok := def.Properties.Get(name)
			if !ok {
				errs = append(errs, fmt.Errorf("%s.%s: no property %q", t, sf.Name, name))
				continue
			}
			if len(p.OneOf) == 2 && p.OneOf[1].Type == "null" { // jsonschema:"nullable"
				p = nullable(p.OneOf[0])
			} else if sf.Type.Kind() == reflect.Pointer && !optional {
				p = nullable(p)
			}
			def.Properties.Set(name, p)
			if p.Description == "" {
				errs = append(errs, fmt.Errorf("%s.%s (JSON %q): no description: write a doc comment on the field", t, sf.Name, name))
			}
			if v, ok := vocabularies[t][sf.Name]; ok {
				if err := setEnum(p, v); err != nil {
					errs = append(errs, fmt.Errorf("%s.%s: %w", t, sf.Name, err))
				}
				used[t.String()+"."+sf.Name] = true
			}
		}
	})
	for t, fields := range vocabularies {
		for f := range fields {
			if !used[t.String()+"."+f] {
				errs = append(errs, fmt.Errorf("vocabulary of %s.%s: no such field in the JSON", t, f))
			}
		}
	}
	return errors.Join(errs...)
}

// setEnum gives a string property, or the items of an array property, its
// values.
func setEnum(p *jsonschema.Schema, values []string) error {
	if len(p.AnyOf) > 0 {
		p = p.AnyOf[0]
	}
	if p.Type == "array" {
		p = p.Items
	}
	if p.Type != "string" {
		return fmt.Errorf("a vocabulary for a %q", p.Type)
	}
	p.Enum = nil
	for _, v := range values {
		p.Enum = append(p.Enum, v)
	}
	return nil
}

var (
	families   = []string{"ipv4", "ipv6"}
	transports = []string{natclass.TransportUDP, natclass.TransportTCP, natclass.TransportTLS}
	relays     = []string{natclass.RelayTURNUDP, natclass.RelayTURNTCP, natclass.RelayTURNTLS}
)

// vocabularies are the values of string fields that take only a few, by
// type and Go field name; for a slice, the values of its items.
var vocabularies = map[reflect.Type]map[string][]string{
	reflect.TypeFor[report.Report]():       {"Family": append(slices.Clone(families), "")},
	reflect.TypeFor[report.FamilyResult](): {"Family": families},
	reflect.TypeFor[report.Server](): {
		"Family": families,
		"ChangeRequest": {natclass.ChangeRequestHonoured, natclass.ChangeRequestIgnored, natclass.ChangeRequestRejected,
			natclass.ChangeRequestUnconfirmed},
	},
	reflect.TypeFor[report.Attempt](): {"Family": families, "Transport": transports},
	reflect.TypeFor[report.Test](): {
		// The names report gives the transactions of natclass.Observations.
		"Name": {"binding", "mapping-II", "mapping-III", "filtering-I", "filtering-II", "filtering-III", "mapping-Pa",
			"change-request-control", "change-port-control", "resample", "hairpin"},
		"ChangeRequest": {"change-ip|change-port", "change-ip", "change-port"},
	},
	reflect.TypeFor[natclass.PeerRoute](): {"Peer": {natclass.PeerOpen, natclass.PeerFullCone, natclass.PeerRestrictedCone,
		natclass.PeerPortRestrictedCone, natclass.PeerSymmetric, natclass.PeerUDPBlocked}, "Family": families},
	reflect.TypeFor[natclass.NAT64]():   {"Source": {natclass.NAT64SourceDNS64, natclass.NAT64SourceWellKnown}},
	reflect.TypeFor[natclass.Verdict](): {"Relay": relays, "RelayVerified": relays},
	reflect.TypeFor[natclass.WayOut](): {"Via": {natclass.WayDirectUDP, natclass.WayTURNUDP, natclass.WayTURNTCP,
		natclass.WayTURNTLS, natclass.WayNone, natclass.WayUnknown, ""}, "Family": families},
	reflect.TypeFor[report.TURNReport](): {"RelayVerified": relays},
	reflect.TypeFor[report.TURNResult](): {
		"Transport": {natclass.TURNTransportUDP, natclass.TURNTransportTCP, natclass.TURNTransportTLS},
		"Auth":      {"long-term", "rest"},
		"FailedStep": {natclass.TURNStepResolve, natclass.TURNStepConnect, natclass.TURNStepTLS, natclass.TURNStepAllocate,
			natclass.TURNStepPermission, natclass.TURNStepData, natclass.TURNStepEndToEnd},
	},
	// ICE's names (RFC 8445 section 5.1.1, RFC 8839 section 5.1).
	reflect.TypeFor[report.Candidate](): {
		"Type":          {"host", "srflx", "prflx", "relay"},
		"Protocol":      {"udp", "tcp"},
		"RelayProtocol": {"udp", "tcp", "tls"},
	},
	reflect.TypeFor[natclass.CandidateServer](): {"Want": {"srflx", "relay"}},
	reflect.TypeFor[report.PairCandidate]():     {"Type": {"host", "srflx", "prflx", "relay"}, "Protocol": {"udp", "tcp"}},
	reflect.TypeFor[report.PairPhase]():         {"Phase": {report.PhaseDirect, report.PhaseRelay}},
	reflect.TypeFor[report.Pair](): {
		"Role":      {"first", "second"},
		"Predicted": {"direct", "relay", "unknown"},
		"Outcome":   {report.PairDirect, report.PairRelay, report.PairFailed},
	},
}
