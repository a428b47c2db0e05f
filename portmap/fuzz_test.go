package portmap

import (
	"net/netip"
	"strings"
	"testing"
)

var stringsReader = strings.NewReader

func FuzzNATPMP(f *testing.F) {
	f.Add(pmpExternal(0, [4]byte{1, 2, 3, 4}))
	f.Add(pmpMap(0, 5000, 6000, 60))
	f.Add([]byte{0, 128, 0, 3})
	f.Add([]byte{2, 128})
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := parseNATPMPExternal(b)
		if err == nil && (!a.Is4() || len(b) < 12) {
			t.Fatalf("accepted %x as %v", b, a)
		}
		m, err := parseNATPMPMap(b, 5000)
		if err == nil && (m.internal != 5000 || len(b) < 16) {
			t.Fatalf("accepted %x as %+v", b, m)
		}
	})
}

func FuzzPCP(f *testing.F) {
	client := netip.MustParseAddr("192.168.1.2")
	var nonce [12]byte
	copy(nonce[:], "abcdefghijkl")
	req := pcpMapRequest(client, nonce, 5000, 5000, 60)
	f.Add(pcpResp(req, 0, 60, 6000, [4]byte{1, 2, 3, 4}))
	f.Add(pcpResp(pcpAnnounceRequest(client), 0, 0, 0, [4]byte{}))
	f.Add(pcpResp(req, 8, 0, 0, [4]byte{})[:24])
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parsePCP(b, pcpOpMap, nonce, 5000)
		if err == nil && (r.nonce != nonce || r.internal != 5000 || len(b) < pcpMapLen) {
			t.Fatalf("accepted %x as %+v", b, r)
		}
		if _, err := parsePCP(b, pcpOpAnnounce, [12]byte{}, 0); err == nil && (len(b) < 24 || b[1] != 0x80) {
			t.Fatalf("accepted %x as an ANNOUNCE response", b)
		}
	})
}

func FuzzSSDP(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nLOCATION: http://192.168.1.1:5000/rootDesc.xml\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nST: upnp:rootdevice\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 404 Not Found\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:2\r\nLOCATION: http://10.9.9.9/x\r\n\r\n"))
	from := netip.MustParseAddr("192.168.1.1")
	f.Fuzz(func(t *testing.T, b []byte) {
		u, err := parseSSDP(b, from)
		if err != nil {
			return
		}
		if u.Scheme != "http" || u.Hostname() != "192.168.1.1" {
			t.Fatalf("accepted LOCATION %v from %x", u, b)
		}
	})
}

func FuzzRoute(f *testing.F) {
	f.Add("Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\neth0\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\n")
	f.Fuzz(func(t *testing.T, s string) {
		// Must not panic; an answer must be a usable address.
		if a, err := parseRoute4(stringsReader(s)); err == nil && (!a.Is4() || a.IsUnspecified()) {
			t.Fatalf("got %v", a)
		}
		if a, err := parseRoute6(stringsReader(s)); err == nil && (!a.Is6() || a.IsUnspecified()) {
			t.Fatalf("got %v", a)
		}
	})
}
