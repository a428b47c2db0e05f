package report

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/natcheck/natcheck/natclass"
)

func soakCheck() natclass.TURNCheck {
	return natclass.TURNCheck{
		URL: "turn:turn.example.com:3478", Transport: natclass.TURNTransportUDP, Auth: "long-term",
		FailedStep: natclass.TURNStepSoak, Error: "1 of 3 refreshes failed",
		Soak: &natclass.TURNSoak{
			Planned: 2 * time.Minute, Elapsed: 90 * time.Second, Interrupted: true, MaxLoss: 0.02,
			Refreshes: []natclass.TURNRefresh{
				{Kind: natclass.RefreshChannel, At: 50 * time.Millisecond, OK: true, RTT: 2 * time.Millisecond},
				{Kind: natclass.RefreshAllocation, At: 60 * time.Second, OK: true, RTT: 3 * time.Millisecond},
				{Kind: natclass.RefreshPermission, At: 80 * time.Second, Code: 403, Error: "the server refused the permission refresh (error 403)", RTT: 4 * time.Millisecond},
			},
			Minutes: []natclass.SoakMinute{
				{Minute: 0, SoakStats: natclass.SoakStats{Sent: 1200, Received: 1200, ChannelSent: 600, ChannelReceived: 600, IndicationSent: 600, IndicationReceived: 600,
					RTTP50: 10 * time.Millisecond, RTTP95: 12 * time.Millisecond, RTTP99: 15 * time.Millisecond, Jitter: time.Millisecond}},
				{Minute: 1, SoakStats: natclass.SoakStats{Sent: 600, Received: 300, ChannelSent: 300, ChannelReceived: 150, IndicationSent: 300, IndicationReceived: 150,
					RTTP50: 11 * time.Millisecond, RTTP95: 13 * time.Millisecond, RTTP99: 16 * time.Millisecond, Jitter: 2 * time.Millisecond}},
			},
			Total: natclass.SoakStats{Sent: 1800, Received: 1500, ChannelSent: 900, ChannelReceived: 750, IndicationSent: 900, IndicationReceived: 750,
				RTTP50: 10 * time.Millisecond, RTTP95: 13 * time.Millisecond, RTTP99: 16 * time.Millisecond, Jitter: 1500 * time.Microsecond},
		},
	}
}

func TestTURNSoakReport(t *testing.T) {
	r := BuildTURN("test", time.Unix(0, 0), time.Second, []natclass.TURNCheck{soakCheck()}, nil)
	var b bytes.Buffer
	if err := WriteTURNJSON(&b, r, false); err != nil {
		t.Fatal(err)
	}
	var got struct {
		TURN []struct {
			Soak struct {
				DurationS       float64 `json:"duration_s"`
				Interrupted     bool    `json:"interrupted"`
				RefreshFailures int     `json:"refresh_failures"`
				Refreshes       []struct {
					Kind string  `json:"kind"`
					AtS  float64 `json:"at_s"`
					OK   bool    `json:"ok"`
					Code int     `json:"code"`
				} `json:"refreshes"`
				Minutes []struct {
					Minute   int     `json:"minute"`
					Loss     float64 `json:"loss"`
					RTTP95MS float64 `json:"rtt_p95_ms"`
					JitterMS float64 `json:"jitter_ms"`
				} `json:"minutes"`
				Total struct {
					Loss     float64 `json:"loss"`
					RTTP99MS float64 `json:"rtt_p99_ms"`
				} `json:"total"`
			} `json:"soak"`
		} `json:"turn"`
	}
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	s := got.TURN[0].Soak
	if s.DurationS != 120 || !s.Interrupted || s.RefreshFailures != 1 || len(s.Refreshes) != 3 ||
		s.Refreshes[2].Kind != "permission" || s.Refreshes[2].OK || s.Refreshes[2].Code != 403 || s.Refreshes[1].AtS != 60 {
		t.Errorf("soak JSON: %+v", s)
	}
	if len(s.Minutes) != 2 || s.Minutes[1].Minute != 1 || s.Minutes[1].Loss != 0.5 || s.Minutes[1].RTTP95MS != 13 || s.Minutes[0].JitterMS != 1 {
		t.Errorf("soak minutes: %+v", s.Minutes)
	}
	if s.Total.RTTP99MS != 16 || s.Total.Loss < 0.166 || s.Total.Loss > 0.167 {
		t.Errorf("soak total: %+v", s.Total)
	}

	b.Reset()
	if err := WriteTURNText(&b, r, TextOptions{}); err != nil {
		t.Fatal(err)
	}
	text := b.String()
	for _, want := range []string{
		"TURN soak turn:turn.example.com:3478: 1m30s of 2m0s (interrupted)",
		"refreshes: allocation 1 ok; permission 0 ok, 1 failed; channel 1 ok",
		"permission at 80.0 s: the server refused the permission refresh (error 403)",
		"1800 sent (900 ChannelData, 900 Send indications), 1500 back, loss 16.67% (limit 2.00%)",
		"50.00%",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}

	b.Reset()
	if err := WriteTURNPrometheus(&b, r); err != nil {
		t.Fatal(err)
	}
	prom := b.String()
	for _, want := range []string{
		`natcheck_turn_soak_loss_ratio{url="turn:turn.example.com:3478"} 0.16666`,
		`natcheck_turn_soak_refresh_failures_total{url="turn:turn.example.com:3478"} 1`,
		`natcheck_turn_soak_refreshes_total{kind="permission",result="failed",url="turn:turn.example.com:3478"} 1`,
		`natcheck_turn_soak_refreshes_total{kind="allocation",result="failed",url="turn:turn.example.com:3478"} 0`,
		`natcheck_turn_soak_rtt_seconds{quantile="0.99",url="turn:turn.example.com:3478"} 0.016`,
		`natcheck_turn_soak_packets_sent{stream="indication",url="turn:turn.example.com:3478"} 900`,
		`natcheck_turn_soak_jitter_seconds{url="turn:turn.example.com:3478"} 0.0015`,
	} {
		if !strings.Contains(prom, want) {
			t.Errorf("prometheus lacks %q:\n%s", want, prom)
		}
	}
}
