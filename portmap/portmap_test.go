package portmap

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestParseRoute4(t *testing.T) {
	table := "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n" +
		"eth1\t00000000\t0101A8C0\t0003\t0\t0\t200\t00000000\t0\t0\t0\n" +
		"eth0\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\t0\t0\t0\n" +
		"eth0\t0000000A\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n"
	got, err := parseRoute4(strings.NewReader(table))
	if err != nil || got != netip.MustParseAddr("10.0.0.1") {
		t.Fatalf("got %v, %v; want 10.0.0.1 (the lower metric)", got, err)
	}
	_, err = parseRoute4(strings.NewReader(table[:strings.Index(table, "\n")+1] + "eth0\t0000000A\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n"))
	if err == nil || !strings.Contains(err.Error(), "no default gateway") {
		t.Fatalf("no default route: got %v", err)
	}
}

func TestParseRoute6(t *testing.T) {
	z := strings.Repeat("0", 32)
	table := "fd000000000000000000000000000000 40 " + z + " 00 " + z + " 00000100 00000001 00000000 00000001 eth0\n" +
		z + " 00 " + z + " 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 eth0\n" +
		z + " 00 " + z + " 00 " + z + " ffffffff 00000001 00000000 00200200 lo\n"
	got, err := parseRoute6(strings.NewReader(table))
	if err != nil || got != netip.MustParseAddr("fe80::1%eth0") {
		t.Fatalf("got %v, %v; want fe80::1%%eth0", got, err)
	}
}

func TestDetectNATPMPAndPCP(t *testing.T) {
	f := newFakePMP(t, both)
	r := Detect(context.Background(), f.cfg())
	if !r.NATPMP.Answered || r.NATPMP.External != netip.MustParseAddr("203.0.113.9") || r.NATPMP.Error != "" {
		t.Errorf("NAT-PMP: %+v", r.NATPMP)
	}
	if !r.PCP.Answered || r.PCP.Error != "" {
		t.Errorf("PCP: %+v", r.PCP)
	}
	if r.UPnP.Answered || !strings.Contains(r.UPnP.Error, "no SSDP answer") {
		t.Errorf("UPnP: %+v", r.UPnP)
	}
	if got := r.Summary(); got != "the gateway answers nat-pmp, pcp" {
		t.Errorf("summary %q", got)
	}
	// The PCP ANNOUNCE as RFC 6887 section 7.1 lays it out: version 2,
	// opcode 0, lifetime 0, client address 127.0.0.1 IPv4-mapped.
	want := append(make([]byte, 18), 0xff, 0xff, 127, 0, 0, 1)
	want[0] = 2
	found := false
	for _, req := range f.requests() {
		if string(req) == string(want) {
			found = true
		}
	}
	if !found {
		t.Errorf("no PCP ANNOUNCE %x among %x", want, f.requests())
	}
}

// TestDetectNothing: a gateway where nothing listens and one that never
// answers both end within the budget with "no port mapping protocol answered".
func TestDetectNothing(t *testing.T) {
	silent := newFakePMP(t, func([]byte) [][]byte { return nil })
	for name, cfg := range map[string]Config{
		"closed": {Gateway4: netip.MustParseAddr("127.0.0.1"), PMPPort: closedPort(t), SSDPPort: closedPort(t), NoMulticast: true},
		"silent": silent.cfg(),
	} {
		t.Run(name, func(t *testing.T) {
			r := Detect(context.Background(), cfg)
			if r.Any() || r.Summary() != "no port mapping protocol answered" {
				t.Fatalf("got %+v", r)
			}
			for _, p := range []ProtocolResult{r.UPnP, r.NATPMP, r.PCP} {
				if p.Error == "" {
					t.Errorf("no error in %+v", p)
				}
			}
		})
	}
}

func TestDetectNoGatewayConfigured(t *testing.T) {
	// Gateway4 set to an invalid-but-set value is impossible; an IPv6-only
	// gateway config leaves NAT-PMP without an IPv4 gateway.
	cfg := Config{Gateway6: netip.MustParseAddr("::1"), PMPPort: closedPort(t), NoMulticast: true}
	r := Detect(context.Background(), cfg)
	if r.NATPMP.Answered || !strings.Contains(r.NATPMP.Error, "IPv4 only") {
		t.Fatalf("NAT-PMP: %+v", r.NATPMP)
	}
}

// TestDetectIgnoresBadReplies: short, wrong-version, wrong-opcode, and
// wrong-source replies come first; the good one after them is taken.
func TestDetectIgnoresBadReplies(t *testing.T) {
	f := newFakePMP(t, func(req []byte) [][]byte {
		good := both(req)
		if req[0] == 0 {
			return append([][]byte{{0}, {1, 128, 0, 0}, {0, 129, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}, {0, 128, 0, 0, 0}}, good...)
		}
		bad := pcpResp(req, 0, 0, 0, [4]byte{})
		bad[1] = 0x81 // MAP, not ANNOUNCE
		return append([][]byte{{2, 0x80}, bad, append(pcpResp(req, 0, 0, 0, [4]byte{}), 0)}, good...)
	})
	r := Detect(context.Background(), f.cfg())
	if !r.NATPMP.Answered || r.NATPMP.External != netip.MustParseAddr("203.0.113.9") || !r.PCP.Answered {
		t.Fatalf("got %+v", r)
	}

	// Only bad replies: not answered, and the error names the last one.
	onlyBad := newFakePMP(t, func(req []byte) [][]byte {
		if req[0] == 0 {
			return [][]byte{{0, 129, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}}
		}
		return [][]byte{{2, 0x80, 0, 0}}
	})
	r = Detect(context.Background(), onlyBad.cfg())
	if r.NATPMP.Answered || !strings.Contains(r.NATPMP.Error, "opcode 129, want 128") {
		t.Errorf("NAT-PMP: %+v", r.NATPMP)
	}
	if r.PCP.Answered || !strings.Contains(r.PCP.Error, "malformed") {
		t.Errorf("PCP: %+v", r.PCP)
	}
}

func TestDetectWrongSource(t *testing.T) {
	other, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	f := newFakePMP(t, both)
	f.set(0, other) // right address, wrong port: not the gateway's 5351
	r := Detect(context.Background(), f.cfg())
	if r.NATPMP.Answered || r.PCP.Answered {
		t.Fatalf("replies from another port were taken: %+v", r)
	}
}

// TestOtherVersion: a NAT-PMP-only gateway answers PCP with version 0
// UNSUPP_VERSION (RFC 6887 section 9).
func TestOtherVersion(t *testing.T) {
	f := newFakePMP(t, func(req []byte) [][]byte {
		if req[0] == 2 {
			return [][]byte{{0, 128 + req[1], 0, 1, 0, 0, 0, 7}}
		}
		return both(req)
	})
	r := Detect(context.Background(), f.cfg())
	if !r.NATPMP.Answered || r.PCP.Answered || !strings.Contains(r.PCP.Error, "speaks NAT-PMP, not PCP") {
		t.Fatalf("got %+v", r)
	}
}

// TestSlowGateway: answers after the detection budget are too late for
// Detect, and in time for Map's longer timeout.
func TestSlowGateway(t *testing.T) {
	f := newFakePMP(t, both)
	f.set(400*time.Millisecond, nil)
	cfg := f.cfg()
	cfg.Budget = 100 * time.Millisecond
	r := Detect(context.Background(), cfg)
	if r.NATPMP.Answered || r.PCP.Answered || !strings.Contains(r.NATPMP.Error, "no answer") {
		t.Fatalf("got %+v", r)
	}
	cfg.MapTimeout = 5 * time.Second
	m, err := Map(context.Background(), cfg, MapRequest{InternalPort: 5000, Protocols: []Protocol{NATPMP}})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Delete(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestMapPCP(t *testing.T) {
	f := newFakePMP(t, both)
	ctx, cancel := context.WithCancel(context.Background())
	m, err := Map(ctx, f.cfg(), MapRequest{InternalPort: 5000, Lifetime: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if m.Protocol != PCP || m.External != netip.MustParseAddrPort("203.0.113.9:40001") || m.Lifetime != time.Minute ||
		m.Internal != netip.MustParseAddrPort("127.0.0.1:5000") {
		t.Fatalf("got %+v", m)
	}
	cancel() // Ctrl-C: the delete must still go out.
	if err := m.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	reqs := f.requests()
	mapReq, delReq := reqs[0], reqs[len(reqs)-1]
	if len(delReq) != 60 || delReq[1] != 1 || binary.BigEndian.Uint32(delReq[4:]) != 0 ||
		string(delReq[24:36]) != string(mapReq[24:36]) || binary.BigEndian.Uint16(delReq[40:]) != 5000 {
		t.Fatalf("last request %x is not a delete (lifetime 0, same nonce %x, port 5000)", delReq, mapReq[24:36])
	}
	if binary.BigEndian.Uint32(mapReq[4:]) != 60 {
		t.Errorf("map asked lifetime %d, want 60", binary.BigEndian.Uint32(mapReq[4:]))
	}
}

// TestMapRefused: a gateway that refuses PCP and NAT-PMP mappings: Map
// says so for each, and still sends each protocol's delete.
func TestMapRefused(t *testing.T) {
	f := newFakePMP(t, func(req []byte) [][]byte {
		switch {
		case req[0] == 0 && req[1] == 1:
			return [][]byte{pmpMap(2, binary.BigEndian.Uint16(req[4:]), 0, 0)}
		case req[0] == 2 && req[1] == 1 && binary.BigEndian.Uint32(req[4:]) != 0:
			return [][]byte{pcpResp(req, 2, 0, 0, [4]byte{})}
		}
		return both(req)
	})
	_, err := Map(context.Background(), f.cfg(), MapRequest{InternalPort: 5000, Protocols: []Protocol{PCP, NATPMP}})
	if err == nil || !strings.Contains(err.Error(), "pcp result 2 (NOT_AUTHORIZED)") ||
		!strings.Contains(err.Error(), "nat-pmp result 2 (not authorized/refused)") {
		t.Fatalf("got %v", err)
	}
	var pcpDel, pmpDel bool
	for _, r := range f.requests() {
		if len(r) == 60 && r[1] == 1 && binary.BigEndian.Uint32(r[4:]) == 0 {
			pcpDel = true
		}
		if len(r) == 12 && r[1] == 1 && binary.BigEndian.Uint32(r[8:]) == 0 {
			pmpDel = true
		}
	}
	if !pcpDel || !pmpDel {
		t.Fatalf("deletes sent: PCP %v, NAT-PMP %v", pcpDel, pmpDel)
	}
}

func TestDetectUPnP(t *testing.T) {
	g := newFakeIGD(t, "198.51.100.4")
	r := Detect(context.Background(), g.cfg(t))
	if !r.UPnP.Answered || r.UPnP.External != netip.MustParseAddr("198.51.100.4") || r.UPnP.Error != "" {
		t.Fatalf("got %+v", r.UPnP)
	}
	for _, c := range g.calls() {
		if !strings.HasPrefix(c, "GetExternalIPAddress ") {
			t.Errorf("detection changed state: %s", c)
		}
	}
}

func TestMapUPnP(t *testing.T) {
	g := newFakeIGD(t, "198.51.100.4")
	cfg := g.cfg(t)
	m, err := Map(context.Background(), cfg, MapRequest{InternalPort: 5000, Protocols: []Protocol{UPnP}})
	if err != nil {
		t.Fatal(err)
	}
	if m.External != netip.MustParseAddrPort("198.51.100.4:5000") || m.Lifetime != 2*time.Minute {
		t.Fatalf("got %+v", m)
	}
	if err := m.Delete(context.Background()); err != nil {
		t.Fatal(err)
	}
	calls := g.calls()
	var adds []string
	for _, c := range calls {
		if strings.HasPrefix(c, "AddPortMapping ") {
			adds = append(adds, c)
		}
	}
	if len(adds) != 1 || !strings.Contains(adds[0], "<NewLeaseDuration>120</NewLeaseDuration>") || !strings.Contains(adds[0], "<NewInternalClient>127.0.0.1</NewInternalClient>") {
		t.Fatalf("AddPortMapping calls: %q", adds)
	}
	if last := calls[len(calls)-1]; !strings.HasPrefix(last, "DeletePortMapping ") || !strings.Contains(last, "<NewExternalPort>5000</NewExternalPort>") {
		t.Fatalf("last call %q is not the delete", last)
	}
}

// A gateway that grants only permanent mappings gets no mapping at all: one
// without a lease would outlive a natcheck that was killed.
func TestMapUPnPOnlyPermanent(t *testing.T) {
	g := newFakeIGD(t, "198.51.100.4")
	g.addFault = upnpOnlyPermanentLeases
	_, err := Map(context.Background(), g.cfg(t), MapRequest{InternalPort: 5000, Protocols: []Protocol{UPnP}})
	if err == nil || !strings.Contains(err.Error(), "only permanent") {
		t.Fatalf("got %v, want a refusal to map permanently", err)
	}
	for _, c := range g.calls() {
		if strings.HasPrefix(c, "AddPortMapping ") && strings.Contains(c, "<NewLeaseDuration>0</NewLeaseDuration>") {
			t.Errorf("asked for a permanent mapping: %s", c)
		}
	}
}

func TestMapUPnPRefused(t *testing.T) {
	g := newFakeIGD(t, "198.51.100.4")
	g.addFault = 606 // Action not authorized
	_, err := Map(context.Background(), g.cfg(t), MapRequest{InternalPort: 5000, Protocols: []Protocol{UPnP}})
	if err == nil || !strings.Contains(err.Error(), "AddPortMapping") {
		t.Fatalf("got %v", err)
	}
	// A refusal is an answer: no mapping was made, none is deleted.
	for _, c := range g.calls() {
		if strings.HasPrefix(c, "DeletePortMapping ") {
			t.Fatalf("a delete after the refusal: %q", c)
		}
	}
}

// TestMapUPnPLostAnswer: when the answer to AddPortMapping never comes, the
// mapping may exist, and Map deletes it.
func TestMapUPnPLostAnswer(t *testing.T) {
	g := newFakeIGD(t, "198.51.100.4")
	g.addFaults = []int{-1}
	cfg := g.cfg(t)
	cfg.MapTimeout = 500 * time.Millisecond
	if _, err := Map(context.Background(), cfg, MapRequest{InternalPort: 5000, Protocols: []Protocol{UPnP}}); err == nil {
		t.Fatal("Map succeeded")
	}
	calls := g.calls()
	if last := calls[len(calls)-1]; !strings.HasPrefix(last, "DeletePortMapping ") || !strings.Contains(last, "<NewExternalPort>5000</NewExternalPort>") {
		t.Fatalf("no delete after the lost answer: %q", calls)
	}
}
