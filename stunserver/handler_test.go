package stunserver

import (
	"encoding/binary"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/pion/stun/v4"

	natstun "github.com/natcheck/natcheck/stun"
)

// testHandler is a dual-address handler with documentation addresses
// (RFC 5737): P = 192.0.2.10, A = 192.0.2.20, p = 3478, a = 3479.
func testHandler() *handler {
	return &handler{
		addrs: [4]netip.AddrPort{
			sockPP: netip.MustParseAddrPort("192.0.2.10:3478"),
			sockPA: netip.MustParseAddrPort("192.0.2.10:3479"),
			sockAP: netip.MustParseAddrPort("192.0.2.20:3478"),
			sockAA: netip.MustParseAddrPort("192.0.2.20:3479"),
		},
		dual: true,
	}
}

var testSource = netip.MustParseAddrPort("198.51.100.7:40000")

func mustBuild(tb testing.TB, setters ...stun.Setter) []byte {
	tb.Helper()
	m, err := stun.Build(setters...)
	if err != nil {
		tb.Fatal(err)
	}
	return m.Raw
}

// rawAttr adds an attribute of any type, for attributes pion does not type.
type rawAttr struct {
	t stun.AttrType
	v []byte
}

func (a rawAttr) AddTo(m *stun.Message) error {
	m.Add(a.t, a.v)
	return nil
}

// handleOnce runs the handler and decodes its response with pion.
func handleOnce(tb testing.TB, h *handler, pkt []byte, local int) (reply, *stun.Message) {
	tb.Helper()
	req, resp := new(stun.Message), new(stun.Message)
	r := h.handle(pkt, testSource, local, req, resp)
	if r.act == actDrop {
		return r, nil
	}
	got := new(stun.Message)
	if err := stun.Decode(resp.Raw, got); err != nil {
		tb.Fatalf("response does not decode: %v", err)
	}
	if err := stun.Fingerprint.Check(got); err != nil {
		tb.Fatalf("response FINGERPRINT: %v", err)
	}
	return r, got
}

func getAddr(tb testing.TB, m *stun.Message, t stun.AttrType) netip.AddrPort {
	tb.Helper()
	var ip net.IP
	var port int
	switch t {
	case stun.AttrXORMappedAddress:
		var a stun.XORMappedAddress
		if err := a.GetFrom(m); err != nil {
			tb.Fatalf("%v: %v", t, err)
		}
		ip, port = a.IP, a.Port
	default:
		var a stun.MappedAddress
		if err := a.GetFromAs(m, t); err != nil {
			tb.Fatalf("%v: %v", t, err)
		}
		ip, port = a.IP, a.Port
	}
	addr, ok := netip.AddrFromSlice(ip)
	if !ok {
		tb.Fatalf("%v: bad IP %v", t, ip)
	}
	return netip.AddrPortFrom(addr.Unmap(), uint16(port))
}

func errorCode(tb testing.TB, m *stun.Message) stun.ErrorCode {
	tb.Helper()
	var ec stun.ErrorCodeAttribute
	if err := ec.GetFrom(m); err != nil {
		tb.Fatalf("ERROR-CODE: %v", err)
	}
	return ec.Code
}

func unknownAttrs(tb testing.TB, m *stun.Message) stun.UnknownAttributes {
	tb.Helper()
	var u stun.UnknownAttributes
	if err := u.GetFrom(m); err != nil {
		tb.Fatalf("UNKNOWN-ATTRIBUTES: %v", err)
	}
	return u
}

func TestHandleChangeRequest(t *testing.T) {
	h := testHandler()
	for local := range 4 {
		for _, c := range []natstun.ChangeRequest{{}, {ChangePort: true}, {ChangeIP: true}, {ChangeIP: true, ChangePort: true}} {
			pkt := mustBuild(t, stun.BindingRequest, stun.TransactionID, c, stun.Fingerprint)
			r, m := handleOnce(t, h, pkt, local)
			if r.act != actSuccess {
				t.Fatalf("socket %v, %v: act = %v", h.addrs[local], c, r.act)
			}
			want := local
			if c.ChangeIP {
				want ^= changeIPBit
			}
			if c.ChangePort {
				want ^= changePortBit
			}
			if r.from != want || r.to != testSource || r.reflected != (want != local) {
				t.Errorf("socket %v, %v: from %v to %v reflected %v, want from %v to %v",
					h.addrs[local], c, h.addrs[r.from], r.to, r.reflected, h.addrs[want], testSource)
			}
			if got := getAddr(t, m, stun.AttrResponseOrigin); got != h.addrs[want] {
				t.Errorf("socket %v, %v: RESPONSE-ORIGIN %v, want %v", h.addrs[local], c, got, h.addrs[want])
			}
			if got := getAddr(t, m, stun.AttrOtherAddress); got != h.addrs[local^3] {
				t.Errorf("socket %v, %v: OTHER-ADDRESS %v, want %v", h.addrs[local], c, got, h.addrs[local^3])
			}
			if got := getAddr(t, m, stun.AttrXORMappedAddress); got != testSource {
				t.Errorf("XOR-MAPPED-ADDRESS %v", got)
			}
			if got := getAddr(t, m, stun.AttrMappedAddress); got != testSource {
				t.Errorf("MAPPED-ADDRESS %v", got)
			}
			if m.Type != stun.BindingSuccess {
				t.Errorf("type %v", m.Type)
			}
		}
	}
}

func TestHandleTransactionIDAndIPv6(t *testing.T) {
	h := &handler{addrs: [4]netip.AddrPort{netip.MustParseAddrPort("[2001:db8::1]:3478")}}
	src := netip.MustParseAddrPort("[2001:db8::77]:5555")
	pkt := mustBuild(t, stun.BindingRequest, stun.TransactionID)
	req, resp := new(stun.Message), new(stun.Message)
	r := h.handle(pkt, src, 0, req, resp)
	if r.act != actSuccess {
		t.Fatalf("act = %v", r.act)
	}
	m := new(stun.Message)
	if err := stun.Decode(resp.Raw, m); err != nil {
		t.Fatal(err)
	}
	if m.TransactionID != req.TransactionID {
		t.Errorf("transaction ID %x, want %x", m.TransactionID, req.TransactionID)
	}
	if got := getAddr(t, m, stun.AttrXORMappedAddress); got != src {
		t.Errorf("XOR-MAPPED-ADDRESS %v, want %v", got, src)
	}
	if got := getAddr(t, m, stun.AttrResponseOrigin); got != h.addrs[0] {
		t.Errorf("RESPONSE-ORIGIN %v", got)
	}
	if m.Contains(stun.AttrOtherAddress) {
		t.Error("OTHER-ADDRESS in single-address mode")
	}
}

func TestHandleResponsePort(t *testing.T) {
	h := testHandler()
	pkt := mustBuild(t, stun.BindingRequest, stun.TransactionID, natstun.ResponsePort(6000), natstun.ChangeRequest{ChangeIP: true})
	r, m := handleOnce(t, h, pkt, sockPP)
	want := netip.AddrPortFrom(testSource.Addr(), 6000)
	if r.act != actSuccess || r.to != want || r.from != sockAP || !r.reflected {
		t.Fatalf("reply %+v, want to %v from A:p", r, want)
	}
	if got := getAddr(t, m, stun.AttrXORMappedAddress); got != testSource {
		t.Errorf("XOR-MAPPED-ADDRESS %v, want the request's source %v", got, testSource)
	}
	// RESPONSE-PORT alone is reflected too.
	pkt = mustBuild(t, stun.BindingRequest, stun.TransactionID, natstun.ResponsePort(6000))
	if r, _ := handleOnce(t, h, pkt, sockPP); r.from != sockPP || r.to != want || !r.reflected {
		t.Errorf("reply %+v", r)
	}
	// RESPONSE-PORT equal to the source port is not.
	pkt = mustBuild(t, stun.BindingRequest, stun.TransactionID, natstun.ResponsePort(testSource.Port()))
	if r, _ := handleOnce(t, h, pkt, sockPP); r.to != testSource || r.reflected {
		t.Errorf("reply %+v", r)
	}
}

func TestHandleErrors(t *testing.T) {
	single := &handler{addrs: [4]netip.AddrPort{netip.MustParseAddrPort("192.0.2.10:3478")}}
	for _, tc := range []struct {
		name    string
		h       *handler
		pkt     []byte
		code    stun.ErrorCode
		unknown stun.UnknownAttributes
	}{
		{"single-address change-port", single,
			mustBuild(t, stun.BindingRequest, stun.TransactionID, natstun.ChangeRequest{ChangePort: true}),
			stun.CodeUnknownAttribute, stun.UnknownAttributes{stun.AttrChangeRequest}},
		{"single-address change-ip", single,
			mustBuild(t, stun.BindingRequest, stun.TransactionID, natstun.ChangeRequest{ChangeIP: true}, stun.Fingerprint),
			stun.CodeUnknownAttribute, stun.UnknownAttributes{stun.AttrChangeRequest}},
		{"unknown comprehension-required", testHandler(),
			mustBuild(t, stun.BindingRequest, stun.TransactionID, rawAttr{0x7777, []byte{1}}, rawAttr{0x0024, []byte{1, 2, 3, 4}}, rawAttr{0x7777, nil}),
			stun.CodeUnknownAttribute, stun.UnknownAttributes{0x7777, 0x0024}},
		{"PADDING unsupported", testHandler(),
			mustBuild(t, stun.BindingRequest, stun.TransactionID, rawAttr{stun.AttrPadding, make([]byte, 8)}),
			stun.CodeUnknownAttribute, stun.UnknownAttributes{stun.AttrPadding}},
		{"CHANGE-REQUEST too short", testHandler(),
			mustBuild(t, stun.BindingRequest, stun.TransactionID, rawAttr{stun.AttrChangeRequest, []byte{6}}),
			stun.CodeBadRequest, nil},
		{"RESPONSE-PORT zero", testHandler(),
			mustBuild(t, stun.BindingRequest, stun.TransactionID, natstun.ResponsePort(0)),
			stun.CodeBadRequest, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, m := handleOnce(t, tc.h, tc.pkt, sockPP)
			if r.act != actError || r.from != sockPP || r.to != testSource || r.reflected {
				t.Fatalf("reply %+v, want an error to the source from the receiving socket", r)
			}
			if m.Type != stun.BindingError {
				t.Errorf("type %v", m.Type)
			}
			if got := errorCode(t, m); got != tc.code {
				t.Errorf("code %d, want %d", got, tc.code)
			}
			if tc.unknown != nil {
				if got := unknownAttrs(t, m); !slices.Equal(got, tc.unknown) {
					t.Errorf("UNKNOWN-ATTRIBUTES %v, want %v", got, tc.unknown)
				}
			} else if m.Contains(stun.AttrUnknownAttributes) {
				t.Error("UNKNOWN-ATTRIBUTES in a 400")
			}
		})
	}
}

func TestHandleOptionalAndIgnoredAttributes(t *testing.T) {
	h := testHandler()
	pkt := mustBuild(t, stun.BindingRequest, stun.TransactionID,
		rawAttr{0xC001, []byte("x")}, stun.NewSoftware("client"), stun.NewUsername("u"),
		natstun.ChangeRequest{}, stun.Fingerprint)
	if r, _ := handleOnce(t, h, pkt, sockPP); r.act != actSuccess || r.reflected {
		t.Fatalf("reply %+v", r)
	}
}

func TestHandleMisbehaviours(t *testing.T) {
	pkt := mustBuild(t, stun.BindingRequest, stun.TransactionID, natstun.ChangeRequest{ChangeIP: true, ChangePort: true})

	h := testHandler()
	h.ignoreChange = true
	r, m := handleOnce(t, h, pkt, sockPP)
	if r.from != sockPP || r.reflected {
		t.Errorf("IgnoreChangeRequest: reply from %v", h.addrs[r.from])
	}
	if got := getAddr(t, m, stun.AttrResponseOrigin); got != h.addrs[sockPP] {
		t.Errorf("IgnoreChangeRequest: RESPONSE-ORIGIN %v", got)
	}

	h = testHandler()
	bogus := netip.MustParseAddrPort("203.0.113.9:9")
	h.advertiseOther = bogus
	_, m = handleOnce(t, h, pkt, sockPP)
	if got := getAddr(t, m, stun.AttrOtherAddress); got != bogus {
		t.Errorf("AdvertiseOther: OTHER-ADDRESS %v", got)
	}

	h = testHandler()
	h.omitMapped = true
	_, m = handleOnce(t, h, pkt, sockPP)
	if m.Contains(stun.AttrMappedAddress) || !m.Contains(stun.AttrXORMappedAddress) {
		t.Errorf("OmitMappedAddress: MAPPED-ADDRESS %v, XOR-MAPPED-ADDRESS %v",
			m.Contains(stun.AttrMappedAddress), m.Contains(stun.AttrXORMappedAddress))
	}

	h = testHandler()
	alg := netip.MustParseAddrPort("10.0.0.1:1")
	h.mappedOverride = func(netip.AddrPort) netip.AddrPort { return alg }
	h.software = []byte("natcheck test")
	_, m = handleOnce(t, h, pkt, sockPP)
	if got := getAddr(t, m, stun.AttrMappedAddress); got != alg {
		t.Errorf("MappedAddressOverride: MAPPED-ADDRESS %v", got)
	}
	if got := getAddr(t, m, stun.AttrXORMappedAddress); got != testSource {
		t.Errorf("MappedAddressOverride: XOR-MAPPED-ADDRESS %v", got)
	}
	// Over UDP a small request gets no SOFTWARE: the response must not
	// grow past the request (no amplification).
	if m.Contains(stun.AttrSoftware) {
		t.Errorf("SOFTWARE sent in reply to a %d-byte request over UDP", len(pkt))
	}
	big, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.NewSoftware(strings.Repeat("x", 120)), stun.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	_, m = handleOnce(t, h, big.Raw, sockPP)
	var sw stun.Software
	if err := sw.GetFrom(m); err != nil || sw.String() != "natcheck test" {
		t.Errorf("SOFTWARE %q, %v (request of %d bytes)", sw, err, len(big.Raw))
	}
	if len(m.Raw) > len(big.Raw) {
		t.Errorf("response of %d bytes to a request of %d", len(m.Raw), len(big.Raw))
	}
	if _, m = handleOnce(t, testHandler(), big.Raw, sockPP); m.Contains(stun.AttrSoftware) {
		t.Error("SOFTWARE sent though not configured")
	}
}

// rfc5769Request is the sample request of RFC 5769 section 2.1: a Binding
// request with SOFTWARE, PRIORITY, ICE-CONTROLLED, USERNAME,
// MESSAGE-INTEGRITY and FINGERPRINT.
var rfc5769Request = []byte("\x00\x01\x00\x58" +
	"\x21\x12\xa4\x42" +
	"\xb7\xe7\xa7\x01\xbc\x34\xd6\x86\xfa\x87\xdf\xae" +
	"\x80\x22\x00\x10" +
	"STUN test client" +
	"\x00\x24\x00\x04" +
	"\x6e\x00\x01\xff" +
	"\x80\x29\x00\x08" +
	"\x93\x2f\xf9\xb1\x51\x26\x3b\x36" +
	"\x00\x06\x00\x09" +
	"\x65\x76\x74\x6a\x3a\x68\x36\x76\x59\x20\x20\x20" +
	"\x00\x08\x00\x14" +
	"\x9a\xea\xa7\x0c\xbf\xd8\xcb\x56\x78\x1e\xf2\xb5" +
	"\xb2\xd3\xf2\x49\xc1\xb5\x71\xa2" +
	"\x80\x28\x00\x04" +
	"\xe5\x7a\x3b\xcf")

// rfc5769Response is the sample IPv4 response of RFC 5769 section 2.2:
// SOFTWARE "test vector", XOR-MAPPED-ADDRESS 192.0.2.1:32853,
// MESSAGE-INTEGRITY (password "VOkJxbRl1RmTxUk/WvJxBt") and FINGERPRINT.
var rfc5769Response = []byte("\x01\x01\x00\x3c" + // Binding success response, length 60
	"\x21\x12\xa4\x42" + // magic cookie
	"\xb7\xe7\xa7\x01\xbc\x34\xd6\x86\xfa\x87\xdf\xae" + // transaction ID
	"\x80\x22\x00\x0b" + // SOFTWARE
	"\x74\x65\x73\x74\x20\x76\x65\x63\x74\x6f\x72\x20" +
	"\x00\x20\x00\x08" + // XOR-MAPPED-ADDRESS
	"\x00\x01\xa1\x47\xe1\x12\xa6\x43" +
	"\x00\x08\x00\x14" + // MESSAGE-INTEGRITY
	"\x2b\x91\xf5\x99\xfd\x9e\x90\xc3\x8c\x74\x89\xf9" +
	"\x2a\xf9\xba\x53\xf0\x6b\xe7\xd7" +
	"\x80\x28\x00\x04" + // FINGERPRINT
	"\xc0\x7d\x4c\x96")

func TestRFC5769Response(t *testing.T) {
	m := new(stun.Message)
	if err := stun.Decode(rfc5769Response, m); err != nil {
		t.Fatal(err)
	}
	if m.Type != stun.BindingSuccess {
		t.Errorf("type %v", m.Type)
	}
	if err := stun.Fingerprint.Check(m); err != nil {
		t.Errorf("FINGERPRINT: %v", err)
	}
	if err := stun.NewShortTermIntegrity("VOkJxbRl1RmTxUk/WvJxBt").Check(m); err != nil {
		t.Errorf("MESSAGE-INTEGRITY: %v", err)
	}
	if got, want := getAddr(t, m, stun.AttrXORMappedAddress), netip.MustParseAddrPort("192.0.2.1:32853"); got != want {
		t.Errorf("XOR-MAPPED-ADDRESS %v, want %v", got, want)
	}

	// Our encoder produces the same bytes for the same address and ID.
	enc := new(stun.Message)
	startResponse(enc, stun.BindingSuccess, m.TransactionID)
	addAddress(enc, stun.AttrXORMappedAddress, netip.MustParseAddrPort("192.0.2.1:32853"), true)
	want := rfc5769Response[20+16 : 20+16+12]
	if got := enc.Raw[20:]; string(got) != string(want) {
		t.Errorf("encoded XOR-MAPPED-ADDRESS %x, want %x", got, want)
	}
}

func TestRFC5769Request(t *testing.T) {
	// The vector carries PRIORITY (0x0024), an ICE attribute this server
	// does not understand, so RFC 8489 section 6.3.1 asks for a 420.
	r, m := handleOnce(t, testHandler(), rfc5769Request, sockPP)
	if r.act != actError {
		t.Fatalf("act = %v", r.act)
	}
	if got := errorCode(t, m); got != stun.CodeUnknownAttribute {
		t.Errorf("code %d", got)
	}
	if got := unknownAttrs(t, m); !slices.Equal(got, stun.UnknownAttributes{0x0024}) {
		t.Errorf("UNKNOWN-ATTRIBUTES %v", got)
	}
	if m.TransactionID != [12]byte([]byte("\xb7\xe7\xa7\x01\xbc\x34\xd6\x86\xfa\x87\xdf\xae")) {
		t.Errorf("transaction ID %x", m.TransactionID)
	}
}

// malformed returns packets that must get no reply.
func malformed(tb testing.TB) map[string][]byte {
	tb.Helper()
	good := mustBuild(tb, stun.BindingRequest, stun.TransactionID, stun.Fingerprint)
	badFP := slices.Clone(good)
	badFP[len(badFP)-1] ^= 1
	noCookie := slices.Clone(good)
	noCookie[4] = 0
	topBits := slices.Clone(good)
	topBits[0] |= 0x40
	longer := append(slices.Clone(good), 0, 0, 0, 0)
	longerNoFP := append(mustBuild(tb, stun.BindingRequest, stun.TransactionID), 0, 0, 0, 0)
	oddLen := mustBuild(tb, stun.BindingRequest, stun.TransactionID)
	oddLen = append(oddLen, 0, 0)
	binary.BigEndian.PutUint16(oddLen[2:], 2)
	fpNotLast := mustBuild(tb, stun.BindingRequest, stun.TransactionID, stun.Fingerprint, stun.NewSoftware("x"))
	attrOverrun := mustBuild(tb, stun.BindingRequest, stun.TransactionID, rawAttr{0x8001, []byte{1, 2, 3, 4}})
	binary.BigEndian.PutUint16(attrOverrun[22:], 200)
	return map[string][]byte{
		"empty":                          nil,
		"short":                          {0, 1, 0},
		"header only, no cookie":         make([]byte, 20),
		"not STUN":                       []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		"bad fingerprint":                badFP,
		"no magic cookie":                noCookie,
		"top bits set":                   topBits,
		"trailing bytes":                 longer,
		"trailing bytes, no FINGERPRINT": longerNoFP,
		"length not multiple 4":          oddLen,
		"fingerprint not last":           fpNotLast,
		"attribute overrun":              attrOverrun,
		"truncated":                      good[:len(good)-4],
		"binding success":                mustBuild(tb, stun.BindingSuccess, stun.TransactionID),
		"binding error":                  mustBuild(tb, stun.BindingError, stun.TransactionID, stun.CodeBadRequest),
		"binding indication":             mustBuild(tb, stun.NewType(stun.MethodBinding, stun.ClassIndication), stun.TransactionID),
		"allocate request":               mustBuild(tb, stun.NewType(stun.MethodAllocate, stun.ClassRequest), stun.TransactionID),
		"RFC 5769 response":              rfc5769Response,
	}
}

func TestHandleMalformed(t *testing.T) {
	h := testHandler()
	for name, pkt := range malformed(t) {
		if r, _ := handleOnce(t, h, pkt, sockPP); r.act != actDrop {
			t.Errorf("%s: act = %v, want drop", name, r.act)
		}
	}
	good := mustBuild(t, stun.BindingRequest, stun.TransactionID)
	req, resp := new(stun.Message), new(stun.Message)
	for _, src := range []netip.AddrPort{{}, netip.MustParseAddrPort("192.0.2.1:0")} {
		if r := h.handle(good, src, sockPP, req, resp); r.act != actDrop {
			t.Errorf("source %v: act = %v, want drop", src, r.act)
		}
	}
	for _, local := range []int{-1, 4, 100} {
		if r := h.handle(good, testSource, local, req, resp); r.act != actDrop {
			t.Errorf("socket %d: act = %v, want drop", local, r.act)
		}
	}
}

// validBindingRequest is the fuzz oracle, written independently of handle
// with pion alone: a decodable message of type Binding request whose
// FINGERPRINT, if any, is last and correct.
func validBindingRequest(pkt []byte) bool {
	m := new(stun.Message)
	if err := stun.Decode(slices.Clone(pkt), m); err != nil {
		return false
	}
	if m.Type != stun.BindingRequest || int(m.Length)+20 != len(pkt) || m.Length%4 != 0 {
		return false
	}
	if m.Contains(stun.AttrFingerprint) {
		if m.Attributes[len(m.Attributes)-1].Type != stun.AttrFingerprint {
			return false
		}
		if err := stun.Fingerprint.Check(m); err != nil {
			return false
		}
	}
	return true
}

func FuzzHandle(f *testing.F) {
	f.Add(mustBuild(f, stun.BindingRequest, stun.TransactionID), byte(0), uint16(1234))
	f.Add(mustBuild(f, stun.BindingRequest, stun.TransactionID, natstun.ChangeRequest{ChangeIP: true, ChangePort: true},
		natstun.ResponsePort(99), stun.NewSoftware("fuzz"), stun.Fingerprint), byte(1), uint16(40000))
	f.Add(mustBuild(f, stun.BindingRequest, stun.TransactionID, rawAttr{0x0024, []byte{1, 2, 3, 4}}, stun.Fingerprint), byte(3), uint16(5))
	f.Add(rfc5769Request, byte(2), uint16(65535))
	for _, pkt := range malformed(f) {
		f.Add(pkt, byte(0), uint16(1))
	}
	h := testHandler()
	h.software = []byte("fuzz")
	f.Fuzz(func(t *testing.T, pkt []byte, local byte, port uint16) {
		src := netip.AddrPortFrom(testSource.Addr(), port)
		orig := slices.Clone(pkt)
		req, resp := new(stun.Message), new(stun.Message)
		r := h.handle(pkt, src, int(local%4), req, resp)
		if string(pkt) != string(orig) {
			t.Fatal("handle modified the packet")
		}
		// The stream path accepts exactly the packets the UDP path does.
		sreq, sresp := new(stun.Message), new(stun.Message)
		sr := h.handleStream(pkt, src, int(local%4)-1, h.addrs[sockPP], sreq, sresp)
		if (sr.act == actDrop) != (r.act == actDrop) {
			t.Fatalf("stream act %v, datagram act %v", sr.act, r.act)
		}
		if string(pkt) != string(orig) {
			t.Fatal("handleStream modified the packet")
		}
		if r.act == actDrop {
			return
		}
		if port == 0 || !validBindingRequest(pkt) {
			t.Fatalf("reply %+v to a packet that is not a valid Binding request", r)
		}
		m := new(stun.Message)
		if err := stun.Decode(resp.Raw, m); err != nil {
			t.Fatalf("response does not decode: %v", err)
		}
		if err := stun.Fingerprint.Check(m); err != nil {
			t.Fatalf("response FINGERPRINT: %v", err)
		}
		if m.TransactionID != req.TransactionID {
			t.Fatal("transaction ID changed")
		}
		if r.from < 0 || r.from > 3 || r.to.Addr() != src.Addr() || r.to.Port() == 0 {
			t.Fatalf("reply from socket %d to %v", r.from, r.to)
		}
		switch r.act {
		case actSuccess:
			if m.Type != stun.BindingSuccess || getAddr(t, m, stun.AttrXORMappedAddress) != src {
				t.Fatalf("bad success response %v", m)
			}
		case actError:
			if m.Type != stun.BindingError || r.from != int(local%4) || r.to != src {
				t.Fatalf("bad error response %v from %d to %v", m, r.from, r.to)
			}
		}
	})
}

func BenchmarkHandle(b *testing.B) {
	h := testHandler()
	h.software = []byte("natcheck")
	for _, bc := range []struct {
		name string
		pkt  []byte
	}{
		{"plain", mustBuild(b, stun.BindingRequest, stun.TransactionID, stun.Fingerprint)},
		{"change-ip-port", mustBuild(b, stun.BindingRequest, stun.TransactionID, natstun.ChangeRequest{ChangeIP: true, ChangePort: true}, stun.Fingerprint)},
		{"unknown-attribute", mustBuild(b, stun.BindingRequest, stun.TransactionID, rawAttr{0x0024, []byte{1, 2, 3, 4}}, stun.Fingerprint)},
		{"malformed", []byte("GET / HTTP/1.1\r\nHost: example\r\n\r\n")},
	} {
		b.Run(bc.name, func(b *testing.B) {
			req, resp := new(stun.Message), stun.New()
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.pkt)))
			for b.Loop() {
				h.handle(bc.pkt, testSource, sockPP, req, resp)
			}
		})
	}
}
