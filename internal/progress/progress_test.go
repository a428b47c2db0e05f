package progress

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newAt(w *bytes.Buffer, live bool, total time.Duration) (*Reporter, *clock) {
	c := &clock{t: time.Unix(1000, 0)}
	r := New(w, live, "binding lifetime", total)
	r.start, r.now = c.t, c.now
	return r, c
}

// TestPlain: without a terminal, one line per Interval at most, and a last
// line with the result.
func TestPlain(t *testing.T) {
	var b bytes.Buffer
	r, c := newAt(&b, false, time.Minute)
	r.Update("3 of 8 sockets answered")
	c.t = c.t.Add(time.Second)
	r.Update("dropped: too soon")
	c.t = c.t.Add(Interval)
	r.Update("4 of 8")
	r.Done("lifetime 30-35 s")
	r.Update("after done")
	want := "binding lifetime: 0s elapsed, about 1m0s left; 3 of 8 sockets answered\n" +
		"binding lifetime: 11s elapsed, about 49s left; 4 of 8\n" +
		"binding lifetime: done after 11s: lifetime 30-35 s\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

// TestLive: on a terminal one line is rewritten in place, a shorter line
// blanks the rest of a longer one, and Done ends the line.
func TestLive(t *testing.T) {
	var b bytes.Buffer
	r, c := newAt(&b, true, 0)
	r.Update("a long partial result")
	c.t = c.t.Add(1500 * time.Millisecond)
	r.Update("short")
	r.Done("ok")
	want := "\rbinding lifetime: 0s elapsed; a long partial result" +
		"\rbinding lifetime: 1.5s elapsed; short" + strings.Repeat(" ", 14) + // 51 - 37
		"\rbinding lifetime: done after 1.5s: ok" + strings.Repeat(" ", 0) + "\n"
	if b.String() != want {
		t.Errorf("got %q\nwant %q", b.String(), want)
	}
}

func TestNil(t *testing.T) {
	var r *Reporter
	r.Update("x")
	r.Done("y")
}
