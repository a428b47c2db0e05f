//go:build linux

package stunserver

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/natcheck/natcheck/internal/lab"
	natstun "github.com/natcheck/natcheck/stun"
)

// inNetns runs fn with the calling thread in the network namespace name
// (lab.InNetns), so that the sockets fn opens live there.
func inNetns(t *testing.T, name string, fn func()) {
	t.Helper()
	if err := lab.InNetns(name, func() error { fn(); return nil }); err != nil {
		t.Fatal(err)
	}
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

var nftBytes = regexp.MustCompile(`packets (\d+) bytes (\d+)`)

// nftCounter returns the packets and bytes (IP packets, headers included)
// of the named counter in namespace ns.
func nftCounter(t *testing.T, ns, name string) (packets, bytes int) {
	t.Helper()
	m := nftBytes.FindStringSubmatch(mustRun(t, "ip", "netns", "exec", ns, "nft", "list", "counter", "inet", "flood", name))
	if m == nil {
		t.Fatalf("counter %s not found", name)
	}
	packets, _ = strconv.Atoi(m[1])
	bytes, _ = strconv.Atoi(m[2])
	return packets, bytes
}

// TestSpoofedFlood floods a real server from another network namespace
// with requests whose sources are 1000 addresses that are not the
// flooder's own (the spoofing namespace routes them to itself, as a
// spoofing host would), and counts the bytes each way: nftables counters
// in the server's namespace for the totals, the sockets of the spoofed
// addresses for each source. Every source, and all of them together, get
// at most what they sent plus the budgets; a client whose requests are as
// large as the responses is answered throughout.
func TestSpoofedFlood(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("spoofed flood test: needs root to create network namespaces")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("spoofed flood test: %s(8) not found", tool)
		}
	}
	const (
		sources      = 1000
		perSource    = 10
		sourceBudget = 1000
		globalBudget = 20000
		serverIP     = "10.77.0.1"
		alternateIP  = "10.77.0.2"
	)
	id := os.Getpid() % 100000
	srvNS, cliNS := fmt.Sprintf("nclS%d", id), fmt.Sprintf("nclC%d", id)
	vS, vC := fmt.Sprintf("vfs%d", id), fmt.Sprintf("vfc%d", id)
	mustRun(t, "ip", "netns", "add", srvNS)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", srvNS).Run() })
	mustRun(t, "ip", "netns", "add", cliNS)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", cliNS).Run() })
	for _, args := range [][]string{
		{"ip", "link", "add", vS, "netns", srvNS, "type", "veth", "peer", "name", vC, "netns", cliNS},
		{"ip", "-n", srvNS, "addr", "add", serverIP + "/16", "dev", vS},
		{"ip", "-n", srvNS, "addr", "add", alternateIP + "/16", "dev", vS},
		{"ip", "-n", srvNS, "link", "set", vS, "up"},
		{"ip", "-n", srvNS, "link", "set", "lo", "up"},
		{"ip", "-n", cliNS, "addr", "add", "10.77.0.10/16", "dev", vC},
		{"ip", "-n", cliNS, "addr", "add", "10.77.0.20/16", "dev", vC},
		{"ip", "-n", cliNS, "link", "set", vC, "up"},
		{"ip", "-n", cliNS, "link", "set", "lo", "up"},
		// The spoofed sources: all of 10.77.128.0/17 is local in the
		// client namespace (so that its sockets can bind there and
		// count what comes back), and the server reaches it through
		// the client's veth, as it would reach a victim.
		{"ip", "-n", cliNS, "route", "add", "local", "10.77.128.0/17", "dev", "lo"},
		{"ip", "-n", srvNS, "route", "add", "10.77.128.0/17", "via", "10.77.0.10"},
		{"ip", "netns", "exec", srvNS, "nft", "add table inet flood; " +
			"add counter inet flood req; add counter inet flood resp; add counter inet flood spoofed; " +
			"add chain inet flood in { type filter hook input priority 0; }; " +
			"add chain inet flood out { type filter hook output priority 0; }; " +
			"add rule inet flood in udp dport { 3478, 3479 } counter name req; " +
			"add rule inet flood out udp sport { 3478, 3479 } counter name resp; " +
			"add rule inet flood out ip daddr 10.77.128.0/17 udp sport { 3478, 3479 } counter name spoofed"},
	} {
		mustRun(t, args...)
	}

	var s *Server
	inNetns(t, srvNS, func() {
		var err error
		s, err = Start(context.Background(), Config{
			Primary:      netip.MustParseAddrPort(serverIP + ":3478"),
			Alternate:    netip.MustParseAddrPort(alternateIP + ":3479"),
			SourceBudget: sourceBudget,
			GlobalBudget: globalBudget,
		})
		if err != nil {
			t.Errorf("start server in %s: %v", srvNS, err)
		}
	})
	if s == nil {
		t.FailNow()
	}
	t.Cleanup(func() { _ = s.Close() })

	conns := make([]*net.UDPConn, sources)
	var client *net.UDPConn
	inNetns(t, cliNS, func() {
		for i := range conns {
			ip := netip.AddrFrom4([4]byte{10, 77, 128 + byte(i>>8), byte(i)})
			c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 40000)))
			if err != nil {
				t.Errorf("bind spoofed source %v: %v", ip, err)
				return
			}
			conns[i] = c
		}
		var err error
		if client, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(10, 77, 0, 20)}); err != nil {
			t.Errorf("bind client: %v", err)
		}
	})
	for _, c := range conns {
		if c != nil {
			t.Cleanup(func() { _ = c.Close() })
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	t.Cleanup(func() { _ = client.Close() })

	// Each spoofed source counts the bytes it gets until the flood is over
	// and the server quiet (at most 30 s).
	received, receivedPackets := make([]int, sources), make([]int, sources)
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() {
			buf := make([]byte, 1500)
			_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
			for range 10 * perSource {
				n, err := c.Read(buf)
				if err != nil {
					return
				}
				received[i] += n
				receivedPackets[i]++
			}
		})
	}

	primary := s.Primary()
	plain := stun.MustBuild(stun.BindingRequest, stun.TransactionID, stun.Fingerprint)
	change := stun.MustBuild(stun.BindingRequest, stun.TransactionID, natstun.ChangeRequest{ChangeIP: true, ChangePort: true}, stun.Fingerprint)
	sent := make([]int, sources)
	clientAnswered := 0
	buf := make([]byte, 1500)
	start := time.Now()
	for round := range perSource {
		for i, c := range conns {
			pkt := plain.Raw
			if (round+i)%2 == 1 {
				pkt = change.Raw
			}
			if _, err := c.WriteToUDPAddrPort(pkt, primary); err != nil {
				t.Fatal(err)
			}
			sent[i] += len(pkt)
		}
		// A client whose request is as large as the response is
		// answered in the middle of the flood.
		req := stun.MustBuild(stun.BindingRequest, stun.TransactionID, stun.NewSoftware(strings.Repeat("p", 64)), stun.Fingerprint)
		for range 10 {
			if _, err := client.WriteToUDPAddrPort(req.Raw, primary); err != nil {
				t.Fatal(err)
			}
			_ = client.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			n, err := client.Read(buf)
			m := new(stun.Message)
			if err == nil && stun.Decode(buf[:n], m) == nil && m.TransactionID == req.TransactionID {
				clientAnswered++
				break
			}
		}
	}
	elapsed := time.Since(start)
	// Wait until the server has answered what it will (its counters stay
	// put for 200 ms, at most 10 s), then stop the readers.
	last := s.Stats()
	for range 50 {
		time.Sleep(200 * time.Millisecond)
		if st := s.Stats(); st == last {
			break
		} else {
			last = st
		}
	}
	time.Sleep(100 * time.Millisecond)
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now())
	}
	wg.Wait()
	elapsed2 := time.Since(start) // the budgets refill until the last read

	totalSent, totalReceived, spoofedPackets := 0, 0, 0
	limit := sourceBudget + int(elapsed2.Seconds()*sourceBudget/8.0) + 1
	worst := 0
	for i := range conns {
		totalSent += sent[i]
		totalReceived += received[i]
		spoofedPackets += receivedPackets[i]
		if over := received[i] - sent[i]; over > limit {
			t.Errorf("source %d: sent %d bytes, got %d back, more than %d over", i, sent[i], received[i], limit)
		} else {
			worst = max(worst, over)
		}
	}
	reqPackets, reqBytes := nftCounter(t, srvNS, "req")
	respPackets, respBytes := nftCounter(t, srvNS, "resp")
	st := s.Stats()
	t.Logf("%d requests (%d bytes payload; %d packets, %d bytes on the wire in) in %v; %d responses (%d bytes payload to the spoofed sources; %d packets, %d bytes on the wire out): factor %.2f on the wire; worst source %+d bytes over what it sent; stats %+v",
		sources*perSource, totalSent, reqPackets, reqBytes, elapsed, respPackets, totalReceived, respPackets, respBytes,
		float64(respBytes)/float64(reqBytes), worst, st)

	if clientAnswered != perSource {
		t.Errorf("the padded client got %d of %d answers during the flood", clientAnswered, perSource)
	}
	// All together: what was received plus one second of the global
	// budget (its burst) plus its refill. On the wire, each response
	// carries no more header than its request did.
	if globalLimit := reqBytes + globalBudget + int(elapsed2.Seconds()*globalBudget) + 1; respBytes > globalLimit {
		t.Errorf("server sent %d bytes for %d received, more than %d", respBytes, reqBytes, globalLimit)
	}
	if st.RateLimited == 0 {
		t.Errorf("nothing dropped: stats %+v", st)
	}
	// The sockets saw every response sent to them: the per-source counts
	// are not short because of loss.
	if want, _ := nftCounter(t, srvNS, "spoofed"); spoofedPackets != want {
		t.Errorf("the spoofed sources read %d responses, %d were sent to them", spoofedPackets, want)
	}
	// Without the budgets 10,000 requests of 28 and 36 bytes would get 76
	// bytes each.
	if totalReceived >= totalSent {
		t.Errorf("spoofed sources got %d bytes for %d sent: amplified", totalReceived, totalSent)
	}
}
