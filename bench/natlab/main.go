// Command natlab times natcheck's full diagnosis against coturn's
// turnutils_natdiscovery behind each router mode of the network-namespace
// lab, and says whether each tool was right. Run it as root through
// bench/nat-lab.sh.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/natcheck/natcheck/lab"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

type column struct {
	durations []time.Duration
	right     int
	runs      int
	wrong     []string       // first few wrong answers, for the notes
	ways      map[string]int // natcheck's way out, counted
}

// addWay counts one way out.
func (c *column) addWay(w string) {
	if c.ways == nil {
		c.ways = make(map[string]int)
	}
	c.ways[w]++
}

// way returns the ways out seen, most frequent first, with their counts
// when there was more than one.
func (c *column) way() string {
	if len(c.ways) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(c.ways))
	for k := range c.ways {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		if c.ways[a] != c.ways[b] {
			return c.ways[b] - c.ways[a]
		}
		return strings.Compare(a, b)
	})
	if len(keys) == 1 {
		return keys[0]
	}
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s (%d)", k, c.ways[k])
	}
	return strings.Join(parts, ", ")
}

func (c *column) add(d time.Duration, bad []string, err error) {
	c.runs++
	if err != nil {
		c.wrong = appendNote(c.wrong, "error: "+err.Error())
		return
	}
	c.durations = append(c.durations, d)
	if len(bad) == 0 {
		c.right++
	} else {
		c.wrong = appendNote(c.wrong, strings.Join(bad, "; "))
	}
}

func appendNote(notes []string, s string) []string {
	if len(notes) < 3 && !slices.Contains(notes, s) {
		notes = append(notes, s)
	}
	return notes
}

func (c *column) median() string {
	if len(c.durations) == 0 {
		return "-"
	}
	return fmt.Sprintf("%d", median(c.durations).Milliseconds())
}

func (c *column) verdict() string {
	if c.runs == 0 {
		return "-"
	}
	word := "yes"
	if c.right != c.runs {
		word = "no"
	}
	return fmt.Sprintf("%s (%d/%d)", word, c.right, c.runs)
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("natlab", flag.ContinueOnError)
	fs.SetOutput(stderr)
	runs := fs.Int("runs", 5, "runs of each tool per mode (1 to 50)")
	modes := fs.String("modes", "", "comma-separated router modes (default: all)")
	natcheck := fs.String("natcheck", "", "natcheck binary (default: build ./cmd/natcheck if it exists, else time natdiscovery only)")
	local := fs.Bool("natdiscovery-local", false, "give natdiscovery -L <client address>, without which it cannot see \"no NAT\"")
	loss := fs.Int("loss", 0, "percent of forwarded UDP the router drops each way (0 to 50); natcheck may then answer unknown")
	budget := fs.Duration("budget", 12*time.Minute, "stop starting new runs after this long")
	verbose := fs.Bool("v", false, "print every run")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *runs < 1 || *runs > 50 {
		fmt.Fprintln(stderr, "natlab: -runs must be between 1 and 50")
		return 2
	}
	if *loss < 0 || *loss > 50 {
		fmt.Fprintln(stderr, "natlab: -loss must be between 0 and 50")
		return 2
	}
	if err := lab.Available(); err != nil {
		fmt.Fprintln(stderr, "natlab: needs root and ip/nft/turnserver:", err)
		return 2
	}
	selected := lab.Modes()
	if *modes != "" {
		selected = nil
		for _, m := range strings.Split(*modes, ",") {
			if !slices.Contains(lab.Modes(), lab.Mode(m)) {
				fmt.Fprintf(stderr, "natlab: unknown mode %q (have %v)\n", m, lab.Modes())
				return 2
			}
			selected = append(selected, lab.Mode(m))
		}
	}
	ctx, cancel := context.WithTimeout(ctx, *budget)
	defer cancel()

	bin := *natcheck
	if bin == "" {
		root, err := lab.ModuleRoot()
		if err != nil {
			fmt.Fprintln(stderr, "natlab:", err)
			return 1
		}
		dir, err := os.MkdirTemp("", "natlab-bin-")
		if err != nil {
			fmt.Fprintln(stderr, "natlab:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		bin, err = lab.BuildNatcheck(ctx, root, dir)
		switch {
		case errors.Is(err, lab.ErrNoNatcheck):
			fmt.Fprintln(stderr, "natlab: ./cmd/natcheck does not exist yet: timing turnutils_natdiscovery only")
		case err != nil:
			fmt.Fprintln(stderr, "natlab:", err)
			return 1
		}
	}
	var ndArgs []string
	if *local {
		ndArgs = []string{"-L", lab.ClientAddr.String()}
	}

	logf := func(format string, a ...any) {
		if *verbose {
			fmt.Fprintf(stderr, format+"\n", a...)
		}
	}
	type row struct {
		mode   lab.Mode
		nc, nd column
	}
	var rows []row
	start := time.Now()
	for _, mode := range selected {
		if ctx.Err() != nil {
			fmt.Fprintf(stderr, "natlab: budget spent, %s not measured\n", mode)
			break
		}
		fmt.Fprintf(stderr, "natlab: %s ...\n", mode)
		r := row{mode: mode}
		l, err := lab.Start(ctx, lab.Options{Mode: mode, LossPercent: *loss, Logf: logf})
		if err != nil {
			fmt.Fprintf(stderr, "natlab: %s: %v\n", mode, err)
			return 1
		}
		want := lab.Expect(mode)
		for i := 0; i < *runs && ctx.Err() == nil; i++ {
			// Alternate the tools so that neither always runs first.
			for j := 0; j < 2; j++ {
				if (i+j)%2 == 0 {
					if bin == "" {
						continue
					}
					res, err := l.RunNatcheck(ctx, bin)
					bad := want.CheckNatcheck(res, *loss > 0)
					r.nc.add(res.Duration, bad, err)
					if err == nil {
						w := res.Verdict.WayOut.Via
						if res.Verdict.WayOut.Port != 0 {
							w += fmt.Sprintf(":%d", res.Verdict.WayOut.Port)
						}
						r.nc.addWay(w)
					}
					logf("  natcheck      %v exit=%d udp=%v mapping=%s filtering=%s type=%s direct_udp=%s wrong=%q err=%v",
						res.Duration.Round(time.Millisecond), res.ExitCode, res.UDP, res.NAT.Mapping, res.NAT.Filtering, res.NAT.Type, res.Verdict.DirectUDP, bad, err)
				} else {
					res, err := l.RunNatdiscovery(ctx, ndArgs...)
					bad := want.CheckNatdiscovery(res)
					r.nd.add(res.Duration, bad, err)
					logf("  natdiscovery  %v udp=%v mapping=%q filtering=%q type=%s wrong=%q err=%v",
						res.Duration.Round(time.Millisecond), res.UDP, res.Mapping, res.Filtering, res.Type, bad, err)
				}
			}
		}
		if err := l.Close(); err != nil {
			fmt.Fprintf(stderr, "natlab: closing the %s lab: %v\n", mode, err)
		}
		rows = append(rows, r)
	}

	ndName := "natdiscovery -m -f"
	if *local {
		ndName += " -L"
	}
	lossNote := ""
	if *loss > 0 {
		lossNote = fmt.Sprintf(", %d%% UDP loss each way (unknown counts as right)", *loss)
	}
	fmt.Fprintf(stdout, "natcheck vs turnutils_natdiscovery (%s), %d runs per mode%s, medians of wall-clock time (ms)\n\n", ndName, *runs, lossNote)
	tw := tabwriter.NewWriter(stdout, 0, 0, 1, ' ', tabwriter.Debug)
	fmt.Fprintln(tw, "mode\tnatcheck median ms\tnatdiscovery median ms\tratio (nd/nc)\tnatcheck right?\tnatdiscovery right?\tnatcheck way out\t")
	var notes []string
	for _, r := range rows {
		ratio := "-"
		if len(r.nc.durations) > 0 && len(r.nd.durations) > 0 {
			ratio = fmt.Sprintf("%.1f", float64(median(r.nd.durations))/float64(median(r.nc.durations)))
		}
		ndVerdict := r.nd.verdict()
		if r.mode.BlocksUDP() && r.nd.runs > 0 {
			// With UDP blocked the question is which TCP or TLS path gets
			// out; natdiscovery tests UDP only.
			ndVerdict = fmt.Sprintf("n/a, no TCP test (saw no UDP: %d/%d)", r.nd.right, r.nd.runs)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.mode, r.nc.median(), r.nd.median(), ratio, r.nc.verdict(), ndVerdict, r.nc.way())
		for _, w := range r.nc.wrong {
			notes = append(notes, fmt.Sprintf("%s: natcheck: %s", r.mode, w))
		}
		for _, w := range r.nd.wrong {
			if r.mode.BlocksUDP() {
				break
			}
			notes = append(notes, fmt.Sprintf("%s: natdiscovery: %s", r.mode, w))
		}
	}
	tw.Flush()
	if len(notes) > 0 {
		fmt.Fprintln(stdout, "\nwrong answers:")
		for _, n := range notes {
			fmt.Fprintln(stdout, "  "+n)
		}
	}
	fmt.Fprintf(stdout, "\ntotal %v\n", time.Since(start).Round(time.Second))
	return 0
}
