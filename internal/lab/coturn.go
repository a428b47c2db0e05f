package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/natcheck/natcheck/internal/testcert"
)

// TURNServerName is the DNS name in the TLS certificate.
const TURNServerName = "turn.lab.natcheck.test"

func (l *Lab) startServers(ctx context.Context) error {
	if err := l.writeCerts(); err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	l.TURN = TURNServer{
		UDP:        netip.AddrPortFrom(STUNAddr, STUNPort),
		TCP:        netip.AddrPortFrom(STUNAddr, STUNPort),
		TLS:        netip.AddrPortFrom(STUNAddr, TURNTLSPort),
		TLS443:     netip.AddrPortFrom(STUNAddr, TLS443Port),
		User:       TURNUser,
		Password:   TURNPassword,
		Realm:      TURNRealm,
		CACertFile: l.path("ca.pem"),
		ServerName: TURNServerName,
		RelayAddr:  STUNAddr,
		RelayMin:   RelayMinPort,
		RelayMax:   RelayMaxPort,
	}
	rfc := coturnRFC5780Flag()
	main := []string{
		"listening-ip=" + STUNAddr.String(),
		"listening-ip=" + STUNAltAddr.String(),
		fmt.Sprintf("listening-port=%d", STUNPort),
		fmt.Sprintf("alt-listening-port=%d", STUNAltPort),
		fmt.Sprintf("tls-listening-port=%d", TURNTLSPort),
		// The alternate TLS port serves TLS (and, as coturn does on its TLS
		// ports, plain TCP) on 443 on both addresses: the port a
		// tls443only router lets out.
		fmt.Sprintf("alt-tls-listening-port=%d", TLS443Port),
		"relay-ip=" + STUNAddr.String(),
		fmt.Sprintf("min-port=%d", RelayMinPort),
		fmt.Sprintf("max-port=%d", RelayMaxPort),
		"fingerprint",
		"lt-cred-mech",
		"user=" + TURNUser + ":" + TURNPassword,
		"realm=" + TURNRealm,
		"cert=" + l.path("turn-cert.pem"),
		"pkey=" + l.path("turn-key.pem"),
		"no-dtls",
		"no-multicast-peers",
		"allowed-peer-ip=198.18.0.0-198.19.255.255",
		"no-cli",
		"no-stdout-log",
		"simple-log",
		"verbose",
		"log-file=" + l.path("coturn.log"),
		"pidfile=" + l.path("coturn.pid"),
		"userdb=" + l.path("coturn.db"),
	}
	if rfc != "" {
		main = append(main, rfc)
	}
	if l.Mode6 != "" {
		// RFC 5780 over IPv6 too: coturn pairs each listening address with
		// another of its family as the alternate; IPv6 relays (RFC 6156)
		// on the primary IPv6 address.
		main = append(main,
			"listening-ip="+STUNAddr6.String(),
			"listening-ip="+STUNAltAddr6.String(),
			"relay-ip="+STUNAddr6.String(),
			"allowed-peer-ip=2001:2::-2001:2:0:ffff:ffff:ffff:ffff:ffff")
	}
	plain := []string{
		"listening-ip=" + PlainSTUNAddr.String(),
		fmt.Sprintf("listening-port=%d", STUNPort),
		"stun-only",
		"no-tls",
		"no-dtls",
		"no-cli",
		"no-stdout-log",
		"simple-log",
		"log-file=" + l.path("plainstun.log"),
		"pidfile=" + l.path("plainstun.pid"),
		"userdb=" + l.path("plainstun.db"),
	}
	if coturnHas("--no-rfc5780") {
		plain = append(plain, "no-rfc5780")
	}
	if l.Mode6 != "" {
		plain = append(plain, "listening-ip="+PlainSTUNAddr6.String())
	}
	if err := l.startTurnserver("coturn", main); err != nil {
		return err
	}
	if err := l.startTurnserver("plainstun", plain); err != nil {
		return err
	}
	return l.waitServers(ctx)
}

var (
	helpOnce sync.Once
	helpText string
)

// coturnHas reports whether `turnserver --help` mentions option.
func coturnHas(option string) bool {
	helpOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		out, _ := exec.CommandContext(ctx, "turnserver", "--help").CombinedOutput()
		helpText = string(out)
	})
	for _, f := range strings.Fields(helpText) {
		if f == option || strings.HasPrefix(f, option+"=") || strings.HasPrefix(f, option+"[") {
			return true
		}
	}
	return false
}

// coturnRFC5780Flag returns the configuration line that turns RFC 5780 on
// (coturn 4.7 and later have it off by default), or "" when it is on by
// default (coturn 4.6).
func coturnRFC5780Flag() string {
	if coturnHas("--rfc5780") {
		return "rfc5780"
	}
	return ""
}

func (l *Lab) startTurnserver(name string, conf []string) error {
	file := l.path(name + ".conf")
	if err := os.WriteFile(file, []byte(strings.Join(conf, "\n")+"\n"), 0o600); err != nil {
		return err
	}
	return l.startProc(name, l.Internet, []string{l.path(name + ".log")}, "turnserver", "-c", file)
}

// startProc starts name with args in namespace ns as one of the lab's
// servers, called label: its output goes to <Dir>/<label>.out, shown with
// logs when a test fails; Close stops it.
func (l *Lab) startProc(label, ns string, logs []string, name string, args ...string) error {
	out, err := os.Create(l.path(label + ".out"))
	if err != nil {
		return err
	}
	defer out.Close()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
	cmd.Stdout = out
	cmd.Stderr = out
	// A test binary that dies takes its servers with it; RemoveStale deletes
	// the namespaces later.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", label, err)
	}
	p := &proc{name: label, cmd: cmd, logs: append([]string{out.Name()}, logs...), done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(p.done)
	}()
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	return nil
}

// waitServers polls every STUN endpoint from inside the internet namespace
// until it answers a Binding request, and the TCP and TLS ports until they
// accept, for at most 15 seconds.
func (l *Lab) waitServers(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	udp := []netip.AddrPort{
		l.STUN,
		netip.AddrPortFrom(STUNAddr, STUNAltPort),
		netip.AddrPortFrom(STUNAltAddr, STUNPort),
		l.STUNAlt,
		l.PlainSTUN,
	}
	tcp := []netip.AddrPort{l.TURN.TCP, l.TURN.TLS, l.TURN.TLS443, netip.AddrPortFrom(STUNAltAddr, TLS443Port)}
	if l.Mode6 != "" {
		udp = append(udp, l.STUN6, netip.AddrPortFrom(STUNAddr6, STUNAltPort), netip.AddrPortFrom(STUNAltAddr6, STUNPort), l.STUN6Alt, l.PlainSTUN6)
		tcp = append(tcp, l.STUN6, netip.AddrPortFrom(STUNAddr6, TURNTLSPort), netip.AddrPortFrom(STUNAddr6, TLS443Port))
	}
	start := time.Now()
	// At most 150 rounds: 15 s of 100 ms pauses, plus the checks' own
	// bounded waits; the context ends it at 15 s in any case.
	for attempt := 0; attempt < 150; attempt++ {
		err := l.checkServers(udp, tcp)
		if err == nil {
			l.logf("lab: servers answer after %v", time.Since(start).Round(time.Millisecond))
			return nil
		}
		if exited := l.exitedProc(); exited != "" {
			return fmt.Errorf("%s exited: %v", exited, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("servers not ready after %v: %w", time.Since(start).Round(time.Millisecond), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("servers not ready after %v", time.Since(start).Round(time.Millisecond))
}

func (l *Lab) exitedProc() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range l.procs {
		select {
		case <-p.done:
			return p.name
		default:
		}
	}
	return ""
}

func (l *Lab) checkServers(udp, tcp []netip.AddrPort) error {
	for _, a := range udp {
		local := PlainSTUNAddr
		if a.Addr().Is6() {
			local = PlainSTUNAddr6
		}
		if _, err := l.Binding(l.Internet, netip.AddrPortFrom(local, 0), a, 300*time.Millisecond); err != nil {
			return err
		}
	}
	for _, a := range tcp {
		var c net.Conn
		err := InNetns(l.Internet, func() error {
			var err error
			c, err = net.DialTimeout("tcp", a.String(), 300*time.Millisecond)
			return err
		})
		if err != nil {
			return err
		}
		c.Close()
	}
	return nil
}

// writeCerts writes a CA (ca.pem) and a TLS certificate signed by it
// (turn-cert.pem, turn-key.pem) for the TURN server's names and addresses.
func (l *Lab) writeCerts() error {
	ca, err := testcert.NewCA("natcheck lab CA")
	if err != nil {
		return err
	}
	names := []string{TURNServerName, STUNAddr.String(), STUNAltAddr.String()}
	if l.Mode6 != "" {
		names = append(names, STUNAddr6.String(), STUNAltAddr6.String())
	}
	c, err := ca.Issue(TURNServerName, names...)
	if err != nil {
		return err
	}
	key, err := c.KeyPEM()
	if err != nil {
		return err
	}
	return errors.Join(
		os.WriteFile(l.path("ca.pem"), ca.CertPEM(), 0o600),
		os.WriteFile(l.path("turn-cert.pem"), c.CertPEM(), 0o600),
		os.WriteFile(l.path("turn-key.pem"), key, 0o600),
	)
}
