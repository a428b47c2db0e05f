package exporter

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestAllowedTargets: a module with allowed_targets probes only those, and
// refuses others with 403 before any packet is sent.
func TestAllowedTargets(t *testing.T) {
	cfg, err := ParseConfig("m.yml", []byte("modules:\n  stun:\n    kind: stun\n    timeout: 1s\n    allowed_targets: [\"127.0.0.1:*\", \"STUN.example.com:3478\"]\n"), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	m := cfg.Modules["stun"]
	for target, want := range map[string]bool{
		"127.0.0.1:3478":        true,
		"stun.example.com:3478": true,
		"stun.example.com:3479": false,
		"10.0.0.1:3478":         false,
	} {
		if got := m.Allows(target); got != want {
			t.Errorf("Allows(%q) = %v, want %v", target, got, want)
		}
	}
	e, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	e.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/probe?module=stun&target=10.0.0.1:3478", nil))
	if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "allowed_targets") {
		t.Errorf("forbidden target: %d %q", rec.Code, rec.Body.String())
	}
	if _, err := ParseConfig("m.yml", []byte("modules:\n  s:\n    kind: stun\n    allowed_targets: [\"[\"]\n"), nil); err == nil || !strings.Contains(err.Error(), "m.yml:4") {
		t.Errorf("bad pattern: %v", err)
	}
}
