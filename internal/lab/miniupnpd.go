package lab

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Miniupnpd configures a miniupnpd on the lab's router (Debian package
// miniupnpd-nftables, 2.3.1). Its nftables backend puts its rules into
// chains of its own in table inet filter (miniupnpd, prerouting_miniupnpd,
// postrouting_miniupnpd); StartMiniupnpd creates them with base chains that
// jump to them, and lets DNATed connections through the lab's forward chain
// (ct status dnat accept), as OpenWrt does.
type Miniupnpd struct {
	// UPnP and PMP turn on UPnP IGD and NAT-PMP/PCP (miniupnpd switches
	// NAT-PMP and PCP together: enable_natpmp).
	UPnP, PMP bool
	// STUN makes miniupnpd learn its external address from the lab's
	// coturn (ext_perform_stun) instead of refusing to map because its
	// WAN address, 198.19.0.1, is in its list of reserved ranges.
	STUN bool
}

// miniupnpdRules are the chains miniupnpd 2.3.1 uses by default, and base
// chains that jump to them.
const miniupnpdRules = `table inet filter {
	chain miniupnpd {}
	chain prerouting_miniupnpd {}
	chain postrouting_miniupnpd {}
	chain forward { type filter hook forward priority filter; policy accept; jump miniupnpd; }
	chain prerouting { type nat hook prerouting priority dstnat; policy accept; jump prerouting_miniupnpd; }
	chain postrouting { type nat hook postrouting priority srcnat; policy accept; jump postrouting_miniupnpd; }
}
`

// StartMiniupnpd runs miniupnpd in the router namespace until l closes,
// and waits until it listens. It returns the path of its log.
func (l *Lab) StartMiniupnpd(ctx context.Context, m Miniupnpd) (string, error) {
	if _, err := exec.LookPath("miniupnpd"); err != nil {
		return "", fmt.Errorf("miniupnpd not installed (apt-get install miniupnpd-nftables): %w", err)
	}
	rules := filepath.Join(l.Dir, "miniupnpd.nft")
	if err := os.WriteFile(rules, []byte(miniupnpdRules), 0o600); err != nil {
		return "", err
	}
	if out, err := l.Command(ctx, l.Router, "nft", "-f", rules).CombinedOutput(); err != nil {
		return "", fmt.Errorf("nft -f %s: %v: %s", rules, err, out)
	}
	if out, err := l.Command(ctx, l.Router, "nft", "insert", "rule", "inet", "lab", "forward", "ct", "status", "dnat", "accept").CombinedOutput(); err != nil {
		return "", fmt.Errorf("nft insert ct status dnat accept: %v: %s", err, out)
	}
	yn := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	conf := []string{
		"ext_ifname=wan0",
		"listening_ip=lan0",
		"port=0",
		"enable_upnp=" + yn(m.UPnP),
		"enable_natpmp=" + yn(m.PMP),
		"secure_mode=yes",
		"system_uptime=yes",
		"uuid=3d3cec3a-8cf0-11e0-98ee-001a6b12dc6f",
		"lease_file=" + filepath.Join(l.Dir, "miniupnpd.leases"),
		"allow 1024-65535 198.18.1.0/24 1024-65535",
		"deny 0-65535 0.0.0.0/0 0-65535",
	}
	if m.STUN {
		conf = append(conf, "ext_perform_stun=yes", "ext_stun_host="+STUNAddr.String(), fmt.Sprintf("ext_stun_port=%d", STUNPort))
	}
	cfgPath := filepath.Join(l.Dir, "miniupnpd.conf")
	if err := os.WriteFile(cfgPath, []byte(strings.Join(conf, "\n")+"\n"), 0o600); err != nil {
		return "", err
	}
	logPath := filepath.Join(l.Dir, "miniupnpd.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return "", err
	}
	defer logf.Close()
	cmd := exec.Command("ip", "netns", "exec", l.Router, "miniupnpd", "-d", "-f", cfgPath, "-P", filepath.Join(l.Dir, "miniupnpd.pid"))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("starting miniupnpd: %w", err)
	}
	p := &proc{name: "miniupnpd", cmd: cmd, logs: []string{logPath}, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(p.done)
	}()
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	want := "5351"
	if !m.PMP {
		want = ":1900"
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		out, _ := l.Command(ctx, l.Router, "ss", "-Hlun").Output()
		if bytes.Contains(out, []byte(want)) {
			return logPath, nil
		}
		select {
		case <-p.done:
			deadline = time.Now()
		case <-time.After(50 * time.Millisecond):
		}
	}
	b, _ := os.ReadFile(logPath)
	return logPath, fmt.Errorf("miniupnpd did not listen on %s within 20s; log:\n%s", want, b)
}
