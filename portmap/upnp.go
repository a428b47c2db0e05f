package portmap

import (
	"bufio"
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/huin/goupnp"
	"github.com/huin/goupnp/dcps/internetgateway2"
	"github.com/huin/goupnp/soap"
)

// SSDP (UPnP Device Architecture 1.1 section 1.3.2).
const ssdpMulticast = "239.255.255.250:1900"

var igdTargets = []string{
	"urn:schemas-upnp-org:device:InternetGatewayDevice:2",
	"urn:schemas-upnp-org:device:InternetGatewayDevice:1",
}

func ssdpSearch(st string) []byte {
	return []byte("M-SEARCH * HTTP/1.1\r\nHOST: " + ssdpMulticast + "\r\nST: " + st +
		"\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\n\r\n")
}

// parseSSDP parses a search response from addr and returns its LOCATION.
// The response must be 200, name an InternetGatewayDevice (or one of its
// WAN connection services) and point at an http URL on addr itself, so that
// a reply cannot send natcheck's control requests to a third host.
func parseSSDP(b []byte, from netip.Addr) (*url.URL, error) {
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(b)), nil)
	if err != nil {
		return nil, fmt.Errorf("SSDP reply is not an HTTP response: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("SSDP reply has status %q", resp.Status)
	}
	st := resp.Header.Get("ST")
	if !strings.Contains(st, "InternetGatewayDevice") && !strings.Contains(st, ":WANIPConnection:") && !strings.Contains(st, ":WANPPPConnection:") {
		return nil, fmt.Errorf("SSDP reply is for %q, not an Internet gateway", st)
	}
	loc := resp.Header.Get("LOCATION")
	u, err := url.Parse(loc)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("SSDP reply has LOCATION %q, not an http URL", loc)
	}
	host, err := netip.ParseAddr(u.Hostname())
	if err != nil || !sameAddr(host, from) {
		return nil, fmt.Errorf("SSDP reply from %s has LOCATION on another host (%q)", from, u.Host)
	}
	return u, nil
}

// discoverIGD sends the M-SEARCH to gw and (unless disabled) to the SSDP
// multicast group, and returns the first IGD location gw answers with.
func discoverIGD(ctx context.Context, cfg Config, gw netip.Addr) (*url.URL, error) {
	conn, err := net.ListenUDP("udp4", nil)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	dests := []netip.AddrPort{netip.AddrPortFrom(gw, cfg.ssdpPort())}
	if !cfg.NoMulticast {
		dests = append(dests, netip.MustParseAddrPort(ssdpMulticast))
	}
	send := func() error {
		var errs []error
		for _, d := range dests {
			for _, st := range igdTargets {
				if _, err := conn.WriteToUDPAddrPort(ssdpSearch(st), d); err != nil {
					errs = append(errs, err)
				}
			}
		}
		if len(errs) == len(dests)*len(igdTargets) {
			return errs[0]
		}
		return nil
	}
	var found *url.URL
	accept := func(b []byte, from netip.AddrPort) error {
		if !sameAddr(from.Addr(), gw) {
			return skip("a reply from %s, not the gateway %s", from, gw)
		}
		u, err := parseSSDP(b, from.Addr())
		if err != nil {
			return skip("%s", err)
		}
		found = u
		return nil
	}
	wrapped := func() error {
		if err := send(); err != nil {
			return fmt.Errorf("sending the SSDP search: %w", err)
		}
		return nil
	}
	if _, err := await(ctx, conn, wrapped, accept, "SSDP answer", gw.String()); err != nil {
		return nil, err
	}
	return found, nil
}

// maxUPnPBody bounds a device description or SOAP answer: real ones are a
// few KiB.
const maxUPnPBody = 1 << 20

// gatewayTransport carries natcheck's UPnP requests to the gateway only:
// a device description's URLBase or controlURL, or a redirect, that names
// another host is refused, so that whoever answers for the gateway cannot
// aim natcheck's requests at a third host. It uses no proxy (the gateway is
// on the LAN) and bounds the answers' size.
type gatewayTransport struct {
	gw   netip.Addr
	base http.RoundTripper
}

func (t gatewayTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if host, err := netip.ParseAddr(req.URL.Hostname()); err != nil || !sameAddr(host, t.gw) || req.URL.Scheme != "http" {
		return nil, fmt.Errorf("the gateway's description points at %s://%s, not at the gateway %s", req.URL.Scheme, req.URL.Host, t.gw)
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = &limitedBody{ReadCloser: resp.Body, left: maxUPnPBody}
	return resp, nil
}

// limitedBody fails a read that goes past left bytes.
type limitedBody struct {
	io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.ReadCloser.Read(p)
	if int64(n) > b.left {
		n = int(b.left)
		b.left = 0
		return n, fmt.Errorf("the gateway's answer is larger than %d bytes", maxUPnPBody)
	}
	b.left -= int64(n)
	return n, err
}

// gatewayClient is the HTTP client of every UPnP request to gw; the
// callers' contexts bound its time.
func gatewayClient(gw netip.Addr) http.Client {
	return http.Client{
		Transport: gatewayTransport{gw: gw, base: &http.Transport{
			Proxy: nil, DisableKeepAlives: true, MaxResponseHeaderBytes: 64 << 10,
		}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// deviceByURL reads the root device description at loc, on gw, as
// goupnp.DeviceByURLCtx does but through gatewayClient, and resolves its
// URLs against loc (URLBase, deprecated since UPnP 1.1, is ignored).
func deviceByURL(ctx context.Context, gw netip.Addr, loc *url.URL) (*goupnp.RootDevice, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, loc.String(), nil)
	if err != nil {
		return nil, err
	}
	hc := gatewayClient(gw)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %s from %s", resp.Status, loc)
	}
	root := new(goupnp.RootDevice)
	d := xml.NewDecoder(resp.Body)
	d.DefaultSpace = goupnp.DeviceXMLNamespace
	d.CharsetReader = goupnp.CharsetReaderDefault
	if err := d.Decode(root); err != nil {
		return nil, err
	}
	root.SetURLBase(loc)
	return root, nil
}

// igdClient is what WANIPConnection1, WANIPConnection2 and
// WANPPPConnection1 have in common.
type igdClient interface {
	GetExternalIPAddressCtx(ctx context.Context) (string, error)
	AddPortMappingCtx(ctx context.Context, remoteHost string, externalPort uint16, protocol string, internalPort uint16,
		internalClient string, enabled bool, description string, leaseDuration uint32) error
	DeletePortMappingCtx(ctx context.Context, remoteHost string, externalPort uint16, protocol string) error
	GetServiceClient() *goupnp.ServiceClient
}

// igdConnect discovers the IGD on gw and returns a client of its first WAN
// connection service (IGD v2 before v1, IP before PPP).
func igdConnect(ctx context.Context, cfg Config, gw netip.Addr) (igdClient, error) {
	loc, err := discoverIGD(ctx, cfg, gw)
	if err != nil {
		return nil, err
	}
	root, err := deviceByURL(ctx, gw, loc)
	if err != nil {
		return nil, fmt.Errorf("reading the gateway's device description: %w", err)
	}
	var c igdClient
	if cs, err := internetgateway2.NewWANIPConnection2ClientsFromRootDevice(root, loc); err == nil && len(cs) > 0 {
		c = cs[0]
	} else if cs, err := internetgateway2.NewWANIPConnection1ClientsFromRootDevice(root, loc); err == nil && len(cs) > 0 {
		c = cs[0]
	} else if cs, err := internetgateway2.NewWANPPPConnection1ClientsFromRootDevice(root, loc); err == nil && len(cs) > 0 {
		c = cs[0]
	}
	if c != nil {
		c.GetServiceClient().SOAPClient.HTTPClient = gatewayClient(gw)
		return c, nil
	}
	return nil, fmt.Errorf("the gateway's device description at %s has no WANIPConnection or WANPPPConnection service", loc)
}

func detectUPnP(ctx context.Context, cfg Config, gw netip.Addr) ProtocolResult {
	res := ProtocolResult{Gateway: gw}
	if !gw.Is4() {
		res.Error = "no IPv4 gateway (natcheck searches UPnP over IPv4)"
		return res
	}
	c, err := igdConnect(ctx, cfg, gw)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	res.Answered = true
	ext, err := c.GetExternalIPAddressCtx(ctx)
	if err != nil {
		res.Error = "GetExternalIPAddress: " + err.Error()
		return res
	}
	// The gateway's claim is reported as is; whether it is public is the
	// caller's judgement. An empty answer means "not connected".
	if a, err := netip.ParseAddr(strings.TrimSpace(ext)); err == nil {
		res.External = a.Unmap()
	} else if ext != "" {
		res.Error = fmt.Sprintf("GetExternalIPAddress: %q is not an IP address", ext)
	}
	return res
}

// UPnP error codes a mapping retry depends on (IGD WANIPConnection:2
// section 2.4.16).
const (
	upnpOnlyPermanentLeases = 725
	upnpConflict            = 718
)

func upnpCode(err error) int {
	var f *soap.SOAPFaultError
	if errors.As(err, &f) {
		return f.Detail.UPnPError.Errorcode
	}
	return 0
}

func mapUPnP(ctx context.Context, cfg Config, gw netip.Addr, req MapRequest) (*Mapping, error) {
	c, err := igdConnect(ctx, cfg, gw)
	if err != nil {
		return nil, err
	}
	// The internal client is this host's address towards the gateway.
	probe, err := dial(netip.AddrPortFrom(gw, cfg.ssdpPort()))
	if err != nil {
		return nil, err
	}
	local := localAddr(probe)
	probe.Close()
	var ext netip.Addr
	if s, err := c.GetExternalIPAddressCtx(ctx); err == nil {
		ext, _ = netip.ParseAddr(strings.TrimSpace(s))
	}
	lease := seconds(req.Lifetime)
	port := req.InternalPort
	var mapped []uint16
	del := func(ctx context.Context) error {
		var errs []error
		for _, p := range mapped {
			if err := c.DeletePortMappingCtx(ctx, "", p, "UDP"); err != nil {
				errs = append(errs, fmt.Errorf("DeletePortMapping %d: %w", p, err))
			}
		}
		return errors.Join(errs...)
	}
	for attempt := 0; attempt < 3; attempt++ {
		err = c.AddPortMappingCtx(ctx, "", port, "UDP", req.InternalPort, local.String(), true, "natcheck", lease)
		// A fault is the gateway's answer: no mapping was made, and one
		// that conflicts (718) is someone else's, not to be deleted. Any
		// other failure may have lost the answer to a mapping made.
		var fault *soap.SOAPFaultError
		if !errors.As(err, &fault) {
			mapped = append(mapped, port)
		}
		if err == nil {
			break
		}
		switch upnpCode(err) {
		case upnpOnlyPermanentLeases:
			// A mapping without a lease outlives natcheck if it is killed
			// before deleting it: never make one.
			return nil, errors.New("AddPortMapping: the gateway grants only permanent UPnP mappings (error 725), which would outlive natcheck if it were killed; natcheck makes none (NAT-PMP or PCP, if the gateway has them, map for 2 minutes)")
		case upnpConflict:
			port = uint16(1024 + rand.IntN(65535-1024))
		default:
			attempt = 3
		}
	}
	if err != nil {
		cleanup(ctx, cfg, del)
		return nil, fmt.Errorf("AddPortMapping: %w", err)
	}
	mapped = mapped[len(mapped)-1:]
	lifetime := time.Duration(lease) * time.Second
	return &Mapping{
		Internal: netip.AddrPortFrom(local, req.InternalPort),
		External: netip.AddrPortFrom(ext.Unmap(), port),
		Lifetime: lifetime,
		del:      del,
	}, nil
}
