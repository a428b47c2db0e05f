package lab

import (
	"context"
	"encoding/json"
	"os"
	"regexp"
	"testing"
	"time"
)

// portmapReport is the part of natcheck's report these tests read.
type portmapReport struct {
	DurationMS  int64 `json:"duration_ms"`
	PortMapping *struct {
		Summary           string          `json:"summary"`
		UPnP              portmapProtocol `json:"upnp"`
		NATPMP            portmapProtocol `json:"nat_pmp"`
		PCP               portmapProtocol `json:"pcp"`
		ExternalNotPublic *bool           `json:"external_not_public"`
		Mapped            string          `json:"mapped"`
		MappedExternal    string          `json:"mapped_external"`
		MapError          string          `json:"map_error"`
	} `json:"port_mapping"`
	Verdict struct {
		Peers []struct {
			Peer string `json:"peer"`
			Path string `json:"path"`
		} `json:"peers"`
	} `json:"verdict"`
}

type portmapProtocol struct {
	Answered        bool   `json:"answered"`
	ExternalAddress string `json:"external_address"`
	InboundVerified *bool  `json:"inbound_verified"`
	Error           string `json:"error"`
}

func runPortmap(t *testing.T, l *Lab, args ...string) portmapReport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := l.RunNatcheckWith(ctx, nil, natcheckBinary(t), append(l.NatcheckArgs(), append([]string{"--udp-only", "-4"}, args...)...)...)
	if err != nil {
		t.Fatal(err)
	}
	var pr portmapReport
	if err := json.Unmarshal([]byte(r.Stdout), &pr); err != nil {
		t.Fatalf("%v\n%s", err, r.Stdout)
	}
	if pr.PortMapping == nil {
		t.Fatalf("no port_mapping in the report:\n%s", r.Stdout)
	}
	return pr
}

// TestPortmapNoGateway: nothing on the router speaks a port mapping
// protocol (its input chain drops what it does not expect): detection
// ends within its budget and says so.
func TestPortmapNoGateway(t *testing.T) {
	SkipIfUnavailable(t)
	l := New(t, Options{Mode: Masquerade})
	counted(t)
	r := runPortmap(t, l)
	pm := r.PortMapping
	if pm.Summary != "no port mapping protocol answered" || pm.UPnP.Answered || pm.NATPMP.Answered || pm.PCP.Answered {
		t.Fatalf("port mapping %+v", pm)
	}
	t.Logf("no gateway: %q; run %d ms; errors: upnp %q, nat-pmp %q, pcp %q", pm.Summary, r.DurationMS, pm.UPnP.Error, pm.NATPMP.Error, pm.PCP.Error)
}

// TestPortmapMiniupnpd runs natcheck --portmap against miniupnpd on the
// router, with each protocol on and off, behind masquerade and
// fully-random masquerade; natpmpc and upnpc ask the same gateway.
func TestPortmapMiniupnpd(t *testing.T) {
	SkipIfUnavailable(t)
	if _, err := os.Stat("/usr/sbin/miniupnpd"); err != nil {
		t.Skip("miniupnpd not installed (apt-get install miniupnpd-nftables natpmpc miniupnpc)")
	}
	for _, c := range []struct {
		name     string
		mode     Mode
		m        Miniupnpd
		verified string // protocol whose mapping should let a stranger in; "" none
	}{
		{"masquerade-all", Masquerade, Miniupnpd{UPnP: true, PMP: true, STUN: true}, "pcp"},
		{"masquerade-upnp", Masquerade, Miniupnpd{UPnP: true, STUN: true}, "upnp"},
		{"masquerade-pmp", Masquerade, Miniupnpd{PMP: true, STUN: true}, "pcp"},
		// Behind fully-random masquerade the router's own packets get
		// random ports too, so miniupnpd's STUN test calls its WAN
		// "restrictive or symmetric NAT" and disables forwarding: it
		// answers and refuses every mapping (a refusing gateway). A
		// verified mapping behind fully-random masquerade needs a
		// miniupnpd built with 198.18.0.0/15 out of its reserved list.
		{"symmetric-upnp", Symmetric, Miniupnpd{UPnP: true, STUN: true}, ""},
		{"symmetric-pmp", Symmetric, Miniupnpd{PMP: true, STUN: true}, ""},
		// Stock configuration: the WAN address 198.19.0.1 is in
		// miniupnpd's reserved list, so it answers but maps nothing.
		{"masquerade-stock", Masquerade, Miniupnpd{UPnP: true, PMP: true}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			// Accepting unsolicited input lets miniupnpd's STUN test
			// (CHANGE-REQUEST answers to its own address) see an
			// unrestricted path.
			l := New(t, Options{Mode: c.mode, Input: InputAccept})
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			logPath, err := l.StartMiniupnpd(ctx, c.m)
			if err != nil {
				t.Fatal(err)
			}
			counted(t)
			r := runPortmap(t, l, "--portmap")
			pm := r.PortMapping
			b, _ := os.ReadFile(logPath)
			t.Logf("%s: %+v\nminiupnpd log:\n%s", c.name, *pm, b)
			if pm.UPnP.Answered != c.m.UPnP || pm.NATPMP.Answered != c.m.PMP || pm.PCP.Answered != c.m.PMP {
				t.Errorf("answered: upnp %v nat-pmp %v pcp %v; want %v %v %v", pm.UPnP.Answered, pm.NATPMP.Answered, pm.PCP.Answered, c.m.UPnP, c.m.PMP, c.m.PMP)
			}
			if c.verified != "" {
				if pm.Mapped != c.verified {
					t.Errorf("mapped with %q, want %q (%s)", pm.Mapped, c.verified, pm.MapError)
				}
				got := map[string]portmapProtocol{"upnp": pm.UPnP, "nat-pmp": pm.NATPMP, "pcp": pm.PCP}[c.verified]
				if got.InboundVerified == nil || !*got.InboundVerified {
					t.Errorf("%s inbound_verified %v (%s)", c.verified, got.InboundVerified, got.Error)
				}
				for _, p := range r.Verdict.Peers {
					if p.Peer != "udp-blocked" && p.Path != "direct" {
						t.Errorf("peer %s: %s, want direct with a verified mapping", p.Peer, p.Path)
					}
				}
			} else if pm.Mapped != "" || pm.MapError == "" {
				t.Errorf("miniupnpd with forwarding disabled: mapped %q, map_error %q; want a refusal", pm.Mapped, pm.MapError)
			}
			// The mapping is gone: miniupnpd's chains hold no rule.
			out, _ := l.Command(ctx, l.Router, "nft", "list", "chain", "inet", "filter", "prerouting_miniupnpd").Output()
			if regexp.MustCompile(`dnat`).Match(out) {
				t.Errorf("a mapping is left after natcheck:\n%s", out)
			}
			// Independent clients.
			if c.m.PMP {
				out, _ := l.ClientCommand(ctx, "natpmpc", "-g", RouterLANAddr.String()).CombinedOutput()
				if ip := regexp.MustCompile(`Public IP address : (\S+)`).FindSubmatch(out); ip != nil && string(ip[1]) != pm.NATPMP.ExternalAddress {
					t.Errorf("natpmpc says %s, natcheck %q", ip[1], pm.NATPMP.ExternalAddress)
				}
				t.Logf("natpmpc: %s", out)
			}
			if c.m.UPnP {
				out, _ := l.ClientCommand(ctx, "upnpc", "-s").CombinedOutput()
				if ip := regexp.MustCompile(`ExternalIPAddress = (\S+)`).FindSubmatch(out); ip != nil && string(ip[1]) != pm.UPnP.ExternalAddress {
					t.Errorf("upnpc says %s, natcheck %q", ip[1], pm.UPnP.ExternalAddress)
				}
				t.Logf("upnpc: %s", out)
			}
		})
	}
}
