package report

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/natcheck/natcheck/natclass"
)

// portMapped: the gateway answers NAT-PMP and PCP, a PCP mapping let a
// stranger in, UPnP is silent.
var portMapped = natclass.PortMapping{
	UPnP:           natclass.PortMappingProtocol{Error: "no SSDP answer from 192.168.1.1 within 250ms"},
	NATPMP:         natclass.PortMappingProtocol{Answered: true, External: netip.MustParseAddr("203.0.113.5")},
	PCP:            natclass.PortMappingProtocol{Answered: true, External: netip.MustParseAddr("203.0.113.5"), InboundVerified: natclass.TriYes},
	Mapped:         natclass.PortMapPCP,
	MappedExternal: netip.MustParseAddrPort("203.0.113.5:40001"),
}

func reportWithPortMapping() Report {
	r := build(in(portRestricted()))
	r.AddPortMapping(portMapped, natclass.PortMappingJudgement{Summary: "the gateway answers nat-pmp, pcp", ExternalNotPublic: natclass.TriNo,
		Verified: natclass.PortMapPCP, Reasons: []string{"a hand-written reason"}})
	return r
}

func TestPortMappingJSON(t *testing.T) {
	b, err := json.Marshal(reportWithPortMapping())
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		PortMapping map[string]json.RawMessage `json:"port_mapping"`
		Reasons     []string                   `json:"reasons"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"upnp":                `{"answered":false,"external_address":"","inbound_verified":null,"error":"no SSDP answer from 192.168.1.1 within 250ms"}`,
		"nat_pmp":             `{"answered":true,"external_address":"203.0.113.5","inbound_verified":null}`,
		"pcp":                 `{"answered":true,"external_address":"203.0.113.5","inbound_verified":true}`,
		"external_not_public": `false`,
		"mapped":              `"pcp"`,
		"mapped_external":     `"203.0.113.5:40001"`,
	}
	for k, v := range want {
		if got := string(doc.PortMapping[k]); got != v {
			t.Errorf("%s: got %s, want %s", k, got, v)
		}
	}
	if doc.Reasons[len(doc.Reasons)-1] != "a hand-written reason" {
		t.Errorf("reasons: %q", doc.Reasons)
	}
	b, _ = json.Marshal(build(in(portRestricted())))
	if bytes.Contains(b, []byte("port_mapping")) {
		t.Error("port_mapping present without detection")
	}
}

func TestPortMappingText(t *testing.T) {
	var b bytes.Buffer
	if err := WriteText(&b, reportWithPortMapping(), TextOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		"Port mapping: the gateway answers nat-pmp, pcp\n",
		"  UPnP: no answer\n",
		"  NAT-PMP: answers, external address 203.0.113.5\n",
		"  PCP: answers, external address 203.0.113.5, inbound verified\n",
	} {
		if !strings.Contains(b.String(), line) {
			t.Errorf("no %q in\n%s", line, b.String())
		}
	}
}

func TestPortMappingPrometheus(t *testing.T) {
	var b bytes.Buffer
	if err := WritePrometheus(&b, reportWithPortMapping()); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		`natcheck_portmap_answered{protocol="upnp"} 0`,
		`natcheck_portmap_answered{protocol="nat_pmp"} 1`,
		`natcheck_portmap_inbound_verified{protocol="pcp"} 1`,
		`natcheck_portmap_external_not_public 0`,
	} {
		if !strings.Contains(b.String(), line+"\n") {
			t.Errorf("no %q in\n%s", line, b.String())
		}
	}
	if strings.Contains(b.String(), `natcheck_portmap_inbound_verified{protocol="upnp"}`) {
		t.Error("inbound_verified present for a protocol not tried")
	}
}
