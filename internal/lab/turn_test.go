package lab

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestTURN proves coturn's TURN service in the lab by data through the
// relay: turnutils_uclient in the client namespace, behind masquerade,
// allocates over UDP, TCP and TLS and echoes packets off turnutils_peer in
// the internet namespace. It also checks that Go's TLS client trusts the
// lab's certificate through Lab.TURN.CACertFile.
func TestTURN(t *testing.T) {
	if testing.Short() {
		t.Skip("lab: skipped in -short mode")
	}
	t.Parallel()
	l := New(t, Options{Mode: Masquerade})

	t.Run("tls-go", func(t *testing.T) {
		counted(t)
		pem, err := os.ReadFile(l.TURN.CACertFile)
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			t.Fatal("no certificate in", l.TURN.CACertFile)
		}
		for _, name := range []string{l.TURN.ServerName, l.TURN.TLS.Addr().String()} {
			var c net.Conn
			err := InNetns(l.Client, func() error {
				var err error
				c, err = net.DialTimeout("tcp", l.TURN.TLS.String(), 2*time.Second)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			tc := tls.Client(c, &tls.Config{RootCAs: pool, ServerName: name})
			tc.SetDeadline(time.Now().Add(5 * time.Second))
			if err := tc.Handshake(); err != nil {
				t.Errorf("TLS handshake with %v as %q: %v", l.TURN.TLS, name, err)
			} else {
				t.Logf("TLS with %q: version %s", name, tls.VersionName(tc.ConnectionState().Version))
			}
			tc.Close()
		}
	})

	if _, err := exec.LookPath("turnutils_uclient"); err != nil {
		t.Skip("lab: turnutils_uclient not found")
	}
	peerPort := startTURNPeer(t, l)
	for _, tc := range []struct {
		name  string
		flags []string
	}{
		{"udp", nil},
		{"tcp", []string{"-t"}},
		{"tls", []string{"-t", "-S", "-E", l.TURN.CACertFile, "-p", strconv.Itoa(int(l.TURN.TLS.Port()))}},
		{"tls443", []string{"-t", "-S", "-E", l.TURN.CACertFile, "-p", strconv.Itoa(int(l.TURN.TLS443.Port()))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			counted(t)
			relayEcho(t, l, peerPort, tc.name, tc.flags...)
		})
	}
}

// startTURNPeer starts turnutils_peer (a UDP echo) on the plain STUN
// server's address in the internet namespace, and returns its port.
func startTURNPeer(t *testing.T, l *Lab) string {
	t.Helper()
	const peerPort = "3480"
	peer := exec.Command("ip", "netns", "exec", l.Internet, "turnutils_peer", "-L", PlainSTUNAddr.String(), "-p", peerPort)
	peer.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := peer.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Process.Kill(); peer.Wait() })
	return peerPort
}

var relayTotals = regexp.MustCompile(`tot_send_msgs=(\d+), tot_recv_msgs=(\d+)`)

// relayEcho runs turnutils_uclient with flags in the client namespace: it
// allocates on coturn and sends 10 messages through the relay to the
// peer, which must echo all of them back.
func relayEcho(t *testing.T, l *Lab, peerPort, name string, flags ...string) {
	t.Helper()
	const messages = 10
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append([]string{"-u", l.TURN.User, "-w", l.TURN.Password, "-e", PlainSTUNAddr.String(), "-r", peerPort,
		"-n", strconv.Itoa(messages), "-m", "1", "-c", "-l", "100"}, flags...)
	args = append(args, l.TURN.UDP.Addr().String())
	out, err := l.ClientCommand(ctx, "turnutils_uclient", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("turnutils_uclient: %v\n%s", err, out)
	}
	m := relayTotals.FindAllSubmatch(out, -1)
	if m == nil {
		t.Fatalf("no relay statistics in turnutils_uclient output:\n%s", out)
	}
	last := m[len(m)-1]
	if string(last[1]) != strconv.Itoa(messages) || string(last[2]) != strconv.Itoa(messages) {
		t.Errorf("through the relay: %s, want %d sent and received:\n%s", last[0], messages, out)
	}
	t.Logf("TURN over %s: data echoed through the relay: %s", name, last[0])
}
