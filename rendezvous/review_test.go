package rendezvous

import (
	"context"
	"encoding/json"
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
