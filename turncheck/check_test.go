package turncheck

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/natcheck/natcheck/natclass"
	"github.com/natcheck/natcheck/turncheck/turntest"
)

func mustURL(t testing.TB, s string) URL {
	t.Helper()
	u, err := ParseURL(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func longTerm() Credentials {
	return Credentials{User: turntest.User, Password: NewSecret(turntest.Password)}
}

func rest(lifetime time.Duration) Credentials {
	return Credentials{User: "alice", SharedSecret: NewSecret(turntest.Secret), Lifetime: lifetime}
}

// noSecrets fails the test if any test secret, or a REST password derived
// from it, appears in v's JSON or in text.
func noSecrets(t *testing.T, v any, text ...string) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	all := string(b) + strings.Join(text, "\n")
	for _, s := range []string{turntest.Password, turntest.Secret} {
		if strings.Contains(all, s) {
			t.Errorf("secret %q appears in the output:\n%s", s, all)
		}
	}
	// A REST password is base64 of 20 bytes: 28 characters ending in "=".
	for _, f := range strings.FieldsFunc(all, func(r rune) bool { return strings.ContainsRune(" \"\n,:{}[]", r) }) {
		if len(f) == 28 && strings.HasSuffix(f, "=") {
			t.Errorf("something like a derived REST password appears in the output: %q", f)
		}
	}
}

func TestCheckPion(t *testing.T) {
	t.Parallel()
	srv := turntest.NewServer(t, turntest.Options{})
	for _, raw := range srv.URLs() {
		for _, creds := range []struct {
			name string
			c    Credentials
		}{{"long-term", longTerm()}, {"rest", rest(time.Hour)}} {
			t.Run(strings.SplitN(raw, ":", 2)[0]+"-"+mustURL(t, raw).Transport+"-"+creds.name, func(t *testing.T) {
				t.Parallel()
				var mu sync.Mutex
				var trace []string
				o := Options{RootCAs: srv.CAPool, EndToEnd: true, Trace: func(e Event) {
					mu.Lock()
					defer mu.Unlock()
					trace = append(trace, e.String())
				}}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				res := Check(ctx, Server{URL: mustURL(t, raw), Credentials: creds.c}, o)
				t.Logf("%+v data=%+v e2e=%+v", res, res.Data, res.EndToEnd)
				if !res.OK {
					t.Fatalf("check failed at %s: %s (%s)", res.FailedStep, res.Error, res.Hint)
				}
				if res.Data == nil || res.Data.Received == 0 || res.Data.RTTMin <= 0 {
					t.Errorf("data: %+v, want packets back with an RTT", res.Data)
				}
				if !res.Relayed.IsValid() || res.Allocate <= 0 || res.AllocateRTT <= 0 || res.Permission <= 0 {
					t.Errorf("relayed %v allocate %v rtt %v permission %v: want all set", res.Relayed, res.Allocate, res.AllocateRTT, res.Permission)
				}
				if res.Released != natclass.TriYes {
					t.Errorf("released = %v, want yes", res.Released)
				}
				if res.EndToEnd == nil || !res.EndToEnd.Connected || res.EndToEnd.Local == "" {
					t.Errorf("end to end: %+v", res.EndToEnd)
				}
				if res.Transport == natclass.TURNTransportTLS && (res.TLS == nil || !res.TLS.Verified || res.TLSHandshake <= 0) {
					t.Errorf("TLS: %+v", res.TLS)
				}
				mu.Lock()
				defer mu.Unlock()
				if len(trace) == 0 {
					t.Error("no trace events")
				}
				noSecrets(t, res, trace...)
			})
		}
	}
}

// nameResolver answers for one name with one address.
type nameResolver struct {
	name string
	addr netip.Addr
}

func (r nameResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if host != r.name {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return []netip.Addr{r.addr}, nil
}

// TestEndToEndGuarded: with Options.Allow (the exporter's allowlist), the
// end-to-end ICE check asks it about the address it resolved before the
// agents start and about every TCP connection they open, and a refusal
// stops the check before anything is sent.
func TestEndToEndGuarded(t *testing.T) {
	t.Parallel()
	srv := turntest.NewServer(t, turntest.Options{})
	for _, tr := range []struct {
		raw    string
		server netip.AddrPort
	}{
		{"turn:localhost:" + strconv.Itoa(int(srv.UDP.Port())), srv.UDP},
		{"turn:localhost:" + strconv.Itoa(int(srv.TCP.Port())) + "?transport=tcp", srv.TCP},
	} {
		s := Server{URL: mustURL(t, tr.raw), Credentials: longTerm()}
		var mu sync.Mutex
		asked := map[netip.AddrPort]int{}
		o := Options{Resolver: nameResolver{"localhost", netip.MustParseAddr("127.0.0.1")}}
		o.Allow = func(ap netip.AddrPort) error {
			mu.Lock()
			defer mu.Unlock()
			asked[ap]++
			return nil
		}
		if res := EndToEndCheck(context.Background(), s, o); !res.Connected || res.Received == 0 {
			t.Errorf("%s allowed: %+v", tr.raw, res)
		}
		mu.Lock()
		n, others := asked[tr.server], len(asked)
		mu.Unlock()
		want := 1
		if s.URL.Transport != natclass.TURNTransportUDP {
			want = 3 // the resolved address, then each agent's connection
		}
		if n < want || others != 1 {
			t.Errorf("%s: Allow asked %v, want %v at least %d times and nothing else", tr.raw, asked, tr.server, want)
		}

		o.Allow = func(ap netip.AddrPort) error { return fmt.Errorf("%v is not in allowed_targets", ap) }
		res := EndToEndCheck(context.Background(), s, o)
		if res.Connected || !strings.Contains(res.Error, "is not in allowed_targets") {
			t.Errorf("%s refused: %+v", tr.raw, res)
		}
	}
}
