package rendezvous

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// testTimeout bounds every test: nothing may hang.
const testTimeout = 10 * time.Second

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// start serves s on 127.0.0.1 and returns its ws:// URL.
func start(t *testing.T, s *Server) string {
	t.Helper()
	ts := httptest.NewServer(s)
	t.Cleanup(func() {
		s.Close()
		ts.Close()
	})
	return "ws" + strings.TrimPrefix(ts.URL, "http") + "/pair"
}

func dial(t *testing.T, ctx context.Context, u, room string, opts DialOptions) *Client {
	t.Helper()
	c, err := Dial(ctx, u, room, opts)
	if err != nil {
		t.Fatalf("Dial %s: %v", room, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func recv(t *testing.T, ctx context.Context, c Conn) Message {
	t.Helper()
	m, err := c.Recv(ctx)
	if err != nil {
		t.Fatalf("Recv: %v", err)
	}
	return m
}

// recvType receives a message and checks its type.
func recvType(t *testing.T, ctx context.Context, c Conn, typ string) Message {
	t.Helper()
	m := recv(t, ctx, c)
	if m.Type != typ {
		t.Fatalf("got %+v, want type %q", m, typ)
	}
	return m
}

func wantPresent(t *testing.T, ctx context.Context, c Conn, present bool) {
	t.Helper()
	m := recvType(t, ctx, c, TypePeer)
	if m.Present == nil || *m.Present != present {
		t.Fatalf("got %+v, want present %v", m, present)
	}
}

// wantClosed receives until the connection ends, and checks that an error
// message containing errText came first and that Recv's error says so.
func wantClosed(t *testing.T, ctx context.Context, c Conn, errText string) {
	t.Helper()
	sawError := false
	for range 1000 {
		m, err := c.Recv(ctx)
		if err != nil {
			if !errors.Is(err, ErrClosed) {
				t.Fatalf("Recv error %v does not wrap ErrClosed", err)
			}
			if !sawError {
				t.Fatalf("closed (%v) without an error message containing %q", err, errText)
			}
			if !strings.Contains(err.Error(), errText) {
				t.Errorf("Recv error %q does not say %q", err, errText)
			}
			return
		}
		if m.Type == TypeError && strings.Contains(m.Error, errText) {
			sawError = true
		}
	}
	t.Fatal("too many messages before the close")
}

// pair dials two members into room and waits until both know of each
// other.
func pair(t *testing.T, ctx context.Context, u, room string, opts DialOptions) (a, b *Client) {
	t.Helper()
	a = dial(t, ctx, u, room, opts)
	b = dial(t, ctx, u, room, opts)
	wantPresent(t, ctx, a, true)
	wantPresent(t, ctx, b, true)
	return a, b
}

func TestExchange(t *testing.T) {
	ctx := testCtx(t)
	s := &Server{}
	u := start(t, s)
	a := dial(t, ctx, u, "room-1", DialOptions{})
	if j := a.Joined(); j.Role != RoleFirst || j.Room != "room-1" || j.ExpiresInS != 600 {
		t.Errorf("first joined = %+v, want role first, room room-1, expires_in_s 600", j)
	}
	if ap, err := netip.ParseAddrPort(a.Joined().RemoteAddr); err != nil || ap.Addr() != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("remote_addr %q, want 127.0.0.1:PORT", a.Joined().RemoteAddr)
	}
	b := dial(t, ctx, u, "room-1", DialOptions{})
	if b.Role() != RoleSecond {
		t.Errorf("second member's role %q", b.Role())
	}
	wantPresent(t, ctx, a, true)
	wantPresent(t, ctx, b, true)

	offer := Message{Type: TypeOffer, Phase: "direct", SDP: "v=0\r\n"}
	if err := a.Send(ctx, offer); err != nil {
		t.Fatal(err)
	}
	if got := recvType(t, ctx, b, TypeOffer); got.SDP != offer.SDP || got.Phase != "direct" {
		t.Errorf("b got %+v, want %+v", got, offer)
	}
	summary := Message{Type: TypeSummary, Data: json.RawMessage(`{"nat":"full cone"}`)}
	if err := b.Send(ctx, summary); err != nil {
		t.Fatal(err)
	}
	if got := recvType(t, ctx, a, TypeSummary); !bytes.Equal(got.Data, summary.Data) {
		t.Errorf("a got data %s, want %s", got.Data, summary.Data)
	}
	// A client cannot send a control type.
	if err := a.Send(ctx, Message{Type: TypeJoined}); err == nil {
		t.Error("Send of a joined message succeeded")
	}
	st := s.Stats()
	if st.Rooms != 1 || st.RoomsCreated != 1 || st.Joins != 2 || st.Forwarded != 2 {
		t.Errorf("stats %+v, want 1 room, 1 created, 2 joins, 2 forwarded", st)
	}
}

func TestThirdMember(t *testing.T) {
	ctx := testCtx(t)
	s := &Server{}
	u := start(t, s)
	pair(t, ctx, u, "r", DialOptions{})
	_, err := Dial(ctx, u, "r", DialOptions{})
	if !errors.Is(err, ErrRoomFull) || !strings.Contains(err.Error(), "two members") || !strings.Contains(err.Error(), "409") {
		t.Fatalf("third member: %v, want ErrRoomFull saying two members (409)", err)
	}
	if s.Stats().RefusedFull != 1 {
		t.Errorf("stats %+v, want RefusedFull 1", s.Stats())
	}
	// Another room is still open to it.
	dial(t, ctx, u, "r2", DialOptions{})
}

func TestExpiry(t *testing.T) {
	ctx := testCtx(t)
	s := &Server{RoomTTL: 200 * time.Millisecond}
	u := start(t, s)
	a, b := pair(t, ctx, u, "short", DialOptions{})
	if a.Joined().ExpiresInS != 1 {
		t.Errorf("expires_in_s %d, want 1 (rounded up)", a.Joined().ExpiresInS)
	}
	wantClosed(t, ctx, a, "expired")
	wantClosed(t, ctx, b, "expired")
	if st := s.Stats(); st.Expired != 1 || st.Rooms != 0 {
		t.Errorf("stats %+v, want Expired 1, Rooms 0", st)
	}
	// The name is free again.
	dial(t, ctx, u, "short", DialOptions{})
}

func TestToken(t *testing.T) {
	ctx := testCtx(t)
	const token = "s3cret-token"
	s := &Server{Token: token}
	u := start(t, s)
	for _, tok := range []string{"", "wrong-guess", token + "x"} {
		_, err := Dial(ctx, u, "r", DialOptions{Token: tok})
		if !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("token %q: %v, want ErrUnauthorized", tok, err)
		}
		if tok != "" && strings.Contains(err.Error(), tok) {
			t.Errorf("error %q holds the token", err)
		}
	}
	pair(t, ctx, u, "r", DialOptions{Token: token})
	if st := s.Stats(); st.RefusedUnauthorized != 3 || st.Joins != 2 {
		t.Errorf("stats %+v, want 3 refused, 2 joins", st)
	}
}

// rawDial is a WebSocket client that sends whatever it is told, for the
// messages Client refuses to send.
func rawDial(t *testing.T, ctx context.Context, u, room string) *websocket.Conn {
	t.Helper()
	ws, _, err := websocket.Dial(ctx, u+"?room="+room, nil)
	if err != nil {
		t.Fatal(err)
	}
	ws.SetReadLimit(2 * MaxMessage)
	t.Cleanup(func() { ws.CloseNow() })
	var m Message
	_, data, err := ws.Read(ctx)
	if err != nil || json.Unmarshal(data, &m) != nil || m.Type != TypeJoined {
		t.Fatalf("first message %q, %v: want joined", data, err)
	}
	return ws
}

func TestBadMessages(t *testing.T) {
	big, _ := json.Marshal(Message{Type: TypeSummary, Data: json.RawMessage(`"` + strings.Repeat("x", MaxMessage) + `"`)})
	for _, tc := range []struct {
		name    string
		typ     websocket.MessageType
		data    []byte
		errText string
		code    websocket.StatusCode
	}{
		{"not JSON", websocket.MessageText, []byte("hello"), "not a JSON", websocket.StatusPolicyViolation},
		{"JSON array", websocket.MessageText, []byte(`[1,2]`), "not a JSON", websocket.StatusPolicyViolation},
		{"trailing data", websocket.MessageText, []byte(`{"type":"offer"} {}`), "not a JSON", websocket.StatusPolicyViolation},
		{"no type", websocket.MessageText, []byte(`{"sdp":"x"}`), `no "type"`, websocket.StatusPolicyViolation},
		{"unknown type", websocket.MessageText, []byte(`{"type":"media"}`), `unknown message type "media"`, websocket.StatusPolicyViolation},
		{"control type joined", websocket.MessageText, []byte(`{"type":"joined"}`), "server only", websocket.StatusPolicyViolation},
		{"control type peer", websocket.MessageText, []byte(`{"type":"peer","present":true}`), "server only", websocket.StatusPolicyViolation},
		{"control type error", websocket.MessageText, []byte(`{"type":"error"}`), "server only", websocket.StatusPolicyViolation},
		{"binary", websocket.MessageBinary, []byte(`{"type":"offer"}`), "binary", websocket.StatusPolicyViolation},
		{"too big", websocket.MessageText, big, "larger than 65536 bytes", websocket.StatusMessageTooBig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			s := &Server{}
			u := start(t, s)
			ws := rawDial(t, ctx, u, "r")
			if err := ws.Write(ctx, tc.typ, tc.data); err != nil {
				t.Fatal(err)
			}
			_, data, err := ws.Read(ctx)
			var m Message
			if err != nil || json.Unmarshal(data, &m) != nil || m.Type != TypeError || !strings.Contains(m.Error, tc.errText) {
				t.Fatalf("got %q, %v; want an error message containing %q", data, err, tc.errText)
			}
			_, _, err = ws.Read(ctx)
			if got := websocket.CloseStatus(err); got != tc.code {
				t.Fatalf("after the error: %v (status %v), want close status %v", err, got, tc.code)
			}
			if st := s.Stats(); st.BadMessages != 1 || st.Forwarded != 0 {
				t.Errorf("stats %+v, want BadMessages 1, nothing forwarded", st)
			}
		})
	}
}

func TestMessageBeforePeer(t *testing.T) {
	ctx := testCtx(t)
	s := &Server{}
	u := start(t, s)
	a := dial(t, ctx, u, "r", DialOptions{})
	if err := a.Send(ctx, Message{Type: TypeSummary, Data: json.RawMessage(`{}`)}); err != nil {
		t.Fatal(err)
	}
	if m := recvType(t, ctx, a, TypeError); !strings.Contains(m.Error, "no peer") {
		t.Errorf("error %q, want one about no peer", m.Error)
	}
	// Not fatal: the peer arrives and messages flow.
	b := dial(t, ctx, u, "r", DialOptions{})
	wantPresent(t, ctx, a, true)
	wantPresent(t, ctx, b, true)
	if err := a.Send(ctx, Message{Type: TypeBye}); err != nil {
		t.Fatal(err)
	}
	recvType(t, ctx, b, TypeBye)
	if st := s.Stats(); st.NotPresent != 1 || st.Forwarded != 1 {
		t.Errorf("stats %+v, want NotPresent 1, Forwarded 1", st)
	}
}

func TestPeerLeaves(t *testing.T) {
	ctx := testCtx(t)
	s := &Server{}
	u := start(t, s)
	a, b := pair(t, ctx, u, "r", DialOptions{})
	if err := b.Send(ctx, Message{Type: TypeCandidate, Phase: "direct", Candidate: "candidate:1 1 udp 1 192.0.2.1 9 typ host"}); err != nil {
		t.Fatal(err)
	}
	recvType(t, ctx, a, TypeCandidate)
	b.Close()
	wantPresent(t, ctx, a, false)

	// A member that vanishes without a close handshake.
	ws := rawDial(t, ctx, u, "r")
	wantPresent(t, ctx, a, true)
	ws.CloseNow()
	wantPresent(t, ctx, a, false)

	// The first leaves: a newcomer takes its place and role.
	c := dial(t, ctx, u, "r", DialOptions{})
	wantPresent(t, ctx, a, true)
	a.Close()
	wantPresent(t, ctx, c, true)
	wantPresent(t, ctx, c, false)
	d := dial(t, ctx, u, "r", DialOptions{})
	if d.Role() != RoleFirst {
		t.Errorf("newcomer's role %q, want first (the free place)", d.Role())
	}
}

func TestPingDropsSilentClient(t *testing.T) {
	ctx := testCtx(t)
	s := &Server{PingInterval: 50 * time.Millisecond}
	u := start(t, s)
	a := dial(t, ctx, u, "r", DialOptions{})
	// A client that never reads never answers a ping.
	ws, _, err := websocket.Dial(ctx, u+"?room=r", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	wantPresent(t, ctx, a, true)
	wantPresent(t, ctx, a, false)
	if st := s.Stats(); st.Dropped != 1 {
		t.Errorf("stats %+v, want Dropped 1", st)
	}
	// a answers pings from its reader goroutine while nobody calls Recv,
	// so it is still in the room: a newcomer meets it.
	b := dial(t, ctx, u, "r", DialOptions{})
	wantPresent(t, ctx, b, true)
}

func TestRateLimit(t *testing.T) {
	ctx := testCtx(t)
	// A bucket of 3 that refills once in about 17 minutes.
	s := &Server{MessageRate: 0.001, MessageBurst: 3}
	u := start(t, s)
	a, b := pair(t, ctx, u, "r", DialOptions{})
	for i := range 5 {
		// The server may close a before the last sends.
		if err := a.Send(ctx, Message{Type: TypeCandidate, Candidate: "c"}); err != nil && i < 4 {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	for range 3 {
		recvType(t, ctx, b, TypeCandidate)
	}
	wantPresent(t, ctx, b, false)
	wantClosed(t, ctx, a, "slow down")
	if st := s.Stats(); st.RateLimited != 1 || st.Forwarded != 3 {
		t.Errorf("stats %+v, want RateLimited 1, Forwarded 3", st)
	}
}

func TestSourceAndRoomLimits(t *testing.T) {
	ctx := testCtx(t)
	s := &Server{MaxConnsPerSource: 2}
	u := start(t, s)
	a := dial(t, ctx, u, "r1", DialOptions{})
	dial(t, ctx, u, "r2", DialOptions{})
	_, err := Dial(ctx, u, "r3", DialOptions{})
	if !errors.Is(err, ErrLimited) || !strings.Contains(err.Error(), "too many connections from your address") {
		t.Fatalf("third connection: %v, want ErrLimited for the source", err)
	}
	a.Close()
	// The place is freed once the server has seen a leave; a bounded retry.
	var c *Client
	for range 200 {
		if c, err = Dial(ctx, u, "r3", DialOptions{}); !errors.Is(err, ErrLimited) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("after one left: %v", err)
	}
	c.Close()

	ctx = testCtx(t)
	s2 := &Server{MaxRooms: 1}
	u2 := start(t, s2)
	dial(t, ctx, u2, "only", DialOptions{})
	_, err = Dial(ctx, u2, "another", DialOptions{})
	if !errors.Is(err, ErrLimited) || !strings.Contains(err.Error(), "too many rooms") {
		t.Fatalf("second room: %v, want ErrLimited for rooms", err)
	}
	// Joining the open room is still fine.
	dial(t, ctx, u2, "only", DialOptions{})
	if st := s2.Stats(); st.RefusedRoomLimit != 1 || st.Rooms != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestServerPeer(t *testing.T) {
	ctx := testCtx(t)
	u := start(t, &Server{})
	_, err := Dial(ctx, u, "r", DialOptions{PeerServer: true})
	if !errors.Is(err, ErrNoServerPeer) || !strings.Contains(err.Error(), "--pair-ice") {
		t.Fatalf("peer=server without a hook: %v, want ErrNoServerPeer", err)
	}

	type call struct {
		remote netip.Addr
		got    Message
		end    error
	}
	calls := make(chan call, 1)
	s := &Server{Peer: func(ctx context.Context, remote netip.Addr, c Conn) {
		var cl call
		cl.remote = remote
		defer func() { calls <- cl }()
		for {
			m, err := c.Recv(ctx)
			if err != nil {
				cl.end = err
				return
			}
			if m.Type == TypeOffer {
				cl.got = m
				if err := c.Send(ctx, Message{Type: TypeAnswer, Phase: m.Phase, SDP: "answer to " + m.SDP}); err != nil {
					cl.end = err
					return
				}
			}
		}
	}}
	u = start(t, s)
	c := dial(t, ctx, u, "solo", DialOptions{PeerServer: true})
	if c.Role() != RoleFirst {
		t.Errorf("role %q, want first (the server peer is second)", c.Role())
	}
	wantPresent(t, ctx, c, true)
	if _, err := Dial(ctx, u, "solo", DialOptions{}); !errors.Is(err, ErrRoomFull) {
		t.Errorf("joining a server-peer room: %v, want ErrRoomFull", err)
	}
	if err := c.Send(ctx, Message{Type: TypeOffer, Phase: "direct", SDP: "o"}); err != nil {
		t.Fatal(err)
	}
	if m := recvType(t, ctx, c, TypeAnswer); m.SDP != "answer to o" {
		t.Errorf("answer %+v", m)
	}
	c.Close()
	select {
	case cl := <-calls:
		if cl.remote != netip.MustParseAddr("127.0.0.1") || cl.got.SDP != "o" {
			t.Errorf("hook saw remote %v and offer %+v", cl.remote, cl.got)
		}
		if cl.end == nil {
			t.Error("hook's Recv did not end with an error when the client left")
		}
	case <-ctx.Done():
		t.Fatal("the hook did not end after the client left")
	}
	if st := s.Stats(); st.PeerSessions != 1 || st.Forwarded != 2 {
		t.Errorf("stats %+v, want 1 peer session, 2 forwarded", st)
	}
}

func TestServerPeerBusy(t *testing.T) {
	ctx := testCtx(t)
	release := make(chan struct{})
	s := &Server{MaxPeerSessions: 1, Peer: func(ctx context.Context, _ netip.Addr, c Conn) {
		select {
		case <-release:
		case <-ctx.Done():
		}
	}}
	u := start(t, s)
	defer close(release)
	c := dial(t, ctx, u, "one", DialOptions{PeerServer: true})
	wantPresent(t, ctx, c, true)
	if _, err := Dial(ctx, u, "two", DialOptions{PeerServer: true}); !errors.Is(err, ErrLimited) || !strings.Contains(err.Error(), "busy") {
		t.Errorf("second session: %v, want ErrLimited (busy)", err)
	}
}

func TestServerPeerReturns(t *testing.T) {
	ctx := testCtx(t)
	s := &Server{Peer: func(ctx context.Context, _ netip.Addr, c Conn) {
		_ = c.Send(ctx, Message{Type: TypeBye})
	}}
	u := start(t, s)
	c := dial(t, ctx, u, "r", DialOptions{PeerServer: true})
	// The hook may send before or after present true reaches c.
	var got []string
	for len(got) < 3 {
		m := recv(t, ctx, c)
		if m.Type == TypePeer {
			got = append(got, m.Type+"="+map[bool]string{true: "true", false: "false"}[*m.Present])
		} else {
			got = append(got, m.Type)
		}
	}
	if !slices.Contains(got, TypeBye) || got[len(got)-1] != "peer=false" {
		t.Errorf("client got %v, want bye and then peer=false last", got)
	}
}

func TestClose(t *testing.T) {
	ctx := testCtx(t)
	s := &Server{}
	u := start(t, s)
	a, b := pair(t, ctx, u, "r", DialOptions{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wantClosed(t, ctx, a, "shutting down")
	wantClosed(t, ctx, b, "shutting down")
	_, err := Dial(ctx, u, "r", DialOptions{})
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "503") {
		t.Errorf("after Close: %v, want ErrUnreachable with 503", err)
	}
}

func TestBadRequests(t *testing.T) {
	ctx := testCtx(t)
	s := &Server{}
	ts := httptest.NewServer(s)
	defer ts.Close()
	defer s.Close()
	for _, q := range []string{"", "?room=", "?room=a/b", "?room=" + strings.Repeat("a", 65), "?room=a&room=b", "?room=a&peer=client"} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL+"/pair"+q, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%q: status %d, want 400", q, resp.StatusCode)
		}
	}
	if st := s.Stats(); st.RefusedBadRequest != 6 {
		t.Errorf("stats %+v, want 6 bad requests", st)
	}
}

func TestDialErrors(t *testing.T) {
	ctx := testCtx(t)
	// A port nobody listens on: bind one and close it.
	ts := httptest.NewServer(http.NotFoundHandler())
	notFound := ts.URL
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()
	defer ts.Close()

	_, err := Dial(ctx, closedURL, "r", DialOptions{Token: "tok123"})
	if !errors.Is(err, ErrUnreachable) || !strings.HasPrefix(err.Error(), "rendezvous unreachable: ") || strings.Contains(err.Error(), "tok123") {
		t.Errorf("closed port: %v", err)
	}
	_, err = Dial(ctx, notFound, "r", DialOptions{})
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "404") {
		t.Errorf("404: %v", err)
	}
	if _, err = Dial(ctx, notFound, "bad room", DialOptions{}); err == nil || errors.Is(err, ErrUnreachable) {
		t.Errorf("bad room: %v, want a usage error", err)
	}
}

func TestTLS(t *testing.T) {
	ctx := testCtx(t)
	s := &Server{}
	ts := httptest.NewTLSServer(s)
	defer ts.Close()
	defer s.Close()
	u := "wss" + strings.TrimPrefix(ts.URL, "https") + "/pair"

	// Unknown certificate: unreachable, saying why.
	_, err := Dial(ctx, u, "r", DialOptions{})
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("untrusted certificate: %v", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ts.Certificate())
	tlsCfg := ts.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	tlsCfg.RootCAs = roots
	// https:// is taken for wss://.
	a, err := Dial(ctx, ts.URL, "r", DialOptions{TLS: tlsCfg})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Dial(ctx, u, "r", DialOptions{HTTPClient: ts.Client()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	wantPresent(t, ctx, a, true)
	wantPresent(t, ctx, b, true)
}

func TestParseURL(t *testing.T) {
	for in, want := range map[string]string{
		"ws://h:1/pair":          "ws://h:1/pair",
		"wss://h/pair":           "wss://h/pair",
		"http://h:8080":          "ws://h:8080/pair",
		"https://h":              "wss://h/pair",
		"HTTPS://h/x":            "wss://h/x",
		"h.example:8080":         "ws://h.example:8080/pair",
		"127.0.0.1:8080":         "ws://127.0.0.1:8080/pair",
		"[::1]:8080":             "ws://[::1]:8080/pair",
		"rendezvous.example.org": "ws://rendezvous.example.org/pair",
	} {
		u, err := ParseURL(in)
		if err != nil || u.String() != want {
			t.Errorf("ParseURL(%q) = %v, %v; want %s", in, u, err, want)
		}
	}
	for _, in := range []string{"", "ftp://h", "ws://user:hunter2@h/pair", "ws://h/pair?token=hunter2", "ws://h/pair#x", "ws:///pair", "http://:80"} {
		_, err := ParseURL(in)
		if err == nil {
			t.Errorf("ParseURL(%q) accepted", in)
		} else if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("ParseURL(%q) error %q holds the secret", in, err)
		}
	}
}

func FuzzValidateMessage(f *testing.F) {
	for _, s := range []string{`{"type":"offer","sdp":"v=0"}`, `{"type":"joined"}`, `null`, `{"type":"candidate","candidate":"x","data":{"a":[1]}}`, `{`, `"x"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := validateMessage(data)
		if err != nil {
			if err.Error() == "" || strings.ContainsAny(err.Error(), "\n") && len(err.Error()) > 1000 {
				t.Fatalf("error %q", err)
			}
			return
		}
		if len(data) > MaxMessage || !slices.Contains(PeerTypes, m.Type) {
			t.Fatalf("accepted %q as %+v", data, m)
		}
		if !json.Valid(data) {
			t.Fatalf("accepted invalid JSON %q", data)
		}
	})
}

// TestUpgradeFailure: a request that is not a WebSocket upgrade gives back
// its place, and its server-peer session, and Close does not wait for it.
func TestUpgradeFailure(t *testing.T) {
	ctx := testCtx(t)
	s := &Server{MaxPeerSessions: 1, Peer: func(ctx context.Context, _ netip.Addr, c Conn) { <-ctx.Done() }}
	ts := httptest.NewServer(s)
	defer ts.Close()
	for range 2 {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL+"/pair?room=r&peer=server", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUpgradeRequired {
			t.Fatalf("plain GET: status %d, want 426", resp.StatusCode)
		}
	}
	u := "ws" + strings.TrimPrefix(ts.URL, "http") + "/pair"
	c := dial(t, ctx, u, "r", DialOptions{PeerServer: true})
	wantPresent(t, ctx, c, true)
	closed := make(chan struct{})
	go func() {
		s.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-ctx.Done():
		t.Fatal("Close hangs")
	}
	wantClosed(t, ctx, c, "shutting down")
}

// One source holds at most one server-peer session, so a single host
// cannot take every session; its place comes back when the session ends.
func TestServerPeerOnePerSource(t *testing.T) {
	ctx := testCtx(t)
	release := make(chan struct{})
	s := &Server{Peer: func(ctx context.Context, _ netip.Addr, c Conn) {
		select {
		case <-release:
		case <-ctx.Done():
		}
	}}
	u := start(t, s)
	c := dial(t, ctx, u, "one", DialOptions{PeerServer: true})
	wantPresent(t, ctx, c, true)
	if _, err := Dial(ctx, u, "two", DialOptions{PeerServer: true}); !errors.Is(err, ErrLimited) || !strings.Contains(err.Error(), "already has a session") {
		t.Fatalf("second session from the same source: %v, want ErrLimited (already has a session)", err)
	}
	close(release)
	wantPresent(t, ctx, c, false)
	c2 := dial(t, ctx, u, "three", DialOptions{PeerServer: true})
	wantPresent(t, ctx, c2, true)
}
