package report

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/natcheck/natcheck/natclass"
)

// TestLifetimeReport: the lifetime object in JSON, its text line and its
// gauges, for a bracketed lifetime and for one that stopped early.
func TestLifetimeReport(t *testing.T) {
	no, yes := false, true
	r := Report{}
	r.AddLifetime(natclass.Lifetime{Server: "s:3478", Lower: 5900 * time.Millisecond, Upper: 6400 * time.Millisecond,
		Max: 30 * time.Second, Precision: time.Second, RefreshedByInbound: &yes, RefreshedByOutbound: &no, Probes: 12, Sent: 40})
	j, err := json.Marshal(r.Lifetime)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"lower_s":5.9`, `"upper_s":6.4`, `"keepalive_s":4`, `"precision_s":0.5`,
		`"refreshed_by_inbound":true`, `"refreshed_by_outbound":false`, `"probes":12`, `"packets":40`, `"notes":[]`} {
		if !strings.Contains(string(j), want) {
			t.Errorf("JSON %s lacks %s", j, want)
		}
	}
	line := lifetimeText(newPalette(false), r.Lifetime)
	if want := "Binding lifetime: between 5.9s and 6.4s; keepalive every 4s; inbound traffic refreshes, outbound traffic does not refresh"; line != want {
		t.Errorf("text %q, want %q", line, want)
	}
	var b bytes.Buffer
	if err := WritePrometheus(&b, Report{Lifetime: r.Lifetime}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"natcheck_binding_lifetime_lower_seconds 5.9\n", "natcheck_binding_lifetime_upper_seconds 6.4\n",
		"natcheck_binding_lifetime_keepalive_seconds 4\n", `natcheck_binding_lifetime_refreshed{direction="inbound"} 1` + "\n",
		`natcheck_binding_lifetime_refreshed{direction="outbound"} 0` + "\n", "natcheck_binding_lifetime_partial 0\n"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("exposition lacks %q:\n%s", want, b.String())
		}
	}

	r.AddLifetime(natclass.Lifetime{Lower: 40 * time.Second, Max: 5 * time.Minute, Partial: "interrupted"})
	if j, _ := json.Marshal(r.Lifetime); !strings.Contains(string(j), `"upper_s":null`) || !strings.Contains(string(j), `"partial":"interrupted"`) {
		t.Errorf("partial JSON %s", j)
	}
	if line := lifetimeText(newPalette(false), r.Lifetime); line != "Binding lifetime: more than 40s; keepalive every 32s (partial: interrupted)" {
		t.Errorf("partial text %q", line)
	}
	b.Reset()
	if err := WritePrometheus(&b, Report{Lifetime: r.Lifetime}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "upper_seconds ") || !strings.Contains(b.String(), "natcheck_binding_lifetime_partial 1\n") {
		t.Errorf("partial exposition:\n%s", b.String())
	}
}
