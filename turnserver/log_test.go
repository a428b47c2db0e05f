package turnserver

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestLogLimit(t *testing.T) {
	var l logLimit
	t0 := time.Unix(1000, 0)
	if ok, n := l.allow(t0); !ok || n != 0 {
		t.Errorf("first: %v %d", ok, n)
	}
	for i := range 5 {
		if ok, _ := l.allow(t0.Add(time.Duration(i) * 100 * time.Millisecond)); ok {
			t.Errorf("warning %d within a second let through", i)
		}
	}
	if ok, n := l.allow(t0.Add(time.Second)); !ok || n != 5 {
		t.Errorf("a second later: %v, %d suppressed, want 5", ok, n)
	}
}

// TestPionLogger checks levels, the scope and that pion's warnings and
// errors are limited to about one a second.
func TestPionLogger(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	l := pionLogFactory{log}.NewLogger("turn")
	l.Trace("below debug")
	l.Debugf("debug %d", 1)
	l.Info("info")
	for range 100 {
		l.Errorf("client %s went away", "x")
	}
	out := buf.String()
	for _, want := range []string{`level=DEBUG msg="debug 1" scope=turn`, `level=INFO msg=info scope=turn`, `level=WARN msg="client x went away" scope=turn`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "below debug") || strings.Contains(out, "ERROR") {
		t.Errorf("trace logged or error not lowered to a warning:\n%s", out)
	}
	if n := strings.Count(out, "went away"); n != 1 {
		t.Errorf("%d of 100 errors logged within a second, want 1", n)
	}
}
