// Package progress tells a person on stderr what a long run is waiting for:
// elapsed and remaining time and partial results. On a terminal it keeps
// one live line, rewritten in place; elsewhere (a CI log, a file) it
// writes plain lines, at most one per Interval. It never writes to stdout
// and never into a report.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/mattn/go-isatty"
)

// Interval is the least time between two plain lines.
const Interval = 10 * time.Second

// Reporter writes the progress of one run. Its methods are safe for
// concurrent use; a nil *Reporter does nothing.
type Reporter struct {
	w     io.Writer
	live  bool
	what  string
	start time.Time
	total time.Duration
	now   func() time.Time

	mu       sync.Mutex
	last     time.Time // of the last plain line
	lastLen  int       // of the live line
	finished bool
}

// New returns a Reporter for a run of about total (0 if unknown) that
// waits for what, writing to w. live says whether w is a terminal; Live
// tells for a file.
func New(w io.Writer, live bool, what string, total time.Duration) *Reporter {
	return &Reporter{w: w, live: live, what: what, start: time.Now(), total: total, now: time.Now}
}

// Live reports whether w is a terminal.
func Live(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

// Update shows partial, the results so far, with the elapsed and the
// remaining time. Plain lines are written at most once per Interval.
func (r *Reporter) Update(partial string) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.finished {
		return
	}
	now := r.now()
	if !r.live && !r.last.IsZero() && now.Sub(r.last) < Interval {
		return
	}
	r.write(r.line(now, partial))
	r.last = now
}

// Done ends the progress with a last line: what the run found, or why it
// stopped early.
func (r *Reporter) Done(result string) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.finished {
		return
	}
	r.finished = true
	r.write(fmt.Sprintf("%s: done after %s: %s", r.what, round(r.now().Sub(r.start)), result))
	if r.live {
		fmt.Fprintln(r.w)
	}
}

func (r *Reporter) line(now time.Time, partial string) string {
	elapsed := now.Sub(r.start)
	s := fmt.Sprintf("%s: %s elapsed", r.what, round(elapsed))
	if r.total > 0 {
		s += fmt.Sprintf(", about %s left", round(max(r.total-elapsed, 0)))
	}
	if partial != "" {
		s += "; " + partial
	}
	return s
}

// write writes s as the live line (over the last one) or as a plain line;
// r.mu is held.
func (r *Reporter) write(s string) {
	s = strings.ReplaceAll(s, "\n", " ")
	if !r.live {
		fmt.Fprintln(r.w, s)
		return
	}
	pad := ""
	if n := r.lastLen - len(s); n > 0 {
		pad = strings.Repeat(" ", n)
	}
	fmt.Fprintf(r.w, "\r%s%s", s, pad)
	r.lastLen = len(s)
}

func round(d time.Duration) time.Duration {
	if d < time.Minute {
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Second)
}
