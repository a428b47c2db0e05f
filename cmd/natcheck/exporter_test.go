package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/natcheck/natcheck/internal/syncbuf"
	"github.com/natcheck/natcheck/turncheck/turntest"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestExporterStartupErrors: a bad module file stops the exporter at
// start-up with the file and line, and quotes no credential.
func TestExporterStartupErrors(t *testing.T) {
	good := writeFile(t, "good.yml", "modules:\n  stun:\n    kind: stun\n")
	bad := writeFile(t, "bad.yml", "modules:\n  stun:\n    kind: stun\n  turn:\n    kind: turn\n    turn:\n      user: a\n      password: hunter2\n")
	typo := writeFile(t, "typo.yml", "modules:\n  stun:\n    kind: stun\n    timeuot: 5s\n")
	open := writeFile(t, "open.yml", "modules:\n  turn:\n    kind: turn\n    turn:\n      user: a\n      password_env: PW\n")
	userinfo := writeFile(t, "userinfo.yml", "modules:\n  stun:\n    kind: stun\n    stun:\n      servers: [\"stun:u:hunter2@stun.example.com\"]\n")
	query := writeFile(t, "query.yml", "modules:\n  stun:\n    kind: stun\n    allowed_targets: [\"stun:stun.example.com?k=hunter2\"]\n")
	getenv := func(k string) string { return map[string]string{"PW": "hunter2"}[k] }
	for want, args := range map[string][]string{
		"--config FILE is required":                                                      {},
		bad + `:8: module "turn": password: credentials`:                                 {"--config", bad},
		typo + ":4: field timeuot not found":                                             {"--config", typo},
		open + `:2: module "turn": a turn module with credentials needs allowed_targets`: {"--config", open},
		userinfo + `:5: module "stun": servers: `:                                        {"--config", userinfo},
		query + `:4: module "stun": allowed target "stun:stun.example.com?k=REDACTED"`:   {"--config", query},
		"no such file":        {"--config", filepath.Join(t.TempDir(), "none.yml")},
		"--listen":            {"--config", good, "--listen", "127.0.0.1:99999"},
		"--max-concurrent 0":  {"--config", good, "--max-concurrent", "0"},
		"--idle-timeout 0s":   {"--config", good, "--idle-timeout", "0"},
		"--log-level":         {"--config", good, "--log-level", "loud"},
		"unexpected argument": {"--config", good, "extra"},
	} {
		code, out, errs := runArgs(t, env{getenv: getenv}, append([]string{"exporter"}, args...)...)
		if code != exitUsage || out != "" || !strings.Contains(errs, want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2 and %q", args, code, out, errs, want)
		}
		if strings.Contains(errs, "hunter2") {
			t.Errorf("%v: stderr quotes a credential: %q", args, errs)
		}
		if strings.Count(strings.TrimSuffix(errs, "\n"), "\n") > 0 {
			t.Errorf("%v: more than one line: %q", args, errs)
		}
	}
	code, out, _ := runArgs(t, env{}, "exporter", "--help")
	if code != exitOK || !strings.Contains(out, "/probe?module=NAME&target=TARGET") || !strings.Contains(out, "-max-concurrent") {
		t.Errorf("--help: exit %d:\n%s", code, out)
	}
}

var listening = regexp.MustCompile(`address=(127\.0\.0\.1:\d+)`)

// startExporter runs natcheck exporter on a free loopback port until the
// returned cancel is called; it returns the base URL, the log and the
// exit code channel.
func startExporter(t *testing.T, config string, getenv func(string) string, extra ...string) (string, *syncbuf.Buffer, context.CancelFunc, chan int) {
	t.Helper()
	path := writeFile(t, "exporter.yml", config)
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncbuf.Buffer{}
	done := make(chan int, 1)
	args := append([]string{"exporter", "--config", path, "--listen", "127.0.0.1:0", "--log-level", "debug"}, extra...)
	go func() { done <- run(ctx, args, io.Discard, logs, env{getenv: getenv}) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	for range 500 {
		if m := listening.FindStringSubmatch(logs.String()); m != nil {
			return "http://" + m[1], logs, cancel, done
		}
		select {
		case code := <-done:
			t.Fatalf("exporter exited %d:\n%s", code, logs.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("the exporter did not say where it listens:\n%s", logs.String())
	return "", nil, nil, nil
}

func httpGet(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestExporterServes probes a loopback STUN server through natcheck
// exporter, then stops it with the context, as SIGINT does.
func TestExporterServes(t *testing.T) {
	s := loopbackServer(t)
	base, logs, cancel, done := startExporter(t, "modules:\n  stun:\n    kind: stun\n    timeout: 5s\n", noEnv)
	code, body := httpGet(t, base+"/probe?"+url.Values{"module": {"stun"}, "target": {s.Primary().String()}}.Encode())
	if code != http.StatusOK || !strings.Contains(body, "\nprobe_success 1\n") {
		t.Fatalf("probe: %d\n%s", code, body)
	}
	code, body = httpGet(t, base+"/metrics")
	if code != http.StatusOK || !strings.Contains(body, `natcheck_exporter_probes_total{module="stun",result="success"} 1`) ||
		!strings.Contains(body, "natcheck_exporter_build_info{") {
		t.Errorf("/metrics: %d\n%s", code, body)
	}
	cancel()
	if code := <-done; code != exitOK {
		t.Errorf("exit %d", code)
	}
	done <- exitOK // for the cleanup
	if !strings.Contains(logs.String(), "natcheck exporter stopped") {
		t.Errorf("no stop line in the log:\n%s", logs.String())
	}
}

// TestExporterShutdownWaits: a probe in progress when the exporter is told
// to stop still gets its answer.
func TestExporterShutdownWaits(t *testing.T) {
	silent, _ := turntest.Blackhole(t)
	base, _, cancel, done := startExporter(t, "modules:\n  stun:\n    kind: stun\n    timeout: 1s\n", noEnv)
	answer := make(chan string, 1)
	go func() {
		resp, err := http.Get(base + "/probe?" + url.Values{"module": {"stun"}, "target": {silent.String()}}.Encode())
		if err != nil {
			answer <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		answer <- fmt.Sprintf("%d\n%s", resp.StatusCode, b)
	}()
	inFlight := false
	for range 500 {
		_, body := httpGet(t, base+"/metrics")
		if strings.Contains(body, "\nnatcheck_exporter_probes_in_flight 1\n") {
			inFlight = true
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !inFlight {
		t.Fatal("the probe never showed in natcheck_exporter_probes_in_flight")
	}
	cancel()
	got := <-answer
	if !strings.HasPrefix(got, "200\n") || !strings.Contains(got, "\nprobe_success 0\n") {
		t.Errorf("the probe in progress got: %s", got)
	}
	if code := <-done; code != exitOK {
		t.Errorf("exit %d", code)
	}
	done <- exitOK
}

// TestExporterClosesIdleConnections: a keep-alive connection that asks
// nothing more is closed after --idle-timeout.
func TestExporterClosesIdleConnections(t *testing.T) {
	base, _, _, _ := startExporter(t, "modules:\n  stun:\n    kind: stun\n", noEnv, "--idle-timeout", "200ms")
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /-/healthy HTTP/1.1\r\nHost: exporter\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Close {
		t.Fatalf("status %d, close %v: want a kept-alive 200", resp.StatusCode, resp.Close)
	}
	// Only a guard against hanging: far longer than the idle timeout, and
	// shorter than the default (2m), so that an ignored flag still fails.
	c.SetReadDeadline(time.Now().Add(time.Minute))
	n, err := br.Read(make([]byte, 1))
	if n != 0 || !errors.Is(err, io.EOF) {
		t.Errorf("the idle connection was not closed by the exporter: read %d bytes, %v", n, err)
	}
}
