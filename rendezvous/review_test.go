package rendezvous

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// smallBufferServer serves s with the server's socket send buffers at
// their least, so that what a client does not read waits in the server's
// queue rather than in the kernel.
func smallBufferServer(t *testing.T, s *Server) string {
	t.Helper()
	ts := httptest.NewUnstartedServer(s)
	ts.Config.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetWriteBuffer(1)
		}
		return ctx
	}
	ts.Start()
	t.Cleanup(func() {
		s.Close()
		ts.Close()
	})
	return "ws" + strings.TrimPrefix(ts.URL, "http") + "/pair"
}

// smallBufferClient is an HTTP client whose sockets receive into the
// least buffer the kernel allows.
func smallBufferClient() *http.Client {
	d := &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 1)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
}

// TestNotReadingBoundedInBytes: a member that does not read is dropped
// once a bounded number of bytes wait for it, not only after 256 messages
// of up to 64 KiB each (16 MiB a member, held for the write timeout).
func TestNotReadingBoundedInBytes(t *testing.T) {
	ctx := testCtx(t)
	s := &Server{MessageRate: 1000, MessageBurst: 1000, WriteTimeout: time.Hour, PingInterval: time.Hour}
	u := smallBufferServer(t, s)
	a := dial(t, ctx, u, "r", DialOptions{})
	// b joins and then never reads again.
	b, _, err := websocket.Dial(ctx, u+"?room=r", &websocket.DialOptions{HTTPClient: smallBufferClient()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.CloseNow()
	wantPresent(t, ctx, a, true)

	const n = 100 // 6 MB in all, well under 256 messages
	big := json.RawMessage(`"` + strings.Repeat("x", 60<<10) + `"`)
	for i := range n {
		if err := a.Send(ctx, Message{Type: TypeSummary, Data: big}); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	// The server drops b, and a learns it.
	for {
		m := recv(t, ctx, a)
		if m.Type == TypePeer && m.Present != nil && !*m.Present {
			break
		}
	}
	if st := s.Stats(); st.Dropped != 1 {
		t.Errorf("stats %+v, want Dropped 1", st)
	}
}

// hostileServer completes WebSocket handshakes by hand and then runs
// script on the raw connection, as a server that does not follow the
// protocol would. It returns the server's ws:// URL.
func hostileServer(t *testing.T, script func(c net.Conn, br *bufio.Reader)) string {
	t.Helper()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get("Sec-WebSocket-Key")
		sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		c, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		fmt.Fprintf(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
			base64.StdEncoding.EncodeToString(sum[:]))
		script(c, brw.Reader)
	}))
	t.Cleanup(ts.Close)
	return "ws" + strings.TrimPrefix(ts.URL, "http") + "/pair"
}

// frameHeader is the header of an unmasked server frame of n bytes.
func frameHeader(opcode byte, n uint64) []byte {
	h := []byte{0x80 | opcode}
	switch {
	case n < 126:
		return append(h, byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(h, 126), uint16(n))
	default:
		return binary.BigEndian.AppendUint64(append(h, 127), n)
	}
}

// readFrame reads one masked client frame and returns its opcode and
// payload.
func readFrame(br *bufio.Reader) (byte, []byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return 0, nil, err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(br, b[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(br, b[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if n > MaxMessage {
		return 0, nil, fmt.Errorf("client frame of %d bytes", n)
	}
	var mask [4]byte
	if _, err := io.ReadFull(br, mask[:]); err != nil {
		return 0, nil, err
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(br, p); err != nil {
		return 0, nil, err
	}
	for i := range p {
		p[i] ^= mask[i%4]
	}
	return h[0] & 0x0f, p, nil
}

// clientReading pings the client and waits for its pong: Dial has then
// returned from the upgrade and its reader runs.
func clientReading(c net.Conn, br *bufio.Reader) error {
	if _, err := c.Write(frameHeader(9, 0)); err != nil {
		return err
	}
	op, _, err := readFrame(br)
	if err == nil && op != 10 {
		err = fmt.Errorf("opcode %d, want a pong", op)
	}
	return err
}

func writeText(c net.Conn, data string) error {
	_, err := c.Write(append(frameHeader(1, uint64(len(data))), data...))
	return err
}

// TestDialNoJoined: a server that upgrades and then says nothing; Dial
// ends with its ctx, and closes without waiting for a close handshake the
// server will not answer (coder/websocket waits 5 s for it, and as long
// again to write the close frame).
func TestDialNoJoined(t *testing.T) {
	ctx := testCtx(t)
	upgraded := make(chan struct{})
	firstOp := make(chan string, 1)
	u := hostileServer(t, func(c net.Conn, br *bufio.Reader) {
		if err := clientReading(c, br); err != nil {
			t.Error(err)
			return
		}
		close(upgraded)
		op, _, err := readFrame(br)
		if err != nil {
			firstOp <- "EOF"
			return
		}
		firstOp <- fmt.Sprintf("opcode %d", op)
		// Never answer, and hold the connection until the test ends.
		<-ctx.Done()
	})
	dctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() {
		_, err := Dial(dctx, u, "r", DialOptions{})
		errc <- err
	}()
	<-upgraded
	cancel()
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
		t.Fatal("Dial hangs")
	}
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "no joined message") {
		t.Errorf("Dial: %v, want ErrUnreachable: no joined message", err)
	}
	if op := <-firstOp; op != "EOF" {
		t.Errorf("after its ctx ended Dial sent %s (a close handshake that can wait 5 s), want the connection closed", op)
	}
}

func joinedJSON(room, role, remote string) string {
	b, _ := json.Marshal(Message{Type: TypeJoined, Room: room, Role: role, ExpiresInS: 600, RemoteAddr: remote})
	return string(b)
}

// TestDialWrongJoined: a joined message that does not fit the request is
// not taken for one (the pair engine picks offerer and answerer by role).
func TestDialWrongJoined(t *testing.T) {
	for name, joined := range map[string]string{
		"role third":     joinedJSON("r", "third", "192.0.2.1:5"),
		"no role":        joinedJSON("r", "", "192.0.2.1:5"),
		"other room":     joinedJSON("other", RoleFirst, "192.0.2.1:5"),
		"bad remote":     joinedJSON("r", RoleFirst, "\x1b[2Jgotcha"),
		"missing remote": joinedJSON("r", RoleSecond, ""),
	} {
		t.Run(name, func(t *testing.T) {
			ctx := testCtx(t)
			u := hostileServer(t, func(c net.Conn, br *bufio.Reader) {
				if writeText(c, joined) == nil {
					_, _, _ = readFrame(br) // until the client goes
				}
			})
			c, err := Dial(ctx, u, "r", DialOptions{})
			if err == nil {
				c.Close()
				t.Fatalf("Dial took %s", joined)
			}
			if !errors.Is(err, ErrUnreachable) || strings.ContainsAny(err.Error(), "\x1b\n") {
				t.Errorf("Dial: %q, want ErrUnreachable in one printable line", err)
			}
		})
	}
	// The right one passes.
	ctx := testCtx(t)
	u := hostileServer(t, func(c net.Conn, br *bufio.Reader) {
		if writeText(c, joinedJSON("r", RoleSecond, "[2001:db8::1]:5")) == nil {
			_, _, _ = readFrame(br)
		}
	})
	c, err := Dial(ctx, u, "r", DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

// TestClientHostileMessages: what a server sends after joined cannot
// grow the client past MaxMessage a message, nor put control characters
// in an error text the caller may print.
func TestClientHostileMessages(t *testing.T) {
	ctx := testCtx(t)
	u := hostileServer(t, func(c net.Conn, br *bufio.Reader) {
		if writeText(c, joinedJSON("r", RoleFirst, "192.0.2.1:5")) != nil {
			return
		}
		e, _ := json.Marshal(Message{Type: TypeError, Error: "\x1b]0;owned\x07bad\r\nsecond line"})
		if writeText(c, string(e)) != nil {
			return
		}
		// A text message of 1 TiB, streamed until the client hangs up.
		if _, err := c.Write(frameHeader(1, 1<<40)); err != nil {
			return
		}
		chunk := make([]byte, 64<<10)
		for range 1000 {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
		t.Error("the client read 64 MB of one message")
	})
	c, err := Dial(ctx, u, "r", DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m := recvType(t, ctx, c, TypeError)
	if strings.ContainsAny(m.Error, "\x1b\x07\r\n") {
		t.Errorf("error text %q holds control characters", m.Error)
	}
	_, err = c.Recv(ctx)
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("after a message over MaxMessage: %v, want ErrClosed", err)
	}
}

// capturingClient is an HTTP client that hands each connection it dials
// to conns, so that a test can write raw frames on it.
func capturingClient(conns chan<- net.Conn) *http.Client {
	d := &net.Dialer{}
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err == nil {
			conns <- c
		}
		return c, err
	}}}
}

// TestCloseHandshakeBounded: a client that starts an endless frame while
// the server closes it (here after a bad message) and then sends nothing
// must not hold the server: coder/websocket's close handshake skips the
// rest of that frame with no time limit, so the member's goroutines, its
// connection and Server.Close waited for as long as the client liked.
func TestCloseHandshakeBounded(t *testing.T) {
	ctx := testCtx(t)
	s := &Server{WriteTimeout: 100 * time.Millisecond, PingInterval: time.Hour}
	u := start(t, s)
	conns := make(chan net.Conn, 1)
	ws, _, err := websocket.Dial(ctx, u+"?room=r", &websocket.DialOptions{HTTPClient: capturingClient(conns)})
	if err != nil {
		t.Fatal(err)
	}
	raw := <-conns
	t.Cleanup(func() { raw.Close() }) // before s.Close (cleanups run last first)
	if _, _, err := ws.Read(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ws.Write(ctx, websocket.MessageText, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	// The error message, then the server's close frame: its close
	// handshake has begun.
	br := bufio.NewReader(raw)
	for {
		op, _, err := readServerFrame(br)
		if err != nil {
			t.Fatal(err)
		}
		if op == 8 {
			break
		}
	}
	// A masked text frame of 1 TiB, of which one byte comes.
	hdr := binary.BigEndian.AppendUint64([]byte{0x81, 0x80 | 127}, 1<<40)
	if _, err := raw.Write(append(hdr, 1, 2, 3, 4, 'x')); err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() {
		s.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-ctx.Done():
		t.Fatal("Server.Close waits for a client that trickles a frame during the close handshake")
	}
}

// readServerFrame reads one unmasked server frame.
func readServerFrame(br *bufio.Reader) (byte, []byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return 0, nil, err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(br, b[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(br, b[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if n > MaxMessage {
		return 0, nil, fmt.Errorf("server frame of %d bytes", n)
	}
	p := make([]byte, n)
	_, err := io.ReadFull(br, p)
	return h[0] & 0x0f, p, err
}
