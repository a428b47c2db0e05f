package report

import (
	"encoding/json"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/natcheck/natcheck/natclass"
)

// The fixtures below are hand-built observations, as the probe engine would
// record them, classified by the real natclass.Classify. Addresses come from
// the documentation ranges (RFC 5737) and the shared space (RFC 6598).
var (
	started  = time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC)
	duration = 1234 * time.Millisecond

	local  = ap("192.168.1.10:40000") // the mapping socket
	fresh  = ap("192.168.1.10:40001") // the filtering socket
	hairp  = ap("192.168.1.10:40002") // the hairpin sender
	srvP   = ap("203.0.113.1:3478")   // RFC 5780 server, primary address
	srvA   = ap("203.0.113.2:3479")   // its OTHER-ADDRESS
	srvAp  = ap("203.0.113.2:3478")   // alternate IP, primary port
	srvPa  = ap("203.0.113.1:3479")   // primary IP, alternate port
	plain  = ap("198.51.100.7:19302") // a server without RFC 5780
	plain2 = ap("192.0.2.53:3478")    // another one
)

const (
	rfcName   = "stun.example.net:3478"
	plainName = "stun.plain.example:19302"
)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// reply is a success response from from carrying mapped, after rtt ms.
func reply(local, dest, from, mapped netip.AddrPort, rtt float64) natclass.Transaction {
	return natclass.Transaction{
		Local: local, Dest: dest, Sent: 1, Status: natclass.StatusReply,
		From: from, Mapped: mapped, RTT: time.Duration(rtt * float64(time.Millisecond)),
	}
}

// noReply is a request sent sent times with nothing back.
func noReply(local, dest netip.AddrPort, sent int) natclass.Transaction {
	return natclass.Transaction{Local: local, Dest: dest, Sent: sent, Status: natclass.StatusNoReply}
}

func change(p natclass.Transaction, ip, port bool) natclass.Transaction {
	p.ChangeIP, p.ChangePort = ip, port
	return p
}

// rfc5780Obs builds IPv4 observations of one RFC 5780 server (index 0) and
// one plain server (index 1). m1, m2, m3 are the mapped addresses of mapping
// tests I, II and III and of the plain server's Test I (m4); freshMapped is
// the filtering socket's mapping; eif says whether the change-IP-and-port
// filtering test got through.
func rfc5780Obs(m1, m2, m3, m4, freshMapped netip.AddrPort, eif bool) natclass.Observations {
	test1 := reply(local, srvP, srvP, m1, 23.456)
	test1.Other = srvA
	test1.LegacyMapped = m1 // an honest path: no ALG
	fII := change(noReply(fresh, srvP, 6), true, true)
	if eif {
		fII = change(reply(fresh, srvP, srvA, freshMapped, 24.1), true, true)
	}
	return natclass.Observations{
		Family: "ipv4",
		Servers: []natclass.Server{
			{Name: rfcName, Address: srvP, Binding: test1},
			{Name: plainName, Address: plain, Binding: reply(local, plain, plain, m4, 11.04)},
		},
		RFC5780: []natclass.RFC5780Tests{{
			Server:       0,
			MappingII:    reply(local, srvAp, srvAp, m2, 23.9),
			MappingIII:   reply(local, srvA, srvA, m3, 24.25),
			FilteringI:   reply(fresh, srvP, srvP, freshMapped, 23.5),
			FilteringII:  fII,
			FilteringIII: change(noReply(fresh, srvP, 6), false, true),
			Control:      change(reply(local, srvP, srvA, m1, 25), true, true),
			MappingPa:    reply(local, srvPa, srvPa, m1, 24.4),
			ControlPort:  change(reply(local, srvP, srvPa, m1, 25.2), false, true),
		}},
	}
}

// portRestricted is a port-restricted cone NAT (EIM, APDF) that preserves
// ports, seen through an RFC 5780 server and a plain server.
func portRestricted() natclass.Observations {
	pub := ap("198.51.100.200:40000")
	return rfc5780Obs(pub, pub, pub, pub, ap("198.51.100.200:40001"), false)
}

// symmetric is a symmetric NAT (APDM, APDF) that does not preserve ports and
// does not hairpin.
func symmetric() natclass.Observations {
	o := rfc5780Obs(ap("198.51.100.200:50001"), ap("198.51.100.200:50002"), ap("198.51.100.200:50003"),
		ap("198.51.100.200:50004"), ap("198.51.100.200:50005"), false)
	// Behind APDM P:a gets a mapping of its own, and the controls ask
	// (RESPONSE-PORT) for their replies at the mappings that talked to A:a
	// and P:a: 50003 and 50006.
	o.RFC5780[0].MappingPa.Mapped = ap("198.51.100.200:50006")
	o.RFC5780[0].Control.ResponsePort = 50003
	o.RFC5780[0].Control.Mapped = ap("198.51.100.200:50001")
	o.RFC5780[0].ControlPort.ResponsePort = 50006
	o.RFC5780[0].ControlPort.Mapped = ap("198.51.100.200:50001")
	h := noReply(hairp, ap("198.51.100.200:50001"), 3)
	o.Hairpin = &h
	return o
}

// fullConeCGNAT is a full-cone NAT (EIM, EIF) behind a carrier-grade NAT:
// the public servers see an address in 100.64.0.0/10. It hairpins.
func fullConeCGNAT() natclass.Observations {
	pub := ap("100.72.1.2:40000")
	o := rfc5780Obs(pub, pub, pub, pub, ap("100.72.1.2:40001"), true)
	h := reply(hairp, pub, pub, netip.AddrPort{}, 0.3)
	o.Hairpin = &h
	return o
}

// udpBlocked is a network that drops UDP: two servers, seven sends each.
// udpBlockedTLS443 is UDP blocked where only TLS to port 443 gets out.
func udpBlockedTLS443() natclass.Observations {
	o := udpBlocked()
	notAfter := time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC)
	o.Paths = []natclass.Attempt{
		{Transport: natclass.TransportTCP, Server: rfcName, Dest: srvP, Local: ap("192.168.1.10:45000"), SharedPort: true,
			Error: "timed out (packets dropped on the way?)", Total: 2 * time.Second},
		{Transport: natclass.TransportTLS, Server: rfcName, Dest: ap("203.0.113.1:443"), Local: ap("192.168.1.10:45001"),
			Connected: true, OK: true, Mapped: ap("198.51.100.200:61000"), CertNotAfter: notAfter,
			Connect: 21 * time.Millisecond, Handshake: 45 * time.Millisecond, Total: 90 * time.Millisecond},
		{Transport: natclass.TransportTLS, Server: rfcName, Dest: ap("203.0.113.1:5349"), Local: ap("192.168.1.10:45002"),
			Error: "timed out (packets dropped on the way?)", Total: 2 * time.Second},
	}
	return o
}

func udpBlocked() natclass.Observations {
	return natclass.Observations{
		Family: "ipv4",
		Servers: []natclass.Server{
			{Name: rfcName, Address: srvP, Binding: noReply(local, srvP, 7)},
			{Name: plainName, Address: plain, Binding: noReply(local, plain, 7)},
		},
	}
}

// dnsFailure is a host whose resolver fails: no server has an address.
func dnsFailure() natclass.Observations {
	return natclass.Observations{
		Family: "ipv4",
		Servers: []natclass.Server{
			{Name: rfcName, ResolveError: "lookup stun.example.net: no such host"},
			{Name: plainName, ResolveError: "lookup stun.plain.example: no such host"},
		},
	}
}

// sendError is an IPv6 family whose requests could not be sent.
func sendError() natclass.Observations {
	return natclass.Observations{
		Family: "ipv6",
		Servers: []natclass.Server{{
			Name: "stun6.example.net:3478", Address: ap("[2001:db8::1]:3478"),
			Binding: natclass.Transaction{Dest: ap("[2001:db8::1]:3478"), Error: "sendto: network is unreachable"},
		}},
	}
}

// ipv6Open is an IPv6 host with a public address and no filtering, seen
// through two plain servers.
func ipv6Open() natclass.Observations {
	l := ap("[2001:db8:1::10]:40000")
	s1, s2 := ap("[2001:db8:ffff::1]:3478"), ap("[2001:db8:eeee::2]:3478")
	return natclass.Observations{
		Family: "ipv6",
		Servers: []natclass.Server{
			{Name: "stun6a.example:3478", Address: s1, Binding: reply(l, s1, s1, l, 31)},
			{Name: "stun6b.example:3478", Address: s2, Binding: reply(l, s2, s2, l, 42)},
		},
	}
}

// in classifies observations the way the CLI does.
func in(obs natclass.Observations) Input {
	return Input{Observations: obs, Result: natclass.Classify(obs)}
}

func skipped(family, why string) Input {
	return Input{Result: natclass.Result{Family: family, Skipped: why}}
}

// combine is what the pipeline does: natclass.Combine over the results.
func combine(ins []Input) natclass.Overall {
	var rs []natclass.Result
	for _, in := range ins {
		rs = append(rs, in.Result)
	}
	return natclass.Combine(rs)
}

func build(ins ...Input) Report { return Build("v0.1.0", started, duration, ins, combine(ins)) }

func TestBuildPrimaryFamily(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []Input
		want string
	}{
		{"IPv4 leads", []Input{in(portRestricted()), in(ipv6Open())}, "ipv4"},
		{"a family with replies beats one without", []Input{in(udpBlocked()), in(ipv6Open())}, "ipv6"},
		{"IPv4 leads whatever the order", []Input{in(ipv6Open()), in(portRestricted())}, "ipv4"},
		{"skipped families are ignored", []Input{skipped("ipv4", "no IPv4 route"), in(ipv6Open())}, "ipv6"},
		{"no replies anywhere: IPv4 still leads", []Input{in(dnsFailure()), in(sendError())}, "ipv4"},
		{"all skipped", []Input{skipped("ipv4", "disabled"), skipped("ipv6", "disabled")}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := build(tc.in...)
			if r.Family != tc.want {
				t.Fatalf("Family = %q, want %q", r.Family, tc.want)
			}
			for _, f := range r.Families {
				if f.Family == tc.want {
					// The verdict is over both families (natclass.Combine),
					// not the leading family's.
					if r.NAT != f.NAT || !slices.Equal(r.Reasons, f.Reasons) ||
						!slices.Equal(r.PublicAddresses, f.PublicAddresses) {
						t.Errorf("top level does not describe %s: NAT %+v, want %+v", tc.want, r.NAT, f.NAT)
					}
				}
			}
			if len(r.Families) != len(tc.in) {
				t.Errorf("%d families, want %d", len(r.Families), len(tc.in))
			}
		})
	}
}

func TestBuildUDPAndMeasured(t *testing.T) {
	for _, tc := range []struct {
		name          string
		in            []Input
		udp, measured bool
	}{
		{"IPv4 replies", []Input{in(portRestricted())}, true, true},
		{"only IPv6 replies", []Input{in(udpBlocked()), in(ipv6Open())}, true, true},
		{"UDP blocked", []Input{in(udpBlocked())}, false, false},
		{"DNS failure", []Input{in(dnsFailure())}, false, false},
		{"send error and skipped", []Input{skipped("ipv4", "no IPv4 address"), in(sendError())}, false, false},
		{"nothing tested", nil, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := build(tc.in...)
			if r.UDP != tc.udp || r.Measured != tc.measured {
				t.Errorf("udp %v measured %v, want %v %v", r.UDP, r.Measured, tc.udp, tc.measured)
			}
			if !r.Measured && r.Verdict.Summary == "" {
				t.Error("no summary when nothing was measured")
			}
			if r.PublicAddresses == nil || r.Reasons == nil || r.Servers == nil || r.Families == nil {
				t.Error("a list is nil: it would be null in JSON")
			}
		})
	}
}

func TestBuildHeader(t *testing.T) {
	r := Build("v9", started.In(time.FixedZone("CET", 3600)), 1500*time.Microsecond+2*time.Second, nil, natclass.Combine(nil))
	if r.SchemaVersion != SchemaVersion || r.Tool != "natcheck" || r.Version != "v9" {
		t.Errorf("header %d %q %q", r.SchemaVersion, r.Tool, r.Version)
	}
	if !r.StartedAt.Equal(started) || r.StartedAt.Location() != time.UTC {
		t.Errorf("StartedAt %v, want %v in UTC", r.StartedAt, started)
	}
	if r.DurationMS != 2001 {
		t.Errorf("DurationMS %d, want 2001", r.DurationMS)
	}
}

func TestBuildServers(t *testing.T) {
	r := build(in(portRestricted()), in(sendError()))
	r2 := build(in(udpBlocked()))
	r3 := build(in(dnsFailure()))
	all := append(append(r.Servers, r2.Servers...), r3.Servers...)

	f := func(v float64) *float64 { return &v }
	want := []Server{
		{Name: rfcName, Family: "ipv4", Address: "203.0.113.1:3478", Answered: true, RTTMS: f(23.456),
			RFC5780: natclass.TriYes, OtherAddress: "203.0.113.2:3479", ChangeRequest: natclass.ChangeRequestHonoured,
			Mapped: "198.51.100.200:40000"},
		{Name: plainName, Family: "ipv4", Address: "198.51.100.7:19302", Answered: true, RTTMS: f(11.04),
			RFC5780: natclass.TriNo, Mapped: "198.51.100.200:40000"},
		{Name: "stun6.example.net:3478", Family: "ipv6", Address: "[2001:db8::1]:3478",
			Error: "sendto: network is unreachable"},
		{Name: rfcName, Family: "ipv4", Address: "203.0.113.1:3478", Error: "no reply over UDP after 7 sends"},
		{Name: plainName, Family: "ipv4", Address: "198.51.100.7:19302", Error: "no reply over UDP after 7 sends"},
		{Name: rfcName, Family: "ipv4", Error: "lookup stun.example.net: no such host"},
		{Name: plainName, Family: "ipv4", Error: "lookup stun.plain.example: no such host"},
	}
	if len(all) != len(want) {
		t.Fatalf("%d servers, want %d: %+v", len(all), len(want), all)
	}
	for i, w := range want {
		g := all[i]
		if (g.RTTMS == nil) != (w.RTTMS == nil) || (g.RTTMS != nil && *g.RTTMS != *w.RTTMS) {
			t.Errorf("server %d (%s): rtt %v, want %v", i, w.Name, deref(g.RTTMS), deref(w.RTTMS))
		}
		g.RTTMS, w.RTTMS = nil, nil
		if g != w {
			t.Errorf("server %d:\n got %+v\nwant %+v", i, g, w)
		}
	}
}

func deref(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}

func TestBuildTests(t *testing.T) {
	r := build(in(symmetric()), skipped("ipv6", "no IPv6 address"))
	var got []string
	for _, x := range r.Families[0].Tests {
		got = append(got, x.Name+" "+x.Server+" "+x.Dest+" "+x.ChangeRequest+" "+x.Status.String())
	}
	want := []string{
		"binding " + rfcName + " 203.0.113.1:3478  reply",
		"binding " + plainName + " 198.51.100.7:19302  reply",
		"mapping-II " + rfcName + " 203.0.113.2:3478  reply",
		"mapping-III " + rfcName + " 203.0.113.2:3479  reply",
		"filtering-I " + rfcName + " 203.0.113.1:3478  reply",
		"filtering-II " + rfcName + " 203.0.113.1:3478 change-ip|change-port no-reply",
		"filtering-III " + rfcName + " 203.0.113.1:3478 change-port no-reply",
		"mapping-Pa " + rfcName + " 203.0.113.1:3479  reply",
		"change-request-control " + rfcName + " 203.0.113.1:3478 change-ip|change-port reply",
		"change-port-control " + rfcName + " 203.0.113.1:3478 change-port reply",
		"hairpin  198.51.100.200:50001  no-reply",
	}
	if !slices.Equal(got, want) {
		t.Errorf("tests:\n got %q\nwant %q", got, want)
	}
	tests := r.Families[0].Tests
	if tests[0].RTTMS == nil || *tests[0].RTTMS != 23.456 || tests[5].RTTMS != nil {
		t.Errorf("RTTs %v %v: want 23.456 on a reply and none without", deref(tests[0].RTTMS), deref(tests[5].RTTMS))
	}
	if tests[5].Sent != 6 || tests[0].Local != "192.168.1.10:40000" || tests[7].From != "203.0.113.1:3479" {
		t.Errorf("fields lost: %+v %+v", tests[5], tests[7])
	}
	if v6 := r.Families[1]; v6.Skipped != "no IPv6 address" || v6.Tests == nil || len(v6.Tests) != 0 {
		t.Errorf("skipped family: %+v", v6)
	}
	// A server that could not be resolved was never sent to: no test.
	if n := len(build(in(dnsFailure())).Families[0].Tests); n != 0 {
		t.Errorf("DNS failure recorded %d tests", n)
	}
	// A send error is a test with its error.
	if ts := build(in(sendError())).Families[0].Tests; len(ts) != 1 || ts[0].Error != "sendto: network is unreachable" {
		t.Errorf("send error tests: %+v", ts)
	}
}

// TestJSONVocabulary pins the JSON field names and enum strings that
// scripts and dashboards depend on. They may be added to, never renamed.
func TestJSONVocabulary(t *testing.T) {
	var sb strings.Builder
	if err := WriteJSON(&sb, build(in(portRestricted()), in(sendError()))); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(sb.String()), &m); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		want any
	}{
		{"schema_version", float64(2)},
		{"tool", "natcheck"},
		{"version", "v0.1.0"},
		{"started_at", "2025-03-14T09:26:53Z"},
		{"duration_ms", float64(1234)},
		{"udp", true},
		{"measured", true},
		{"family", "ipv4"},
		{"nat.mapping", "endpoint-independent"},
		{"nat.filtering", "address-and-port-dependent"},
		{"nat.type", "port-restricted-cone"},
		{"nat.behind_nat", true},
		{"nat.mapping_varies_by_destination", false},
		{"nat.port_preservation", true},
		{"nat.cgnat", nil}, // behind a NAT, a public address says nothing about NATs beyond
		{"nat.alg", false},
		{"nat.hairpin", nil},
		{"nat.rfc5780_server", rfcName},
		{"public_addresses.0", "198.51.100.200:40000"},
		{"verdict.direct_udp", "likely"},
		{"verdict.peers.3.peer", "port-restricted-cone"},
		{"verdict.peers.3.path", "probably-direct"},
		{"verdict.peers.4.peer", "symmetric"},
		{"verdict.peers.4.path", "relay"},
		{"verdict.relay.0", "turn-udp"},
		{"verdict.summary", "Direct UDP likely: port-restricted cone NAT; peers behind symmetric NATs need a TURN relay"},
		{"servers.0.name", rfcName},
		{"servers.0.family", "ipv4"},
		{"servers.0.address", "203.0.113.1:3478"},
		{"servers.0.answered", true},
		{"servers.0.rtt_ms", 23.456},
		{"servers.0.rfc5780", true},
		{"servers.0.other_address", "203.0.113.2:3479"},
		{"servers.0.change_request", "honoured"},
		{"servers.0.mapped_address", "198.51.100.200:40000"},
		{"servers.1.rfc5780", false},
		{"servers.2.rtt_ms", nil},
		{"servers.2.rfc5780", nil},
		{"servers.2.answered", false},
		{"servers.2.error", "sendto: network is unreachable"},
		{"families.0.family", "ipv4"},
		{"families.0.udp", true},
		{"families.0.nat.type", "port-restricted-cone"},
		{"families.0.tests.0.name", "binding"},
		{"families.0.tests.0.status", "reply"},
		{"families.0.tests.0.rtt_ms", 23.456},
		{"families.0.tests.5.status", "no-reply"},
		{"families.0.tests.5.change_request", "change-ip|change-port"},
		{"families.0.tests.5.rtt_ms", nil},
		{"families.1.family", "ipv6"},
		{"families.1.udp", false},
		{"families.1.nat.type", "unknown"},
	} {
		got, ok := lookup(m, tc.path)
		if !ok {
			t.Errorf("%s: missing", tc.path)
			continue
		}
		if got != tc.want {
			t.Errorf("%s = %#v, want %#v", tc.path, got, tc.want)
		}
	}
	// Fields that are null or empty must still be present.
	for _, path := range []string{"reasons", "families.1.public_addresses", "families.1.tests", "servers.2.rtt_ms"} {
		if _, ok := lookup(m, path); !ok {
			t.Errorf("%s: missing", path)
		}
	}
}

// lookup follows a dotted path of object keys and array indexes.
func lookup(v any, path string) (any, bool) {
	for _, k := range strings.Split(path, ".") {
		switch x := v.(type) {
		case map[string]any:
			var ok bool
			if v, ok = x[k]; !ok {
				return nil, false
			}
		case []any:
			i := 0
			for _, c := range k {
				if c < '0' || c > '9' {
					return nil, false
				}
				i = i*10 + int(c-'0')
			}
			if i >= len(x) {
				return nil, false
			}
			v = x[i]
		default:
			return nil, false
		}
	}
	return v, true
}
