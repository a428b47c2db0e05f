package turncheck

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/natcheck/natcheck/turncheck/turntest"
)

// BenchmarkCheck times a full TURN check (connect, Allocate,
// CreatePermission, 5 packets through the relay 20 ms apart, release) per
// transport against the in-process pion/turn server and coturn on
// loopback. The packet interval dominates: 4 × 20 ms.
func BenchmarkCheck(b *testing.B) {
	pion := turntest.NewServer(b, turntest.Options{})
	servers := map[string][]string{"pion": pion.URLs()}
	pools := map[string]Options{"pion": {RootCAs: pion.CAPool}}
	if co := startCoturnForBench(b); co != nil {
		servers["coturn"] = co.URLs()
		pool, err := LoadCAFile(co.CAFile)
		if err != nil {
			b.Fatal(err)
		}
		pools["coturn"] = Options{RootCAs: pool}
	}
	for _, name := range []string{"pion", "coturn"} {
		urls, ok := servers[name]
		if !ok {
			continue
		}
		for _, raw := range urls {
			u := mustURL(b, raw)
			b.Run(name+"/"+u.Transport, func(b *testing.B) {
				s := Server{URL: u, Credentials: longTerm()}
				for b.Loop() {
					res := Check(context.Background(), s, pools[name])
					if !res.OK {
						b.Fatalf("%s: %s", res.FailedStep, res.Error)
					}
				}
			})
		}
	}
}

// BenchmarkEndToEnd times two relay-only ICE agents connecting through the
// server and exchanging data, per transport.
func BenchmarkEndToEnd(b *testing.B) {
	pion := turntest.NewServer(b, turntest.Options{})
	servers := map[string][]string{"pion": pion.URLs()}
	pools := map[string]Options{"pion": {RootCAs: pion.CAPool}}
	if co := startCoturnForBench(b); co != nil {
		servers["coturn"] = co.URLs()
		pool, _ := LoadCAFile(co.CAFile)
		pools["coturn"] = Options{RootCAs: pool}
	}
	for _, name := range []string{"pion", "coturn"} {
		urls, ok := servers[name]
		if !ok {
			continue
		}
		for _, raw := range urls {
			u := mustURL(b, raw)
			b.Run(name+"/"+u.Transport, func(b *testing.B) {
				s := Server{URL: u, Credentials: longTerm()}
				var connect time.Duration
				for b.Loop() {
					res := EndToEndCheck(context.Background(), s, pools[name])
					if !res.Connected {
						b.Fatal(res.Error)
					}
					connect += res.Time
				}
				b.ReportMetric(float64(connect.Microseconds())/1000/float64(b.N), "ms-to-connected/op")
			})
		}
	}
}

// startCoturnForBench starts coturn, or returns nil when it is not
// installed (StartCoturn would skip the whole benchmark).
func startCoturnForBench(b *testing.B) *turntest.Coturn {
	if _, err := exec.LookPath("turnserver"); err != nil {
		b.Log("turnserver not installed (Debian package coturn): benchmarking pion/turn only")
		return nil
	}
	return turntest.StartCoturn(b, turntest.CoturnOptions{})
}
