package turncheck

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/natcheck/natcheck/natclass"
	"github.com/natcheck/natcheck/turncheck/turntest"
)

// want is what a failing check must say.
type want struct {
	step string
	code int
	msg  string // substring of Error
	hint string // substring of Hint
}

func (w want) check(t *testing.T, res natclass.TURNCheck) {
	t.Helper()
	t.Logf("error: %s\nhint: %s", res.Error, res.Hint)
	if res.OK {
		t.Fatalf("check passed, want failure at %s", w.step)
	}
	if res.FailedStep != w.step || res.ErrorCode != w.code {
		t.Errorf("failed at %q with code %d (%s), want %q with code %d", res.FailedStep, res.ErrorCode, res.Error, w.step, w.code)
	}
	if !strings.Contains(res.Error, w.msg) {
		t.Errorf("error %q does not say %q", res.Error, w.msg)
	}
	if !strings.Contains(res.Hint, w.hint) {
		t.Errorf("hint %q does not say %q", res.Hint, w.hint)
	}
	if strings.ContainsAny(res.Error, "\n") || strings.ContainsAny(res.Hint, "\n") {
		t.Errorf("error or hint spans lines")
	}
	noSecrets(t, res)
}

func run(t *testing.T, raw string, c Credentials, o Options) natclass.TURNCheck {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return Check(ctx, Server{URL: mustURL(t, raw), Credentials: c}, o)
}

func TestCheckFailuresPion(t *testing.T) {
	t.Parallel()
	srv := turntest.NewServer(t, turntest.Options{})
	udp, tcp, tls := srv.URLs()[0], srv.URLs()[1], srv.URLs()[2]
	ca := Options{RootCAs: srv.CAPool}
	wrong := Credentials{User: turntest.User, Password: NewSecret("wrong-" + turntest.Password)}
	wrongSecret := Credentials{User: "alice", SharedSecret: NewSecret("wrong-" + turntest.Secret), Lifetime: time.Hour}
	for _, tc := range []struct {
		name string
		url  string
		c    Credentials
		o    Options
		want want
	}{
		// pion/turn v5.1.3 servers answer 401 (RFC 8656); v5.0.12 answered 400.
		{"wrong-password-udp", udp, wrong, ca, want{natclass.TURNStepAllocate, 401, "rejected the credentials", "check the user name"}},
		{"wrong-password-tcp", tcp, wrong, ca, want{natclass.TURNStepAllocate, 401, "rejected the credentials", "check the user name"}},
		{"wrong-secret", udp, wrongSecret, ca, want{natclass.TURNStepAllocate, 401, "rejected the credentials", "shared secret matches"}},
		{"expired-rest", udp, rest(-time.Hour), ca, want{natclass.TURNStepAllocate, 401, "REST credentials expired", "--turn-credential-lifetime"}},
		{"tls-unknown-ca", tls, longTerm(), Options{}, want{natclass.TURNStepTLS, 0, "unknown authority", "--ca-file"}},
		{"tls-wrong-name", strings.Replace(tls, "127.0.0.1", "localhost", 1) + "", longTerm(), ca, want{}},
		{"tls-to-plain-port", strings.Replace(tcp, "turn:", "turns:", 1), longTerm(), ca, want{natclass.TURNStepTLS, 0, "closed the connection during the handshake", "turn:HOST:PORT?transport=tcp"}},
		{"no-credentials", udp, Credentials{}, ca, want{natclass.TURNStepAllocate, 0, "no TURN credentials", "credentials"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res := run(t, tc.url, tc.c, tc.o)
			if tc.want.step == "" { // localhost is in the certificate: passes
				if !res.OK {
					t.Fatalf("failed: %s", res.Error)
				}
				return
			}
			tc.want.check(t, res)
		})
	}

	t.Run("insecure", func(t *testing.T) {
		t.Parallel()
		res := run(t, tls, longTerm(), Options{Insecure: true})
		if !res.OK {
			t.Fatalf("failed: %s", res.Error)
		}
		if res.TLS == nil || res.TLS.Verified || !strings.Contains(res.TLS.VerifyError, "unknown authority") {
			t.Errorf("TLS %+v: want unverified with the reason", res.TLS)
		}
		if !strings.Contains(strings.Join(res.Warnings, "\n"), "NOT verified") {
			t.Errorf("warnings %q: want one about --insecure", res.Warnings)
		}
	})
}

func TestCheckMisbehavingPion(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		o    turntest.Options
		want want
	}{
		{"drops-data", turntest.Options{DropData: true}, want{natclass.TURNStepData, 0, "none of 5 packets came back", "relay port range"}},
		{"denies-peers", turntest.Options{DenyPeers: true}, want{natclass.TURNStepPermission, 403, "refuses to relay to the peer", "denied-peer-ip"}},
		{"quota", turntest.Options{Quota: true}, want{natclass.TURNStepAllocate, 486, "Quota", "user-quota"}},
		{"no-capacity", turntest.Options{NoCapacity: true}, want{natclass.TURNStepAllocate, 508, "Insufficient Capacity", "min-port, max-port"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := turntest.NewServer(t, tc.o)
			for _, raw := range srv.URLs() {
				res := run(t, raw, longTerm(), Options{RootCAs: srv.CAPool})
				tc.want.check(t, res)
				if tc.name == "drops-data" {
					if !res.Relayed.IsValid() || res.Data == nil || res.Data.Sent != 5 || res.Data.Received != 0 {
						t.Errorf("relayed %v data %+v: want an allocation and 5 packets lost", res.Relayed, res.Data)
					}
					if res.Released != natclass.TriYes {
						t.Errorf("released %v: the allocation must be released after a failed data step", res.Released)
					}
				}
			}
		})
	}
}

func TestCheckUnreachable(t *testing.T) {
	t.Parallel()
	closed := turntest.ClosedPort(t)
	holeUDP, holeTCP := turntest.Blackhole(t)
	o := Options{StepTimeout: 300 * time.Millisecond}
	for _, tc := range []struct {
		name string
		url  string
		want want
	}{
		{"udp-refused", "turn:" + closed.String(), want{natclass.TURNStepAllocate, 0, "refused UDP port", "listens on UDP"}},
		{"tcp-refused", "turn:" + closed.String() + "?transport=tcp", want{natclass.TURNStepConnect, 0, "refused", "listens on TCP"}},
		{"udp-silent", "turn:" + holeUDP.String(), want{natclass.TURNStepAllocate, 0, "no answer from", "transport=tcp"}},
		{"tcp-silent", "turn:" + holeTCP.String() + "?transport=tcp", want{natclass.TURNStepAllocate, 0, "no answer from", "TURN port"}},
		{"tls-silent", "turns:" + holeTCP.String(), want{natclass.TURNStepTLS, 0, "no handshake within", "does not speak TLS"}},
		{"no-such-host", "turn:no-such-host.invalid", want{natclass.TURNStepResolve, 0, "cannot resolve", "host name"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res := run(t, tc.url, longTerm(), o)
			tc.want.check(t, res)
			// Bounded: a few step timeouts, never pion's 7.8 s of
			// retransmissions (no wall-clock threshold beyond that).
			if res.Duration > 10*o.StepTimeout+5*time.Second {
				t.Errorf("took %v", res.Duration)
			}
		})
	}
}

func TestCheckCoturn(t *testing.T) {
	t.Parallel()
	lt := turntest.StartCoturn(t, turntest.CoturnOptions{})
	rs := turntest.StartCoturn(t, turntest.CoturnOptions{REST: true})
	deny := turntest.StartCoturn(t, turntest.CoturnOptions{DenyLoopbackPeers: true})
	caOf := func(c *turntest.Coturn) Options {
		pool := turntest.NewCA(t).Pool // replaced below
		pool, _ = LoadCAFile(c.CAFile)
		return Options{RootCAs: pool, EndToEnd: true}
	}
	for i, tr := range []string{"udp", "tcp", "tls"} {
		t.Run("long-term-"+tr, func(t *testing.T) {
			t.Parallel()
			res := run(t, lt.URLs()[i], longTerm(), caOf(lt))
			if !res.OK {
				t.Fatalf("failed at %s: %s (%s)", res.FailedStep, res.Error, res.Hint)
			}
			if res.Data.Received == 0 || res.EndToEnd == nil || !res.EndToEnd.Connected || res.Released != natclass.TriYes {
				t.Errorf("data %+v e2e %+v released %v", res.Data, res.EndToEnd, res.Released)
			}
			t.Logf("%s: allocate %v, data %+v, e2e %+v", res.URL, res.Allocate, *res.Data, *res.EndToEnd)
			noSecrets(t, res)
		})
		t.Run("rest-"+tr, func(t *testing.T) {
			t.Parallel()
			res := run(t, rs.URLs()[i], rest(time.Hour), caOf(rs))
			if !res.OK {
				t.Fatalf("failed at %s: %s (%s)", res.FailedStep, res.Error, res.Hint)
			}
			noSecrets(t, res)
		})
		t.Run("wrong-password-"+tr, func(t *testing.T) {
			t.Parallel()
			res := run(t, lt.URLs()[i], Credentials{User: turntest.User, Password: NewSecret("nope")}, caOf(lt))
			want{natclass.TURNStepAllocate, 401, "rejected the credentials", "check the user name"}.check(t, res)
		})
		t.Run("denied-peer-"+tr, func(t *testing.T) {
			t.Parallel()
			res := run(t, deny.URLs()[i], longTerm(), caOf(deny))
			want{natclass.TURNStepPermission, 403, "refuses to relay to the peer", "no-loopback-peers"}.check(t, res)
			if res.Released != natclass.TriYes {
				t.Errorf("released %v, want yes after a 403", res.Released)
			}
		})
	}
	t.Run("wrong-secret", func(t *testing.T) {
		t.Parallel()
		c := rest(time.Hour)
		c.SharedSecret = NewSecret("not-" + turntest.Secret)
		want{natclass.TURNStepAllocate, 401, "rejected the credentials", "shared secret matches"}.check(t, run(t, rs.URLs()[0], c, caOf(rs)))
	})
	t.Run("expired-rest", func(t *testing.T) {
		t.Parallel()
		want{natclass.TURNStepAllocate, 401, "REST credentials expired", "clock"}.check(t, run(t, rs.URLs()[0], rest(-time.Minute), caOf(rs)))
	})
	t.Run("tls-self-signed-default", func(t *testing.T) {
		t.Parallel()
		want{natclass.TURNStepTLS, 0, "unknown authority", "--ca-file"}.check(t, run(t, lt.URLs()[2], longTerm(), Options{}))
	})
	t.Run("gather", func(t *testing.T) {
		t.Parallel()
		var servers []Server
		for _, raw := range lt.URLs() {
			servers = append(servers, Server{URL: mustURL(t, raw), Credentials: longTerm()})
		}
		servers = append(servers, Server{URL: mustURL(t, lt.URLs()[0]), Credentials: Credentials{User: turntest.User, Password: NewSecret("nope")}})
		g := Gather(context.Background(), []string{fmt.Sprintf("127.0.0.1:%d", lt.Port)}, servers, caOf(lt))
		checkGathering(t, g, 3, 1)
	})
}

// checkGathering wants one srflx-producing STUN server, relays from the
// first okRelays TURN servers and an error from the rest.
func checkGathering(t *testing.T, g natclass.Gathering, okRelays, failing int) {
	t.Helper()
	for _, c := range g.Candidates {
		t.Logf("%+v", c)
	}
	for _, s := range g.Servers {
		t.Logf("%+v", s)
	}
	var stunOK, relayOK, relayFail int
	for _, s := range g.Servers {
		switch {
		case s.Want == "srflx" && s.Produced > 0:
			stunOK++
		case s.Want == "relay" && s.Produced > 0 && s.Error == "":
			relayOK++
		case s.Want == "relay" && s.Produced == 0 && s.Error != "":
			relayFail++
		}
	}
	if stunOK != 1 || relayOK != okRelays || relayFail != failing {
		t.Errorf("servers: %d STUN ok, %d TURN ok, %d TURN failed; want 1, %d, %d", stunOK, relayOK, relayFail, okRelays, failing)
	}
	protos := map[string]bool{}
	for _, c := range g.Candidates {
		if c.Type == "relay" {
			if c.Server == "" || !c.Address.IsValid() || c.Port == 0 || c.Priority == 0 || c.Time <= 0 {
				t.Errorf("relay candidate missing fields: %+v", c)
			}
			protos[c.RelayProtocol] = true
		}
	}
	for _, p := range []string{"udp", "tcp", "tls"} {
		if !protos[p] {
			t.Errorf("no relay candidate with relay protocol %s", p)
		}
	}
	noSecrets(t, g)
}

// TestCheckPeerCutOff: the local peer socket cannot reach the relay (as when
// UDP is blocked here), but two relayed addresses can reach each other: the
// end-to-end check proves the relay, with a warning.
func TestCheckPeerCutOff(t *testing.T) {
	t.Parallel()
	srv := turntest.NewServer(t, turntest.Options{PeersCutOff: true})
	for _, raw := range srv.URLs() {
		t.Run(mustURL(t, raw).Transport, func(t *testing.T) {
			t.Parallel()
			peerCutOff(t, srv, raw)
		})
	}
}

func peerCutOff(t *testing.T, srv *turntest.Server, raw string) {
	{
		res := run(t, raw, longTerm(), Options{RootCAs: srv.CAPool, EndToEnd: true})
		if !res.OK || res.EndToEnd == nil || !res.EndToEnd.Connected || res.Data == nil || res.Data.Received != 0 {
			t.Errorf("%s: ok %v, %s; data %+v e2e %+v", raw, res.OK, res.Error, res.Data, res.EndToEnd)
		}
		if !strings.Contains(strings.Join(res.Warnings, "\n"), "passed between two relayed addresses") {
			t.Errorf("%s: warnings %q", raw, res.Warnings)
		}
		// Without the end-to-end check, the data step fails.
		res = run(t, raw, longTerm(), Options{RootCAs: srv.CAPool})
		want{natclass.TURNStepData, 0, "none of 5 packets", "relay port range"}.check(t, res)
	}
}
