package portmap

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakePMP is a NAT-PMP and PCP gateway on 127.0.0.1 that speaks the wire
// format written out here by hand (not with this package's encoders).
type fakePMP struct {
	t    *testing.T
	conn *net.UDPConn
	// reply returns the datagrams to answer req with; nil: silence.
	reply func(req []byte) [][]byte
	delay time.Duration
	// from, if set, sends the replies from this socket instead.
	from *net.UDPConn
	mu   sync.Mutex
	reqs [][]byte
}

func newFakePMP(t *testing.T, reply func([]byte) [][]byte) *fakePMP {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	f := &fakePMP{t: t, conn: c, reply: reply}
	done := make(chan struct{})
	t.Cleanup(func() { c.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			req := append([]byte(nil), buf[:n]...)
			f.mu.Lock()
			f.reqs = append(f.reqs, req)
			delay, out := f.delay, f.from
			f.mu.Unlock()
			if out == nil {
				out = c
			}
			replies := f.reply(req)
			time.AfterFunc(delay, func() {
				for _, r := range replies {
					out.WriteToUDPAddrPort(r, from)
				}
			})
		}
	}()
	return f
}

func (f *fakePMP) set(delay time.Duration, from *net.UDPConn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.delay, f.from = delay, from
}

func (f *fakePMP) port() uint16 { return uint16(f.conn.LocalAddr().(*net.UDPAddr).Port) }

func (f *fakePMP) cfg() Config {
	return Config{Gateway4: netip.MustParseAddr("127.0.0.1"), PMPPort: f.port(), SSDPPort: closedPort(f.t), NoMulticast: true}
}

func (f *fakePMP) requests() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]byte(nil), f.reqs...)
}

// closedPort returns a loopback UDP port nothing listens on.
func closedPort(t *testing.T) uint16 {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	p := c.LocalAddr().(*net.UDPAddr).Port
	c.Close()
	return uint16(p)
}

// pmpExternal is a NAT-PMP external address reply (RFC 6886 3.2).
func pmpExternal(code uint16, ip [4]byte) []byte {
	b := []byte{0, 128, byte(code >> 8), byte(code), 0, 0, 0, 7}
	return append(b, ip[:]...)
}

// pmpMap is a NAT-PMP UDP mapping reply (RFC 6886 3.3).
func pmpMap(code, internal, external uint16, lifetime uint32) []byte {
	b := make([]byte, 16)
	b[1] = 129
	binary.BigEndian.PutUint16(b[2:], code)
	binary.BigEndian.PutUint16(b[8:], internal)
	binary.BigEndian.PutUint16(b[10:], external)
	binary.BigEndian.PutUint32(b[12:], lifetime)
	return b
}

// pcpResp answers a PCP request: response bit, result code, lifetime,
// and for MAP the request's nonce, protocol and internal port with the
// given external port and IPv4 address (RFC 6887 7.2, 11.1).
func pcpResp(req []byte, code byte, lifetime uint32, extPort uint16, extIP [4]byte) []byte {
	n := 24
	if req[1] == 1 {
		n = 60
	}
	b := make([]byte, n)
	b[0] = 2
	b[1] = 0x80 | req[1]
	b[3] = code
	binary.BigEndian.PutUint32(b[4:], lifetime)
	binary.BigEndian.PutUint32(b[8:], 1234)
	if n == 60 && len(req) >= 60 {
		copy(b[24:44], req[24:44])
		binary.BigEndian.PutUint16(b[42:], extPort)
		b[54], b[55] = 0xff, 0xff
		copy(b[56:60], extIP[:])
	}
	return b
}

// both speaks NAT-PMP and PCP, granting every request.
func both(req []byte) [][]byte {
	switch {
	case len(req) == 2 && req[0] == 0 && req[1] == 0:
		return [][]byte{pmpExternal(0, [4]byte{203, 0, 113, 9})}
	case len(req) == 12 && req[0] == 0 && req[1] == 1:
		lt := binary.BigEndian.Uint32(req[8:])
		return [][]byte{pmpMap(0, binary.BigEndian.Uint16(req[4:]), 40000, lt)}
	case len(req) >= 24 && req[0] == 2:
		return [][]byte{pcpResp(req, 0, binary.BigEndian.Uint32(req[4:]), 40001, [4]byte{203, 0, 113, 9})}
	}
	return nil
}

// fakeIGD is a UPnP IGD v1 on 127.0.0.1: an SSDP responder and an HTTP
// server with a device description and a WANIPConnection:1 control URL.
type fakeIGD struct {
	ssdp     *net.UDPConn
	http     *http.Server
	httpAddr string
	ext      string
	// desc, if set, is served as the device description instead of
	// igdDesc; redirect, if set, is where /desc.xml redirects to.
	desc, redirect string
	// addFault, if nonzero, is the UPnP error the first AddPortMapping gets.
	addFault int
	// addFaults, if not empty, are the UPnP errors of the next
	// AddPortMapping calls, one each (0: success; -1: no answer, the
	// request held until the client gives up).
	addFaults []int
	mu        sync.Mutex
	actions   []string
}

const igdDesc = `<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0"><specVersion><major>1</major><minor>0</minor></specVersion>
<device><deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:1</deviceType><friendlyName>fake</friendlyName>
<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANDevice:1</deviceType>
<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:1</deviceType>
<serviceList><service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType>
<serviceId>urn:upnp-org:serviceId:WANIPConn1</serviceId><controlURL>/ctl</controlURL><eventSubURL>/evt</eventSubURL><SCPDURL>/scpd.xml</SCPDURL></service></serviceList>
</device></deviceList></device></deviceList></device></root>`

func soapBody(inner string) string {
	return `<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>` + inner + `</s:Body></s:Envelope>`
}

func newFakeIGD(t *testing.T, ext string) *fakeIGD {
	t.Helper()
	f := &fakeIGD{ext: ext}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.httpAddr = ln.Addr().String()
	mux := http.NewServeMux()
	mux.HandleFunc("/desc.xml", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		desc, redirect := cmp.Or(f.desc, igdDesc), f.redirect
		f.mu.Unlock()
		if redirect != "" {
			http.Redirect(w, r, redirect, http.StatusFound)
			return
		}
		io.WriteString(w, desc)
	})
	mux.HandleFunc("/ctl", func(w http.ResponseWriter, r *http.Request) {
		action := r.Header.Get("SOAPACTION")
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		name := action[strings.Index(action, "#")+1 : len(action)-1]
		f.actions = append(f.actions, name+" "+string(body))
		first := len(f.actions) == 1 || !strings.Contains(strings.Join(f.actions[:len(f.actions)-1], "\n"), "AddPortMapping ")
		fault := f.addFault
		if name == "AddPortMapping" && len(f.addFaults) > 0 {
			fault, first = f.addFaults[0], true
			f.addFaults = f.addFaults[1:]
		}
		f.mu.Unlock()
		ns := "urn:schemas-upnp-org:service:WANIPConnection:1"
		w.Header().Set("Content-Type", `text/xml; charset="utf-8"`)
		switch name {
		case "GetExternalIPAddress":
			io.WriteString(w, soapBody(`<u:GetExternalIPAddressResponse xmlns:u="`+ns+`"><NewExternalIPAddress>`+f.ext+`</NewExternalIPAddress></u:GetExternalIPAddressResponse>`))
		case "AddPortMapping":
			if fault < 0 && first {
				<-r.Context().Done() // the answer is lost
				return
			}
			if fault != 0 && first {
				w.WriteHeader(500)
				io.WriteString(w, soapBody(fmt.Sprintf(`<s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail><UPnPError xmlns="urn:schemas-upnp-org:control-1-0"><errorCode>%d</errorCode><errorDescription>refused</errorDescription></UPnPError></detail></s:Fault>`, fault)))
				return
			}
			io.WriteString(w, soapBody(`<u:AddPortMappingResponse xmlns:u="`+ns+`"/>`))
		case "DeletePortMapping":
			io.WriteString(w, soapBody(`<u:DeletePortMappingResponse xmlns:u="`+ns+`"/>`))
		default:
			w.WriteHeader(500)
		}
	})
	f.http = &http.Server{Handler: mux}
	go f.http.Serve(ln)
	t.Cleanup(func() { f.http.Close() })
	f.ssdp, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { f.ssdp.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := f.ssdp.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			req := string(buf[:n])
			if !strings.HasPrefix(req, "M-SEARCH * HTTP/1.1\r\n") || !strings.Contains(req, "InternetGatewayDevice:1") {
				continue
			}
			resp := "HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n" +
				"USN: uuid:fake::urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nEXT:\r\nSERVER: fake UPnP/1.1\r\n" +
				"LOCATION: http://" + f.httpAddr + "/desc.xml\r\n\r\n"
			f.ssdp.WriteToUDPAddrPort([]byte(resp), from)
		}
	}()
	return f
}

func (f *fakeIGD) cfg(t *testing.T) Config {
	return Config{Gateway4: netip.MustParseAddr("127.0.0.1"), SSDPPort: uint16(f.ssdp.LocalAddr().(*net.UDPAddr).Port),
		PMPPort: closedPort(t), NoMulticast: true}
}

func (f *fakeIGD) calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.actions...)
}
