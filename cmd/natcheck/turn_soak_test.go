package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/turn/v5"

	"github.com/natcheck/natcheck/turncheck/turntest"
)

type soakJSON struct {
	OK   bool `json:"ok"`
	TURN []struct {
		OK         bool   `json:"ok"`
		FailedStep string `json:"failed_step"`
		Error      string `json:"error"`
		Soak       *struct {
			Interrupted     bool    `json:"interrupted"`
			MaxLoss         float64 `json:"max_loss"`
			RefreshFailures int     `json:"refresh_failures"`
			Refreshes       []struct {
				Kind string `json:"kind"`
				OK   bool   `json:"ok"`
			} `json:"refreshes"`
			Minutes []struct{ Sent, Received int } `json:"minutes"`
			Total   struct {
				Sent     int     `json:"sent"`
				Received int     `json:"received"`
				RTTP50MS float64 `json:"rtt_p50_ms"`
			} `json:"total"`
		} `json:"soak"`
	} `json:"turn"`
}

// shortLifetimeServer is a pion/turn server on 127.0.0.1 whose allocations
// last 2 s (refreshed every second), and which refuses every request
// (400) once refuse is set.
func shortLifetimeServer(t *testing.T) (string, *atomic.Bool) {
	t.Helper()
	var refuse atomic.Bool
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	key := turn.GenerateAuthKey(turntest.User, turntest.Realm, turntest.Password)
	srv, err := turn.NewServer(turn.ServerConfig{
		Realm: turntest.Realm,
		AuthHandler: func(ra *turn.RequestAttributes) (string, []byte, bool) {
			return ra.Username, key, !refuse.Load() && ra.Username == turntest.User
		},
		AllocationLifetime: 2 * time.Second,
		PacketConnConfigs: []turn.PacketConnConfig{{PacketConn: pc,
			RelayAddressGenerator: &turn.RelayAddressGeneratorStatic{RelayAddress: net.IPv4(127, 0, 0, 1), Address: "127.0.0.1"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return "turn:" + pc.LocalAddr().String(), &refuse
}

func TestTurnSoakCommand(t *testing.T) {
	t.Parallel()
	url, refuse := shortLifetimeServer(t)
	pw := envWith(map[string]string{envTURNPassword: turntest.Password})

	t.Run("passes", func(t *testing.T) {
		code, out, errs := runArgs(t, pw, "turn", "--turn-user", turntest.User, "--json", "--no-end-to-end", "--duration", "4s", "--max-loss", "1%", url)
		r := parseSoak(t, out)
		if code != exitOK || !r.OK || r.TURN[0].Soak == nil {
			t.Fatalf("exit %d\n%s\n%s", code, out, errs)
		}
		s := r.TURN[0].Soak
		n := 0
		for _, x := range s.Refreshes {
			if x.Kind == "allocation" && x.OK {
				n++
			}
		}
		// 2 s allocations refreshed every second: about 4 in 4 s.
		if n < 2 || s.RefreshFailures != 0 || s.MaxLoss != 0.01 || s.Total.Sent < 60 || s.Total.Received != s.Total.Sent || s.Total.RTTP50MS <= 0 || len(s.Minutes) != 1 {
			t.Errorf("soak %+v", s)
		}
		// Progress on stderr only, plain lines (not a terminal).
		if !strings.Contains(errs, "natcheck turn: soak of 4s:") || !strings.Contains(errs, "done after") || strings.Contains(errs, "\r") {
			t.Errorf("stderr: %q", errs)
		}
		assertNoSecrets(t, out, errs)
	})

	t.Run("refused-refresh-fails", func(t *testing.T) {
		timer := time.AfterFunc(2*time.Second, func() { refuse.Store(true) })
		defer timer.Stop()
		defer refuse.Store(false)
		code, out, errs := runArgs(t, pw, "turn", "--turn-user", turntest.User, "--no-end-to-end", "--duration", "5s", url)
		t.Log(out, errs)
		if code != exitRequire || !strings.Contains(out, "refused the allocation refresh") || !strings.Contains(out, "TURN soak") {
			t.Errorf("exit %d, want 1\n%s\n%s", code, out, errs)
		}
	})
}

func TestTurnSoakInterrupted(t *testing.T) {
	t.Parallel()
	srv := turntest.NewServer(t, turntest.Options{})
	pw := envWith(map[string]string{envTURNPassword: turntest.Password})
	ctx, cancel := context.WithCancel(context.Background())
	timer := time.AfterFunc(3*time.Second, cancel) // as Ctrl-C would
	defer timer.Stop()
	var out, errb bytes.Buffer
	start := time.Now()
	code := run(ctx, []string{"turn", "--turn-user", turntest.User, "--json", "--duration", "10m", srv.URLs()[0]}, &out, &errb, pw)
	if time.Since(start) > time.Minute {
		t.Errorf("took %v after the interrupt", time.Since(start))
	}
	r := parseSoak(t, out.String())
	if code != exitOK || r.TURN[0].Soak == nil || !r.TURN[0].Soak.Interrupted || r.TURN[0].Soak.Total.Received == 0 {
		t.Errorf("exit %d\n%s\n%s", code, out.String(), errb.String())
	}
	if !strings.Contains(errb.String(), "stopped early") {
		t.Errorf("stderr %q", errb.String())
	}
}

func TestTurnSoakUsage(t *testing.T) {
	pw := envWith(map[string]string{envTURNPassword: "x"})
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--duration", "-1s"}, "--duration -1s"},
		{[]string{"--duration", "25h"}, "--duration 25h0m0s"},
		{[]string{"--duration", "1m", "--max-loss", "150%"}, "--max-loss \"150%\""},
		{[]string{"--duration", "1m", "--max-loss", "x"}, "a fraction from 0 to 1"},
		{[]string{"--max-loss", "0.1"}, "give --duration too"},
		{[]string{"--duration", "1m", "--timeout", "30s"}, "leaves no time"},
	} {
		args := append(append([]string{"turn", "--turn-user", "u"}, tc.args...), "turn:x")
		code, out, errs := runArgs(t, pw, args...)
		if code != exitUsage || !strings.Contains(errs, tc.want) || out != "" {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", tc.args, code, errs, tc.want)
		}
	}
	for _, s := range []string{"0.02", "2%", "2 %", "0", "1"} {
		if _, err := parseLoss(s); err != nil {
			t.Errorf("parseLoss(%q): %v", s, err)
		}
	}
	if v, _ := parseLoss("2.5%"); v != 0.025 {
		t.Errorf("2.5%% = %v", v)
	}
}

func parseSoak(t *testing.T, out string) soakJSON {
	t.Helper()
	var r soakJSON
	if err := jsonUnmarshal(out, &r); err != nil || len(r.TURN) != 1 {
		t.Fatalf("not a report with one check: %v\n%s", err, out)
	}
	return r
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }
