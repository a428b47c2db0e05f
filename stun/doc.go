// Package stun is the STUN codec that natcheck's client (package probe) and
// servers (package stunserver) share, on top of github.com/pion/stun/v3,
// which encodes and decodes messages and the attributes of RFC 8489.
//
// It adds the RFC 5780 attributes that pion does not type: ChangeRequest
// (CHANGE-REQUEST, RFC 5780 section 7.2) and ResponsePort (RESPONSE-PORT,
// section 7.5), both pion Setters and Getters.
//
// # Import names
//
// A file that imports both this package and pion's keeps the name stun for
// pion and imports this one as natstun:
//
//	import (
//		"github.com/pion/stun/v3"
//
//		natstun "github.com/natcheck/natcheck/stun"
//	)
//
// so that stun.X means pion wherever pion is imported, here included: the
// files of this package import pion under its own name and refer to their
// own identifiers unqualified. A file that does not import pion imports
// this package as stun.
package stun
