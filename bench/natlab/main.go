// Command natlab measures natcheck's full diagnosis and coturn's
// turnutils_natdiscovery behind the router kinds of the network-namespace
// lab, for each router input policy (drop, accept) and UDP loss level, and
// counts how often each tool was right, undecided (unknown) or wrong, with
// natcheck's run times. Several labs run at once (the runs wait on timers
// and the network, not the CPU). Run it as root through bench/nat-lab.sh.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/natcheck/natcheck/internal/lab"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// Tools measured.
const (
	toolNatcheck     = "natcheck"
	toolNatdiscovery = "natdiscovery"
)

// cell is one lab configuration: router kind, input policy and loss.
type cell struct {
	mode  lab.Mode
	input lab.InputPolicy
	loss  int
}

func (c cell) String() string { return fmt.Sprintf("%s/%s/%d%%", c.mode, c.input, c.loss) }

// tally counts one tool's runs in one cell.
type tally struct {
	runs      int
	outcomes  map[lab.Outcome]int
	errors    int
	durations []time.Duration
	notes     []string       // first few wrong answers and errors
	ways      map[string]int // natcheck's way out
}

func (t *tally) add(o lab.Outcome, d time.Duration, bad []string, err error) {
	t.runs++
	if t.outcomes == nil {
		t.outcomes = make(map[lab.Outcome]int)
	}
	if err != nil {
		t.errors++
		t.outcomes[lab.Wrong]++
		t.note("error: " + err.Error())
		return
	}
	t.outcomes[o]++
	t.durations = append(t.durations, d)
	if o == lab.Wrong {
		t.note(strings.Join(bad, "; "))
	}
}

func (t *tally) note(s string) {
	if len(t.notes) < 3 && !slices.Contains(t.notes, s) {
		t.notes = append(t.notes, s)
	}
}

func (t *tally) addWay(w string) {
	if t.ways == nil {
		t.ways = make(map[string]int)
	}
	t.ways[w]++
}

// counts is "right/unknown/wrong", or "-" without runs.
func (t *tally) counts() string {
	if t == nil || t.runs == 0 {
		return "-"
	}
	return fmt.Sprintf("%d/%d/%d", t.outcomes[lab.Right], t.outcomes[lab.Undecided], t.outcomes[lab.Wrong])
}

// percentile returns the p-th percentile (nearest rank) of the run times
// in ms, or "-".
func (t *tally) percentile(p float64) string {
	d, ok := t.pct(p)
	if !ok {
		return "-"
	}
	return strconv.FormatInt(d.Milliseconds(), 10)
}

func (t *tally) pct(p float64) (time.Duration, bool) {
	if t == nil || len(t.durations) == 0 {
		return 0, false
	}
	s := slices.Clone(t.durations)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))], true
}

// way returns the ways out seen, most frequent first, with their counts
// when there was more than one.
func (t *tally) way() string {
	if t == nil || len(t.ways) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(t.ways))
	for k := range t.ways {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		if t.ways[a] != t.ways[b] {
			return t.ways[b] - t.ways[a]
		}
		return strings.Compare(a, b)
	})
	if len(keys) == 1 {
		return keys[0]
	}
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s (%d)", k, t.ways[k])
	}
	return strings.Join(parts, ", ")
}

// chunk is a unit of work: runs of one tool in one fresh lab.
type chunk struct {
	cell  cell
	tool  string
	runs  int
	round int     // the chunk's index within its cell and tool
	cost  float64 // estimated seconds
}

// estimate is a run's expected length in seconds, for scheduling: the
// slowest work starts first.
func estimate(c cell, tool string) float64 {
	filters := c.mode != lab.Routed && c.mode != lab.OneToOne
	switch {
	case tool == toolNatdiscovery && c.mode == lab.Restricted:
		return 3.2
	case tool == toolNatdiscovery && (filters || c.loss > 0):
		return 6.3
	case tool == toolNatdiscovery:
		return 0.1
	case c.mode.BlocksUDP():
		return 3.1
	case c.loss > 0:
		return 1.5
	}
	return 0.3
}

type config struct {
	runs, chunkSize, parallel int
	modes, lossModes          []lab.Mode
	inputs                    []lab.InputPolicy
	losses                    []int
	tools                     []string
	budget                    time.Duration
	natcheck                  string
	ndArgs                    []string
	verbose                   bool
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("natlab", flag.ContinueOnError)
	fs.SetOutput(stderr)
	runs := fs.Int("runs", 5, "runs of each tool per kind, input policy and loss level (1 to 200)")
	modes := fs.String("modes", "", "comma-separated router kinds (default: all: "+joinModes(lab.Modes())+")")
	inputs := fs.String("inputs", "drop,accept", "comma-separated router input policies (drop, accept)")
	losses := fs.String("loss", "0", "comma-separated percentages of forwarded UDP the router drops each way (0 to 50), e.g. 0,20")
	lossModes := fs.String("loss-modes", "onetoone,restricted,masquerade,symmetric", "router kinds measured at the loss levels above 0 (\"all\": every kind of -modes)")
	tools := fs.String("tools", "natcheck,natdiscovery", "comma-separated tools to run")
	parallel := fs.Int("parallel", 4, "labs running at once (1 to 16); runs are waiting-dominated")
	chunkSize := fs.Int("chunk", 10, "runs per lab: each chunk of runs gets a fresh lab (1 to 200)")
	budget := fs.Duration("budget", 30*time.Minute, "stop starting new runs after this long; runs under way finish")
	natcheck := fs.String("natcheck", "", "natcheck binary (default: build ./cmd/natcheck)")
	local := fs.Bool("natdiscovery-local", false, "give natdiscovery -L <client address>, without which it cannot see \"no NAT\"")
	verbose := fs.Bool("v", false, "print every run")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg := config{runs: *runs, chunkSize: *chunkSize, parallel: *parallel, budget: *budget, natcheck: *natcheck, verbose: *verbose}
	var err error
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "natlab: "+format+"\n", a...)
		return 2
	}
	switch {
	case cfg.runs < 1 || cfg.runs > 200:
		return usage("-runs must be between 1 and 200")
	case cfg.parallel < 1 || cfg.parallel > 16:
		return usage("-parallel must be between 1 and 16")
	case cfg.chunkSize < 1 || cfg.chunkSize > 200:
		return usage("-chunk must be between 1 and 200")
	case cfg.budget <= 0:
		return usage("-budget must be positive")
	}
	if cfg.modes, err = parseModes(*modes, lab.Modes()); err != nil {
		return usage("%v", err)
	}
	if *lossModes == "all" {
		cfg.lossModes = cfg.modes
	} else if cfg.lossModes, err = parseModes(*lossModes, nil); err != nil {
		return usage("%v", err)
	}
	for _, s := range strings.Split(*inputs, ",") {
		p := lab.InputPolicy(strings.TrimSpace(s))
		if !slices.Contains(lab.InputPolicies(), p) {
			return usage("unknown input policy %q (have drop, accept)", s)
		}
		if !slices.Contains(cfg.inputs, p) {
			cfg.inputs = append(cfg.inputs, p)
		}
	}
	for _, s := range strings.Split(*losses, ",") {
		n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(s), "%"))
		if err != nil || n < 0 || n > 50 {
			return usage("-loss: %q is not a percentage between 0 and 50", s)
		}
		if !slices.Contains(cfg.losses, n) {
			cfg.losses = append(cfg.losses, n)
		}
	}
	for _, s := range strings.Split(*tools, ",") {
		s = strings.TrimSpace(s)
		if s != toolNatcheck && s != toolNatdiscovery {
			return usage("unknown tool %q (have natcheck, natdiscovery)", s)
		}
		if !slices.Contains(cfg.tools, s) {
			cfg.tools = append(cfg.tools, s)
		}
	}
	if *local {
		cfg.ndArgs = []string{"-L", lab.ClientAddr.String()}
	}
	if err := lab.Available(); err != nil {
		fmt.Fprintln(stderr, "natlab: needs root and ip/nft/turnserver:", err)
		return 2
	}
	if slices.Contains(cfg.tools, toolNatcheck) && cfg.natcheck == "" {
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
		cfg.natcheck, err = lab.BuildNatcheck(ctx, root, dir)
		switch {
		case errors.Is(err, lab.ErrNoNatcheck):
			fmt.Fprintln(stderr, "natlab: ./cmd/natcheck does not exist yet: running turnutils_natdiscovery only")
			cfg.tools = slices.DeleteFunc(cfg.tools, func(s string) bool { return s == toolNatcheck })
		case err != nil:
			fmt.Fprintln(stderr, "natlab:", err)
			return 1
		}
	}
	if len(cfg.tools) == 0 {
		return usage("no tool to run")
	}
	return bench(ctx, cfg, stdout, stderr)
}

func joinModes(ms []lab.Mode) string {
	s := make([]string, len(ms))
	for i, m := range ms {
		s[i] = string(m)
	}
	return strings.Join(s, ",")
}

// parseModes parses a comma-separated list of modes; "" gives def.
func parseModes(list string, def []lab.Mode) ([]lab.Mode, error) {
	if list == "" {
		return def, nil
	}
	var out []lab.Mode
	for _, s := range strings.Split(list, ",") {
		m := lab.Mode(strings.TrimSpace(s))
		if !slices.Contains(lab.Modes(), m) {
			return nil, fmt.Errorf("unknown router kind %q (have %s)", s, joinModes(lab.Modes()))
		}
		if !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	return out, nil
}

// cells lists the configurations to measure: every kind with every input
// policy without loss, and the loss kinds with every input policy at each
// loss level above 0.
func (cfg config) cells() []cell {
	var cells []cell
	for _, loss := range cfg.losses {
		for _, m := range cfg.modes {
			if loss > 0 && !slices.Contains(cfg.lossModes, m) {
				continue
			}
			for _, in := range cfg.inputs {
				cells = append(cells, cell{m, in, loss})
			}
		}
	}
	return cells
}

// chunks splits every cell's runs of every tool into chunks of at most
// chunkSize runs, ordered round by round (every cell gets its first chunk
// before any gets a second, so that a budget cut leaves every cell some
// runs) and within a round slowest first.
func (cfg config) chunks(cells []cell) []chunk {
	var all []chunk
	for _, c := range cells {
		for _, tool := range cfg.tools {
			for i, left := 0, cfg.runs; left > 0; i++ {
				n := min(left, cfg.chunkSize)
				all = append(all, chunk{cell: c, tool: tool, runs: n, round: i, cost: float64(n) * estimate(c, tool)})
				left -= n
			}
		}
	}
	slices.SortStableFunc(all, func(a, b chunk) int {
		if a.round != b.round {
			return a.round - b.round
		}
		switch {
		case a.cost > b.cost:
			return -1
		case a.cost < b.cost:
			return 1
		}
		return 0
	})
	return all
}

type results struct {
	mu      sync.Mutex
	tallies map[cell]map[string]*tally
	skipped map[cell]map[string]int // runs not started (budget, signal, lab failure)
}

func (r *results) tally(c cell, tool string) *tally {
	if r.tallies[c] == nil {
		r.tallies[c] = make(map[string]*tally)
	}
	if r.tallies[c][tool] == nil {
		r.tallies[c][tool] = &tally{}
	}
	return r.tallies[c][tool]
}

func (r *results) skip(c cell, tool string, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.skipped[c] == nil {
		r.skipped[c] = make(map[string]int)
	}
	r.skipped[c][tool] += n
}

func bench(ctx context.Context, cfg config, stdout, stderr io.Writer) int {
	start := time.Now()
	budgetEnd := start.Add(cfg.budget)
	cells := cfg.cells()
	if len(cells) == 0 {
		fmt.Fprintln(stderr, "natlab: nothing to measure (check -modes, -loss-modes and -loss)")
		return 2
	}
	work := cfg.chunks(cells)
	res := &results{tallies: make(map[cell]map[string]*tally), skipped: make(map[cell]map[string]int)}
	logf := func(format string, a ...any) {
		if cfg.verbose {
			fmt.Fprintf(stderr, format+"\n", a...)
		}
	}
	fmt.Fprintf(stderr, "natlab: %d configurations, %d runs of %s each, in %d labs of at most %d runs, %d at once, budget %v\n",
		len(cells), cfg.runs, strings.Join(cfg.tools, " and "), len(work), cfg.chunkSize, cfg.parallel, cfg.budget)

	queue := make(chan chunk)
	var wg sync.WaitGroup
	var progress sync.Mutex
	done := 0
	for w := 0; w < cfg.parallel; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ch := range queue {
				if ctx.Err() != nil || time.Now().After(budgetEnd) {
					res.skip(ch.cell, ch.tool, ch.runs)
					continue
				}
				ran := runChunk(ctx, cfg, ch, budgetEnd, res, logf)
				if ran < ch.runs {
					res.skip(ch.cell, ch.tool, ch.runs-ran)
				}
				progress.Lock()
				done++
				fmt.Fprintf(stderr, "natlab: [%d/%d %v] %s %s: %d runs\n", done, len(work), time.Since(start).Round(time.Second), ch.cell, ch.tool, ran)
				progress.Unlock()
			}
		}()
	}
	for _, ch := range work {
		queue <- ch
	}
	close(queue)
	wg.Wait()
	report(cfg, cells, res, time.Since(start), stdout)
	return 0
}

// runChunk starts a lab for ch and runs ch's tool in it up to ch.runs
// times, stopping at the budget; it returns how many runs it made.
func runChunk(ctx context.Context, cfg config, ch chunk, budgetEnd time.Time, res *results, logf func(string, ...any)) int {
	startCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	l, err := lab.Start(startCtx, lab.Options{Mode: ch.cell.mode, Input: ch.cell.input, LossPercent: ch.cell.loss, Logf: logf})
	cancel()
	if err != nil {
		res.mu.Lock()
		res.tally(ch.cell, ch.tool).note("lab: " + err.Error())
		res.mu.Unlock()
		return 0
	}
	defer func() {
		if err := l.Close(); err != nil {
			logf("natlab: closing the %s lab: %v", ch.cell, err)
		}
	}()
	want := lab.Expect(ch.cell.mode)
	ran := 0
	for ; ran < ch.runs && ctx.Err() == nil && time.Now().Before(budgetEnd); ran++ {
		if ch.tool == toolNatcheck {
			r, err := l.RunNatcheck(ctx, cfg.natcheck)
			o, bad := want.JudgeNatcheck(r)
			res.mu.Lock()
			t := res.tally(ch.cell, ch.tool)
			t.add(o, r.Duration, bad, err)
			if err == nil {
				w := r.Verdict.WayOut.Via
				if r.Verdict.WayOut.Port != 0 {
					w += fmt.Sprintf(":%d", r.Verdict.WayOut.Port)
				}
				t.addWay(w)
			}
			res.mu.Unlock()
			logf("  %s natcheck      %v %s exit=%d udp=%v mapping=%s filtering=%s type=%s direct_udp=%s way_out=%s %q err=%v", ch.cell,
				r.Duration.Round(time.Millisecond), o, r.ExitCode, r.UDP, r.NAT.Mapping, r.NAT.Filtering, r.NAT.Type, r.Verdict.DirectUDP, r.Verdict.WayOut.Via, bad, err)
			continue
		}
		r, err := l.RunNatdiscovery(ctx, cfg.ndArgs...)
		o, bad := want.JudgeNatdiscovery(r)
		res.mu.Lock()
		res.tally(ch.cell, ch.tool).add(o, r.Duration, bad, err)
		res.mu.Unlock()
		logf("  %s natdiscovery  %v %s udp=%v mapping=%q filtering=%q type=%s %q err=%v", ch.cell,
			r.Duration.Round(time.Millisecond), o, r.UDP, r.Mapping, r.Filtering, r.Type, bad, err)
	}
	return ran
}

func report(cfg config, cells []cell, res *results, total time.Duration, w io.Writer) {
	ndName := "turnutils_natdiscovery -m -f"
	if len(cfg.ndArgs) > 0 {
		ndName += " " + strings.Join(cfg.ndArgs, " ")
	}
	fmt.Fprintf(w, "natcheck and %s: %d runs of each per kind, input policy and loss (UDP loss each way); right/unknown/wrong; natcheck's wall-clock run time\n\n", ndName, cfg.runs)
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.Debug)
	fmt.Fprintln(tw, "kind\tinput\tloss\tnatcheck r/u/w\tmedian ms\tp95 ms\tmax ms\tnatdiscovery r/u/w\tmedian ms\tnatcheck way out\t")
	var notes []string
	for _, c := range cells {
		nc, nd := res.tallies[c][toolNatcheck], res.tallies[c][toolNatdiscovery]
		fmt.Fprintf(tw, "%s\t%s\t%d%%\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", c.mode, c.input, c.loss,
			nc.counts(), nc.percentile(50), nc.percentile(95), nc.percentile(100), nd.counts(), nd.percentile(50), nc.way())
		for _, tool := range cfg.tools {
			if t := res.tallies[c][tool]; t != nil {
				for _, n := range t.notes {
					notes = append(notes, fmt.Sprintf("%s %s: %s", c, tool, n))
				}
			}
			if n := res.skipped[c][tool]; n > 0 {
				notes = append(notes, fmt.Sprintf("%s %s: %d runs not made (budget, signal or lab failure)", c, tool, n))
			}
		}
	}
	tw.Flush()
	fmt.Fprintln(w, "\nunknown: no field contradicts the kernel but one is undecided (natdiscovery: printed no conclusion);")
	fmt.Fprintln(w, "with UDP blocked natdiscovery is right when it saw no UDP (it has no TCP test).")
	for _, tool := range cfg.tools {
		fmt.Fprintf(w, "\ngoals, %s:\n", tool)
		for _, g := range goals(cfg, cells, res, tool) {
			fmt.Fprintln(w, "  "+g)
		}
	}
	if len(notes) > 0 {
		fmt.Fprintln(w, "\nwrong answers and failures (first few per configuration):")
		for _, n := range notes {
			fmt.Fprintln(w, "  "+n)
		}
	}
	fmt.Fprintf(w, "\ntotal %v\n", total.Round(time.Second))
}

// goalRuns is the number of runs per kind the goals ask for.
const goalRuns = 50

// goals checks the accuracy and run-time goals for tool on the cells
// measured, one line per goal: met, not met, or not measured.
func goals(cfg config, cells []cell, res *results, tool string) []string {
	var lines []string
	status := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT MET"
	}
	few := ""
	if cfg.runs < goalRuns {
		few = fmt.Sprintf(" [only %d runs per configuration; the goal asks for %d]", cfg.runs, goalRuns)
	}
	// 1. Without loss, every kind right in every run, both input policies.
	var runs, right int
	var failing []string
	for _, c := range cells {
		t := res.tallies[c][tool]
		if c.loss != 0 || t == nil {
			continue
		}
		runs += t.runs
		right += t.outcomes[lab.Right]
		if t.outcomes[lab.Right] != t.runs {
			failing = append(failing, fmt.Sprintf("%s/%s %d/%d", c.mode, c.input, t.outcomes[lab.Right], t.runs))
		}
	}
	if runs == 0 {
		lines = append(lines, "no loss, every kind right in every run: not measured")
	} else {
		l := fmt.Sprintf("no loss, every kind right in every run: %s (%d of %d runs right)", status(len(failing) == 0), right, runs)
		if len(failing) > 0 {
			l += "; not right: " + strings.Join(failing, ", ")
		}
		lines = append(lines, l+few)
	}
	// 2. With loss: no wrong answer, at most 10% unknown, per loss level
	// and input policy over the loss kinds.
	for _, loss := range cfg.losses {
		if loss == 0 {
			continue
		}
		for _, in := range cfg.inputs {
			var runs, unknown, wrong int
			var kinds []string
			for _, c := range cells {
				t := res.tallies[c][tool]
				if c.loss != loss || c.input != in || t == nil {
					continue
				}
				kinds = append(kinds, string(c.mode))
				runs += t.runs
				unknown += t.outcomes[lab.Undecided]
				wrong += t.outcomes[lab.Wrong]
			}
			if runs == 0 {
				continue
			}
			share := float64(unknown) / float64(runs)
			lines = append(lines, fmt.Sprintf("%d%% loss, input %s (%s): no wrong answer: %s (%d wrong of %d); at most 10%% unknown: %s (%d = %.0f%%)%s",
				loss, in, strings.Join(kinds, ", "), status(wrong == 0), wrong, runs, status(share <= 0.10), unknown, 100*share, few))
		}
	}
	// 3. natcheck's run time: under 1 s wherever UDP gets out, under 3.5 s
	// where it is blocked, in every run (the maximum), per loss level.
	if tool != toolNatcheck {
		return lines
	}
	for _, loss := range cfg.losses {
		var slow []string
		measured := 0
		for _, c := range cells {
			t := res.tallies[c][tool]
			if c.loss != loss || t == nil || len(t.durations) == 0 {
				continue
			}
			measured++
			limit := time.Second
			if c.mode.BlocksUDP() {
				limit = 3500 * time.Millisecond
			}
			if m, _ := t.pct(100); m >= limit {
				p95, _ := t.pct(95)
				slow = append(slow, fmt.Sprintf("%s/%s max %d ms (p95 %d)", c.mode, c.input, m.Milliseconds(), p95.Milliseconds()))
			}
		}
		if measured == 0 {
			continue
		}
		l := fmt.Sprintf("%d%% loss: every run under 1 s where UDP gets out, under 3.5 s where blocked: %s", loss, status(len(slow) == 0))
		if len(slow) > 0 {
			l += "; slower: " + strings.Join(slow, ", ")
		}
		lines = append(lines, l)
	}
	return lines
}
