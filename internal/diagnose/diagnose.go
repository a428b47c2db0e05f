// Package diagnose is natcheck's pipeline, the one place where its stages
// meet: the probe engine measures, natclass decides, report copies. The
// natcheck command and the exporter both run it.
package diagnose

import (
	"context"
	"time"

	"github.com/natcheck/natcheck/natclass"
	"github.com/natcheck/natcheck/probe"
	"github.com/natcheck/natcheck/report"
)

// Run measures each address family with the probe engine (families empty:
// IPv4 and IPv6 where available), classifies each with natclass, combines
// them, and builds the report. version is natcheck's, for the report.
func Run(ctx context.Context, cfg probe.Config, version string, families ...probe.Family) report.Report {
	start := time.Now()
	runs := probe.Measure(ctx, cfg, families...)
	in := make([]report.Input, 0, len(runs))
	results := make([]natclass.Result, 0, len(runs))
	for _, run := range runs {
		res := natclass.Result{Family: string(run.Family), Skipped: run.Skipped, NAT64: run.Observations.NAT64}
		if run.Skipped == "" {
			res = natclass.Classify(run.Observations)
		}
		in = append(in, report.Input{Observations: run.Observations, Result: res})
		results = append(results, res)
	}
	return report.Build(version, start, time.Since(start), in, natclass.Combine(results))
}

// AddTURN folds TURN checks into r's verdict (natclass.FoldTURN: which
// relay transports data went through) and adds the checks and the gathered
// ICE candidates (g may be nil) to r.
func AddTURN(r *report.Report, checks []natclass.TURNCheck, g *natclass.Gathering) {
	r.Verdict = natclass.FoldTURN(r.Verdict, checks)
	r.AddTURN(checks, g)
}

// TURNReport builds the report of `natcheck turn` from its checks.
func TURNReport(version string, started time.Time, duration time.Duration, checks []natclass.TURNCheck) report.TURNReport {
	return report.BuildTURN(version, started, duration, checks, natclass.VerifiedRelays(checks))
}
