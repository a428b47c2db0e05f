package report

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/natcheck/natcheck/natclass"
)

func turnChecks() []natclass.TURNCheck {
	return []natclass.TURNCheck{
		{
			URL: "turns:turn.example.com:443", Transport: natclass.TURNTransportTLS, Auth: "long-term", User: "alice",
			Server: netip.MustParseAddrPort("192.0.2.10:443"), Connect: 12 * time.Millisecond, TLSHandshake: 25 * time.Millisecond,
			TLS:      &natclass.TLSInfo{Version: "TLS 1.3", ServerName: "turn.example.com", Verified: true, NotAfter: time.Date(2027, 1, 2, 0, 0, 0, 0, time.UTC)},
			Allocate: 30 * time.Millisecond, AllocateRTT: 15 * time.Millisecond, Relayed: netip.MustParseAddrPort("192.0.2.10:50000"),
			Permission: 14 * time.Millisecond, Released: natclass.TriYes, OK: true,
			Data:     &natclass.RelayData{Peer: netip.MustParseAddrPort("198.51.100.7:4000"), Sent: 5, Received: 4, RTTMin: 10 * time.Millisecond, RTTAvg: 12 * time.Millisecond, RTTMax: 20 * time.Millisecond},
			EndToEnd: &natclass.EndToEnd{Connected: true, Time: 40 * time.Millisecond, Local: "relay udp 192.0.2.10:50002 (to the server over tls)", Remote: "relay udp 192.0.2.10:50004", Sent: 3, Received: 3},
			Warnings: []string{"1 of 5 packets through the relay were lost"},
		},
		{
			URL: "turn:turn.example.com:3478", Transport: natclass.TURNTransportUDP, Auth: "rest", User: "ci",
			CredentialExpires: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
			Allocate:          2 * time.Millisecond, FailedStep: natclass.TURNStepAllocate, ErrorCode: 401,
			Error: "401 Unauthorized: the server rejected the credentials", Hint: "check the shared secret",
		},
	}
}

func TestTURNReportJSONAndText(t *testing.T) {
	r := BuildTURN("test", time.Unix(0, 0), time.Second, turnChecks(), natclass.VerifiedRelays(turnChecks()))
	if r.OK || strings.Join(r.RelayVerified, ",") != "turn-tls" {
		t.Errorf("ok %v verified %v", r.OK, r.RelayVerified)
	}
	var b bytes.Buffer
	if err := WriteTURNJSON(&b, r, false); err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	turn := back["turn"].([]any)
	first, second := turn[0].(map[string]any), turn[1].(map[string]any)
	if first["connect_ms"].(float64) != 12 || first["released"] != true || first["data"].(map[string]any)["loss"].(float64) != 0.2 {
		t.Errorf("first: %v", first)
	}
	// Steps that did not run are null, not zero.
	if second["connect_ms"] != nil || second["permission_ms"] != nil || second["released"] != nil || second["error_code"].(float64) != 401 {
		t.Errorf("second: %v", second)
	}
	if second["credential_expires"] != "2026-01-01T00:00:00Z" {
		t.Errorf("credential_expires %v", second["credential_expires"])
	}

	b.Reset()
	if err := WriteTURNText(&b, r, TextOptions{}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"Some TURN checks failed; relay verified over TLS", "4/5", "10.0/12.0/20.0", "TLS 1.3, verified, expires 2027-01-02",
		"failed: allocate 401", "what to do: check the shared secret", "warning: 1 of 5 packets", "end to end: relay udp 192.0.2.10:50002"} {
		if !strings.Contains(out, want) {
			t.Errorf("text lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\x1b[") {
		t.Error("escape codes without colour")
	}
	b.Reset()
	WriteTURNText(&b, r, TextOptions{Color: true})
	if !strings.Contains(b.String(), "\x1b[") {
		t.Error("no escape codes with colour")
	}
}

func TestReportAddTURN(t *testing.T) {
	r := Build("test", time.Unix(0, 0), time.Second, nil, natclass.Combine(nil))
	before := r.Verdict.Summary
	var b bytes.Buffer
	WriteJSON(&b, r)
	if strings.Contains(b.String(), `"turn"`) || strings.Contains(b.String(), `"candidates"`) || strings.Contains(b.String(), "relay_verified") {
		t.Errorf("TURN fields present without TURN servers:\n%s", b.String())
	}
	g := natclass.Gathering{
		Candidates: []natclass.Candidate{{Type: "relay", Protocol: "udp", Address: netip.MustParseAddr("192.0.2.10"), Port: 50000,
			RelatedAddr: netip.MustParseAddr("10.0.0.2"), RelatedPort: 1234, Priority: 255, Server: "turns:turn.example.com:443", RelayProtocol: "tls", Time: 3 * time.Millisecond}},
		Servers: []natclass.CandidateServer{{URL: "turns:turn.example.com:443", Want: "relay", Produced: 1}, {URL: "stun:stun.example.com:3478", Want: "srflx", Error: "no answer from the server"}},
	}
	addTURN(&r, turnChecks(), &g)
	if strings.Join(r.Verdict.RelayVerified, ",") != "turn-tls" || !strings.HasPrefix(r.Verdict.Summary, strings.TrimSuffix(before, ".")) || !strings.Contains(r.Verdict.Summary, "over TLS") {
		t.Errorf("verdict %+v", r.Verdict)
	}
	b.Reset()
	if err := WriteText(&b, r, TextOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ICE candidates", "192.0.2.10:50000", "10.0.0.2:1234", "no srflx: no answer from the server", "1 relay"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	WriteJSON(&b, r)
	var back struct {
		Candidates struct {
			Gathered []map[string]any `json:"gathered"`
			Servers  []map[string]any `json:"servers"`
		} `json:"candidates"`
	}
	json.Unmarshal(b.Bytes(), &back)
	if len(back.Candidates.Gathered) != 1 || back.Candidates.Gathered[0]["relay_protocol"] != "tls" || back.Candidates.Gathered[0]["time_ms"].(float64) != 3 || len(back.Candidates.Servers) != 2 {
		t.Errorf("candidates JSON: %+v", back.Candidates)
	}
}

// addTURN is what the pipeline (internal/diagnose.AddTURN) does: natclass
// folds the checks into the verdict, report copies them.
func addTURN(r *Report, checks []natclass.TURNCheck, g *natclass.Gathering) {
	r.Verdict = natclass.FoldTURN(r.Verdict, checks)
	r.AddTURN(checks, g)
}

// The families of a TURN check and of a gathered candidate reach the JSON.
func TestTURNFamilies(t *testing.T) {
	res := TURNResults([]natclass.TURNCheck{{URL: "turn:[::1]:3478?transport=udp", Transport: "udp", Family: "ipv6", RelayedFamily: "ipv4"}})
	if res[0].Family != "ipv6" || res[0].RelayedFamily != "ipv4" {
		t.Errorf("family %q, relayed family %q; want ipv6, ipv4", res[0].Family, res[0].RelayedFamily)
	}
	var r Report
	r.AddTURN(nil, &natclass.Gathering{Candidates: []natclass.Candidate{{Type: "host", Protocol: "udp", Address: netip.MustParseAddr("2001:db8::1"), Family: "ipv6", Port: 5000}}})
	if r.Candidates == nil || len(r.Candidates.Gathered) != 1 || r.Candidates.Gathered[0].Family != "ipv6" {
		t.Errorf("candidates %+v; want one with family ipv6", r.Candidates)
	}
}
