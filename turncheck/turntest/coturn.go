package turntest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// CoturnOptions configure a coturn instance.
type CoturnOptions struct {
	// REST uses use-auth-secret with Secret instead of User/Password.
	REST bool
	// DenyLoopbackPeers keeps coturn's default of refusing peers on
	// 127.0.0.0/8 (CreatePermission gets 403); otherwise
	// allow-loopback-peers is set.
	DenyLoopbackPeers bool
	// Extra are more configuration lines, such as "max-allocate-lifetime=4".
	Extra []string
	// IPv6 makes coturn listen and relay on ::1 (listening-ip=::1,
	// relay-ip=::1) instead of 127.0.0.1; the test is skipped without ::1.
	IPv6 bool
}

// Coturn is a turnserver process on 127.0.0.1.
type Coturn struct {
	Host    string // 127.0.0.1, or ::1
	Port    int    // UDP and TCP
	TLSPort int
	CAFile  string
	Log     string
}

// URLs returns turn: URLs for UDP, TCP and TLS, in that order.
func (c *Coturn) URLs() []string {
	hp := func(p int) string { return net.JoinHostPort(c.Host, fmt.Sprint(p)) }
	return []string{
		"turn:" + hp(c.Port),
		"turn:" + hp(c.Port) + "?transport=tcp",
		"turns:" + hp(c.TLSPort),
	}
}

// StartCoturn starts turnserver (Debian package coturn) with a temporary
// configuration on free ports of 127.0.0.1, and stops it when the test
// ends. It skips the test when turnserver is not installed.
func StartCoturn(tb testing.TB, o CoturnOptions) *Coturn {
	tb.Helper()
	bin, err := exec.LookPath("turnserver")
	if err != nil {
		tb.Skip("turnserver not installed (Debian package coturn): skipping the coturn test")
	}
	host := "127.0.0.1"
	if o.IPv6 {
		SkipWithoutIPv6(tb)
		host = "::1"
	}
	dir := tb.TempDir()
	ca := NewCA(tb)
	c := &Coturn{Host: host, Port: FreePort(tb), TLSPort: FreePort(tb), CAFile: ca.File, Log: filepath.Join(dir, "turn.log")}
	minPort := 20000 + rand.IntN(30000)
	conf := []string{
		"listening-ip=" + host,
		"relay-ip=" + host,
		fmt.Sprintf("listening-port=%d", c.Port),
		fmt.Sprintf("alt-listening-port=%d", c.Port+1),
		fmt.Sprintf("tls-listening-port=%d", c.TLSPort),
		fmt.Sprintf("alt-tls-listening-port=%d", c.TLSPort+1),
		fmt.Sprintf("min-port=%d", minPort),
		fmt.Sprintf("max-port=%d", minPort+199),
		"realm=" + Realm,
		"fingerprint",
		"cert=" + ca.CertFile,
		"pkey=" + ca.KeyFile,
		"no-dtls",
		"no-cli",
		"no-stdout-log",
		"simple-log",
		"log-file=" + c.Log,
		"pidfile=" + filepath.Join(dir, "turn.pid"),
		"userdb=" + filepath.Join(dir, "turn.db"),
	}
	if o.REST {
		conf = append(conf, "use-auth-secret", "static-auth-secret="+Secret)
	} else {
		conf = append(conf, "lt-cred-mech", "user="+User+":"+Password)
	}
	if !o.DenyLoopbackPeers {
		conf = append(conf, "allow-loopback-peers")
	}
	conf = append(conf, o.Extra...)
	file := filepath.Join(dir, "turnserver.conf")
	if err := os.WriteFile(file, []byte(strings.Join(conf, "\n")+"\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	out, err := os.Create(filepath.Join(dir, "turnserver.out"))
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", file)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	tb.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		out.Close()
		if tb.Failed() {
			logs, _ := os.ReadFile(c.Log)
			tb.Logf("coturn log:\n%s", tail(logs, 4000))
		}
	})
	// Wait until the TCP and TLS ports accept: at most 10 s.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, p := range []int{c.Port, c.TLSPort} {
		addr := netip.AddrPortFrom(netip.MustParseAddr(host), uint16(p)).String()
		for {
			conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
			if err == nil {
				conn.Close()
				break
			}
			select {
			case <-exited:
				logs, _ := os.ReadFile(out.Name())
				tb.Fatalf("turnserver exited: %s", tail(logs, 2000))
			case <-ctx.Done():
				tb.Fatalf("turnserver not listening on %s after 10 s", addr)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return c
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
