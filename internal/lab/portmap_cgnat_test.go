package lab

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestPortmapCGNAT runs natcheck --portmap against miniupnpd (UPnP,
// NAT-PMP and PCP on) on a home router whose WAN lies behind a
// carrier-grade NAT (CGNATLab): the gateway that answers the port mapping
// protocols is not the last NAT before the internet, so no mapping it
// makes lets a stranger on the internet in, whatever it claims.
//
// What Debian's miniupnpd 2.3.1 does there (read from its source and seen
// here): it never claims an external address in its reserved list, which
// holds RFC 6598's 100.64.0.0/10. With its WAN in 100.64.0.0/24 and the
// stock configuration it logs "Port forwarding is impossible", answers
// NAT-PMP's address request with result 3 (network failure) and UPnP's
// GetExternalIPAddress with an empty address, and refuses every mapping.
// With ext_perform_stun it learns the CGN's address from STUN, finds that
// the CGN filters (its CHANGE-REQUEST answers do not come through), claims
// the CGN's address and still refuses every mapping. Only with a WAN
// address outside its list (here 22.0.0.0/24: unadvertised space, as some
// carriers use for their inside network) does it claim its own, private,
// WAN address and map: then natcheck sees a claimed address that is not
// the public one, and the mapping's inbound check dies at the CGN.
func TestPortmapCGNAT(t *testing.T) {
	SkipIfUnavailable(t)
	if _, err := os.Stat("/usr/sbin/miniupnpd"); err != nil {
		t.Skip("miniupnpd not installed (apt-get install miniupnpd-nftables natpmpc miniupnpc)")
	}
	bin := natcheckBinary(t)
	unlisted := netip.MustParsePrefix("22.0.0.0/24")
	for _, c := range []struct {
		name   string
		inside netip.Prefix
		stun   bool
		dmz    bool // the outer NAT forwards everything to the router
		// claimed is the external address the gateway claims over UPnP
		// and NAT-PMP ("" none); notPublic natcheck's external_not_public
		// ("" null); mapped whether the gateway grants a mapping, inbound
		// whether a stranger's packet gets through it; log a line
		// miniupnpd must write.
		claimed, notPublic string
		mapped, inbound    bool
		log                string
	}{
		{name: "shared-stock", inside: DefaultCGNATInside, claimed: "", notPublic: "",
			log: "Reserved / private IP address 100.64.0.2 on ext interface wan0: Port forwarding is impossible"},
		{name: "shared-stun", inside: DefaultCGNATInside, stun: true, claimed: RouterWANAddr.String(), notPublic: "false",
			log: "is now behind restrictive or symmetric NAT with public IP address 198.19.0.1"},
		{name: "unlisted-stock", inside: unlisted, claimed: "22.0.0.2", notPublic: "true", mapped: true},
		// The outer NAT as a modem with the router as its exposed host:
		// miniupnpd's STUN test gets its CHANGE-REQUEST answers, it claims
		// the public address and maps, and the mapping works from the
		// internet.
		{name: "shared-stun-dmz", inside: DefaultCGNATInside, stun: true, dmz: true, claimed: RouterWANAddr.String(), notPublic: "false", mapped: true, inbound: true,
			log: "is now behind unrestricted full-cone NAT 1:1 with public IP address 198.19.0.1"},
		// The same modem, miniupnpd claiming its own (unlisted) WAN
		// address: not the public one, yet the mapping works, and the
		// inbound proof wins: the peer table is folded.
		{name: "unlisted-dmz", inside: unlisted, dmz: true, claimed: "22.0.0.2", notPublic: "true", mapped: true, inbound: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := NewCGNAT(t, CGNATOptions{Inside: c.inside, DMZ: c.dmz})
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			// The double NAT is in the path: STUN sees the CGN's address.
			b, err := l.Binding(l.Client, netip.AddrPortFrom(ClientAddr, 0), l.STUN, 2*time.Second)
			if err != nil || b.Mapped.Addr() != RouterWANAddr {
				t.Fatalf("binding through the CGN: %+v, %v; want the CGN's address %v", b, err, RouterWANAddr)
			}
			logPath, err := l.StartMiniupnpd(ctx, Miniupnpd{UPnP: true, PMP: true, STUN: c.stun})
			if err != nil {
				t.Fatal(err)
			}
			counted(t)
			r, err := l.RunNatcheckWith(ctx, nil, bin, append(l.NatcheckArgs(), "--udp-only", "-4", "--portmap")...)
			if err != nil {
				t.Fatal(err)
			}
			var rep portmapReport
			if err := json.Unmarshal([]byte(r.Stdout), &rep); err != nil || rep.PortMapping == nil {
				t.Fatalf("report: %v\n%s", err, r.Stdout)
			}
			pm := rep.PortMapping
			mlog, _ := os.ReadFile(logPath)
			defer func() {
				if t.Failed() {
					t.Logf("natcheck:\n%s\nstderr: %s\nminiupnpd log:\n%s", r.Stdout, r.Stderr, mlog)
				}
			}()
			t.Logf("%s: summary %q; external upnp %q nat-pmp %q pcp %q; external_not_public %s; mapped %q %q; inbound upnp %s nat-pmp %s pcp %s; map_error %q",
				c.name, pm.Summary, pm.UPnP.ExternalAddress, pm.NATPMP.ExternalAddress, pm.PCP.ExternalAddress, triString(pm.ExternalNotPublic),
				pm.Mapped, pm.MappedExternal, triString(pm.UPnP.InboundVerified), triString(pm.NATPMP.InboundVerified), triString(pm.PCP.InboundVerified), pm.MapError)
			if c.log != "" && !strings.Contains(string(mlog), c.log) {
				t.Errorf("miniupnpd's log has no %q", c.log)
			}
			if !pm.UPnP.Answered || !pm.NATPMP.Answered || !pm.PCP.Answered {
				t.Errorf("answered: upnp %v nat-pmp %v pcp %v; want all", pm.UPnP.Answered, pm.NATPMP.Answered, pm.PCP.Answered)
			}
			if pm.UPnP.ExternalAddress != c.claimed || pm.NATPMP.ExternalAddress != c.claimed {
				t.Errorf("external address: upnp %q, nat-pmp %q; the gateway claims %q", pm.UPnP.ExternalAddress, pm.NATPMP.ExternalAddress, c.claimed)
			}
			if got := triString(pm.ExternalNotPublic); got != cmpOr(c.notPublic, "null") {
				t.Errorf("external_not_public %s, want %s", got, cmpOr(c.notPublic, "null"))
			}
			if c.mapped {
				got := map[string]portmapProtocol{"upnp": pm.UPnP, "nat-pmp": pm.NATPMP, "pcp": pm.PCP}[pm.Mapped]
				ext, err := netip.ParseAddrPort(pm.MappedExternal)
				switch {
				case pm.Mapped == "":
					t.Errorf("no mapping made (%s); miniupnpd grants them here", pm.MapError)
				case err != nil || ext.Addr().String() != c.claimed:
					t.Errorf("mapped_external %q, want on the gateway's address %s", pm.MappedExternal, c.claimed)
				case got.InboundVerified == nil || *got.InboundVerified != c.inbound:
					t.Errorf("%s inbound_verified %s, want %v: the outer NAT drops every unsolicited packet, unless it is set to forward them (DMZ %v)", pm.Mapped, triString(got.InboundVerified), c.inbound, c.dmz)
				}
				if got := strings.Contains(pm.Summary, "not the public one"); got != (c.notPublic == "true") {
					t.Errorf("summary %q: says the external address is not the public one: %v, want %v", pm.Summary, got, c.notPublic == "true")
				}
			} else {
				if pm.Mapped != "" || pm.MapError == "" {
					t.Errorf("mapped %q, map_error %q: miniupnpd refuses every mapping here", pm.Mapped, pm.MapError)
				}
				for name, p := range map[string]portmapProtocol{"upnp": pm.UPnP, "nat-pmp": pm.NATPMP, "pcp": pm.PCP} {
					if p.InboundVerified != nil {
						t.Errorf("%s inbound_verified %s without a mapping", name, triString(p.InboundVerified))
					}
				}
			}
			// Behind two port-keeping, address-and-port-filtering NATs a
			// symmetric peer needs a relay, mapping or not; with a mapping
			// that works from the internet, every peer that has UDP
			// reaches this host.
			for _, p := range rep.Verdict.Peers {
				switch {
				case !c.inbound:
					if p.Peer == "symmetric" && p.Path != "relay" {
						t.Errorf("peer symmetric: %s, want relay: the gateway's mappings help nobody on the internet", p.Path)
					}
				default:
					// Verified from the internet, whatever the gateway
					// claims: the proof came from beyond both NATs.
					if p.Peer != "udp-blocked" && p.Path != "direct" {
						t.Errorf("peer %s: %s, want direct with a mapping verified from the internet", p.Peer, p.Path)
					}
				}
			}
			var reasons struct {
				Reasons []string `json:"reasons"`
			}
			json.Unmarshal([]byte(r.Stdout), &reasons)
			all := strings.Join(reasons.Reasons, "\n")
			if c.inbound && strings.Contains(all, "helps nobody") {
				t.Errorf("a mapping verified from the internet, yet a reason says it helps nobody:\n%s", all)
			}
			// Stock miniupnpd on a private WAN address answers NAT-PMP
			// with result 3, network failure: the double NAT's only trace.
			if c.name == "shared-stock" && !strings.Contains(all, "probably lies beyond it") {
				t.Errorf("NAT-PMP network failure behind a CGN without the double NAT hint; reasons:\n%s", all)
			}
			// The mapping is gone: miniupnpd's chains hold no rule.
			out, _ := l.Command(ctx, l.Router, "nft", "list", "chain", "inet", "filter", "prerouting_miniupnpd").Output()
			if regexp.MustCompile(`dnat`).Match(out) {
				t.Errorf("a mapping is left after natcheck:\n%s", out)
			}

			// The text report says it where the gateway claims a private
			// address.
			txt, err := l.ClientCommand(ctx, bin, "--stun", l.STUN.String(), "--stun", l.PlainSTUN.String(), "--timeout", "5s", "--udp-only", "-4").Output()
			if err != nil {
				t.Fatalf("natcheck, text report: %v\n%s", err, txt)
			}
			const warn = "The gateway's external address is not the public one"
			if got := strings.Contains(string(txt), warn); got != (c.notPublic == "true") {
				t.Errorf("text report says %q: %v, want %v:\n%s", warn, got, c.notPublic == "true", txt)
			}

			// natpmpc, an independent client, asks the same gateway.
			out, _ = l.ClientCommand(ctx, "natpmpc", "-g", RouterLANAddr.String()).CombinedOutput()
			ip := regexp.MustCompile(`Public IP address : (\S+)`).FindSubmatch(out)
			switch {
			case ip == nil && c.claimed == "":
				if !strings.Contains(string(out), "network failure") || !strings.Contains(pm.NATPMP.Error, "network failure") {
					t.Errorf("natpmpc and natcheck disagree on the refusal: natpmpc %q, natcheck %q", out, pm.NATPMP.Error)
				}
			case ip == nil || string(ip[1]) != pm.NATPMP.ExternalAddress:
				t.Errorf("natpmpc says %q, natcheck %q", out, pm.NATPMP.ExternalAddress)
			}
			t.Logf("natpmpc: %s", strings.TrimSpace(string(out)))
			out, _ = l.ClientCommand(ctx, "upnpc", "-s").CombinedOutput()
			if ip := regexp.MustCompile(`ExternalIPAddress = (\S+)`).FindSubmatch(out); ip != nil && string(ip[1]) != pm.UPnP.ExternalAddress {
				t.Errorf("upnpc says %s, natcheck %q", ip[1], pm.UPnP.ExternalAddress)
			}
			if c.mapped {
				checkCGNMapping(ctx, t, l, c.inbound)
			}
		})
	}
}

// checkCGNMapping makes a NAT-PMP mapping with natpmpc, as an application
// would, and shows by hand what natcheck's inbound check should conclude:
// a packet from the CGN's inside network to the router's WAN address
// arrives through the mapping; a stranger's packet from the internet to
// the CGN's address and the same port arrives too when the outer NAT
// forwards it (strangerIn, DMZ), and otherwise dies at the CGN.
func checkCGNMapping(ctx context.Context, t *testing.T, l *CGNATLab, strangerIn bool) {
	var client *net.UDPConn
	err := InNetns(l.Client, func() (err error) {
		client, err = net.ListenUDP("udp4", &net.UDPAddr{IP: ClientAddr.AsSlice()})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	port := client.LocalAddr().(*net.UDPAddr).Port
	out, err := l.ClientCommand(ctx, "natpmpc", "-g", RouterLANAddr.String(), "-a", strconv.Itoa(port), strconv.Itoa(port), "udp", "60").CombinedOutput()
	m := regexp.MustCompile(`Mapped public port (\d+) protocol UDP to local port (\d+)`).FindSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("natpmpc -a: %v: %s", err, out)
	}
	public, _ := strconv.Atoi(string(m[1]))
	defer l.ClientCommand(context.Background(), "natpmpc", "-g", RouterLANAddr.String(), "-a", strconv.Itoa(public), strconv.Itoa(port), "udp", "0").Run()
	send := func(ns string, from netip.Addr, to netip.AddrPort, msg string) {
		t.Helper()
		var c *net.UDPConn
		if err := InNetns(ns, func() (err error) {
			c, err = net.ListenUDP("udp4", &net.UDPAddr{IP: from.AsSlice()})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.WriteToUDPAddrPort([]byte(msg), to); err != nil {
			t.Fatal(err)
		}
	}
	recv := func() string {
		t.Helper()
		buf := make([]byte, 64)
		client.SetReadDeadline(time.Now().Add(3 * time.Second))
		n, _, err := client.ReadFromUDPAddrPort(buf)
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatal(err)
		}
		return string(buf[:n])
	}
	// A stranger on the internet, to the CGN's address and the mapped
	// port. Without DMZ the CGN's input chain drops it and counts it as
	// unsolicited (nothing else is sending now).
	stranger := netip.AddrPortFrom(RouterWANAddr, uint16(public))
	before, err := l.CGNCounters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	send(l.Internet, STUNAltAddr, stranger, "stranger")
	if strangerIn {
		if got := recv(); got != "stranger" {
			t.Errorf("a stranger's packet to %v did not arrive through the DMZ and the NAT-PMP mapping (got %q)", stranger, got)
		}
	} else {
		var after map[string]int64
		for i := 0; i < 100; i++ {
			if after, err = l.CGNCounters(ctx); err != nil || after["unsolicited"] > before["unsolicited"] {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if after["unsolicited"] <= before["unsolicited"] {
			t.Errorf("the CGN did not count the stranger's packet to %v as unsolicited: %v then %v", stranger, before, after)
		} else {
			t.Logf("a stranger's packet to %v died at the CGN (unsolicited %d -> %d)", stranger, before["unsolicited"], after["unsolicited"])
		}
	}
	// From the CGN's inside network, to the router's own WAN address: the
	// mapping works there. It arrives, and (without DMZ) the stranger's
	// packet sent before it did not.
	inside := netip.AddrPortFrom(l.RouterWAN, uint16(public))
	send(l.CGN, l.CGNInside, inside, "inside")
	switch got := recv(); {
	case got == "":
		t.Errorf("a packet from the CGN's inside network to %v did not arrive through the NAT-PMP mapping", inside)
	case got != "inside":
		t.Errorf("received %q, want the inside packet: the stranger's packet came through the CGN", got)
	default:
		t.Logf("natpmpc mapping %v -> %v:%d: a packet from the CGN's inside network arrives", inside, ClientAddr, port)
	}
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
