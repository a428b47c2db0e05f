package lab

import (
	"context"
	"testing"
	"time"
)

// TestHairpin runs natcheck --hairpin behind the kernel's NATs. Neither
// router hairpins: the client's packet for its own public address (the
// router's 198.19.0.1, or 198.19.0.10 in 1:1 mode, which the router holds
// and dnats only for packets arriving on the WAN side) is delivered to the
// router itself, whose input chain drops it. Without NAT the question does
// not arise: null.
func TestHairpin(t *testing.T) {
	SkipIfUnavailable(t)
	for _, c := range []struct {
		mode Mode
		want *bool
	}{
		{Masquerade, ptr(false)},
		{OneToOne, ptr(false)},
		{Routed, nil},
	} {
		t.Run(string(c.mode), func(t *testing.T) {
			t.Parallel()
			l := New(t, Options{Mode: c.mode})
			bin := natcheckBinary(t)
			counted(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			r, err := l.RunNatcheckWith(ctx, nil, bin, append(l.NatcheckArgs(), "--hairpin", "--udp-only")...)
			if err != nil {
				t.Fatal(err)
			}
			got := r.NAT.Hairpin
			if (got == nil) != (c.want == nil) || (got != nil && *got != *c.want) {
				t.Errorf("behind %s: hairpin %v, want %v\nstdout: %s", c.mode, show(got), show(c.want), r.Stdout)
			}
			t.Logf("behind %s: hairpin %s", c.mode, show(got))
		})
	}
}

func ptr[T any](v T) *T { return &v }

func show(b *bool) string {
	switch {
	case b == nil:
		return "null"
	case *b:
		return "true"
	}
	return "false"
}
