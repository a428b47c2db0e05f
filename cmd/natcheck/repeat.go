package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// minEvery is the shortest --every: STUN servers are shared, often public,
// and deserve some restraint.
const minEvery = time.Second

// checkRepeat validates --every and --count against the rest of o.
func checkRepeat(o options) error {
	switch {
	case o.every < 0:
		return fmt.Errorf("--every %v: give a positive duration such as 1m", o.every)
	case o.every > 0 && o.every < minEvery:
		return fmt.Errorf("--every %v: give at least %v", o.every, minEvery)
	case o.count < 0:
		return fmt.Errorf("--count %d: give a positive number of runs", o.count)
	case o.count > 0 && o.every == 0:
		return errors.New("--count needs --every (the time between runs)")
	case o.every > 0 && o.format == "prometheus":
		return errors.New("--every with --format prometheus: a metrics file holds one run; run natcheck from cron or a systemd timer, or use natcheck exporter")
	}
	return nil
}

// repeat runs the diagnosis every o.every, until ctx is done (SIGINT,
// SIGTERM) or o.count runs are done. A run in progress is never cut short
// by ctx: it runs on a context of its own, bounded by --timeout, and
// writes its report; the loop then stops. A run that takes longer than
// o.every is followed by the next one at once. It returns the exit code of
// the last run.
func repeat(ctx context.Context, o options, stdout, stderr io.Writer, e env) int {
	code := exitOK
	next := time.Now()
	for i := 0; o.count == 0 || i < o.count; i++ {
		if i > 0 && o.format == "text" {
			fmt.Fprintln(stdout)
		}
		runCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.timeout)
		code = once(runCtx, o, stdout, stderr, e)
		cancel()
		if ctx.Err() != nil || (o.count > 0 && i+1 == o.count) {
			break
		}
		next = next.Add(o.every)
		if now := time.Now(); next.Before(now) {
			next = now
		}
		t := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			t.Stop()
			return code
		case <-t.C:
		}
	}
	return code
}
