package rendezvous

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// Errors of Dial that callers branch on (for exit codes); the errors Dial
// returns wrap them with the server's one-line reason.
var (
	// ErrUnreachable: the rendezvous could not be reached (network, TLS,
	// not a /pair endpoint, shutting down).
	ErrUnreachable = errors.New("rendezvous unreachable")
	// ErrBadRequest: the server refused the request as malformed (400).
	ErrBadRequest = errors.New("rendezvous refused the request")
	// ErrUnauthorized: the token is missing or wrong (401).
	ErrUnauthorized = errors.New("rendezvous refused the token")
	// ErrRoomFull: the room already has two members (409).
	ErrRoomFull = errors.New("rendezvous room full")
	// ErrLimited: too many connections from this address, too many rooms
	// or server-peer sessions (429).
	ErrLimited = errors.New("rendezvous limit reached")
	// ErrNoServerPeer: peer=server asked of a server without one (501).
	ErrNoServerPeer = errors.New("rendezvous offers no server peer")
)

// DialOptions are the options of Dial.
type DialOptions struct {
	// Token, if not empty, is sent as "Authorization: Bearer TOKEN".
	Token string
	// PeerServer asks for the server as the second member (peer=server).
	PeerServer bool
	// TLS configures wss:// (default: the system's roots).
	TLS *tls.Config
	// HTTPClient, if not nil, makes the handshake request (TLS is then
	// ignored).
	HTTPClient *http.Client
}

// Client is a member of a room on a rendezvous server; it implements Conn.
// A goroutine reads its messages (so that pings are answered while the
// caller is busy) until Close.
type Client struct {
	ws     *websocket.Conn
	joined Message
	in     chan Message
	done   chan struct{} // closed by Close

	closeOnce sync.Once
	mu        sync.Mutex
	err       error  // why reading ended; set before in is closed
	lastError string // the server's last error message
	closing   bool
	peerSince time.Time // when the server first said the peer is present
}

// ParseURL turns the forms natcheck pair accepts into a WebSocket URL:
// ws:// and wss:// as they are, http:// and https:// as ws:// and wss://,
// and a bare HOST[:PORT] as ws://; an empty path becomes /pair. A URL
// with user information, a query or a fragment is refused (the token goes
// in a header); errors never repeat those parts.
func ParseURL(raw string) (*url.URL, error) {
	s := strings.TrimSpace(raw)
	if s == "" {
		return nil, errors.New("rendezvous URL is empty: give ws://HOST[:PORT]/pair or wss://...")
	}
	if !strings.Contains(s, "://") {
		s = "ws://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, errors.New("rendezvous URL does not parse: give ws://HOST[:PORT]/pair, wss://..., http(s)://... or HOST[:PORT]")
	}
	switch strings.ToLower(u.Scheme) {
	case "ws", "http":
		u.Scheme = "ws"
	case "wss", "https":
		u.Scheme = "wss"
	default:
		return nil, fmt.Errorf("rendezvous URL scheme %q: use ws://, wss://, http:// or https://", u.Scheme)
	}
	switch {
	case u.User != nil:
		return nil, errors.New("rendezvous URL has user information: give the token with --pair-token-file instead")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return nil, errors.New("rendezvous URL has a query or fragment: give the room with --room and the token with --pair-token-file")
	case u.Host == "" || u.Hostname() == "":
		return nil, errors.New("rendezvous URL has no host: give ws://HOST[:PORT]/pair")
	}
	if u.Path == "" {
		u.Path = "/pair"
	}
	return u, nil
}

// Dial joins room on the rendezvous at rawURL (see ParseURL) and returns
// once the server has said so (the joined message, see Joined). Its errors
// wrap ErrUnreachable, ErrBadRequest, ErrUnauthorized, ErrRoomFull,
// ErrLimited or ErrNoServerPeer, with a one-line reason; they never hold
// the token.
func Dial(ctx context.Context, rawURL, room string, opts DialOptions) (*Client, error) {
	u, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	if !ValidRoom(room) {
		return nil, fmt.Errorf("room %q: give 1 to 64 characters of A-Z a-z 0-9 . _ -", room)
	}
	q := url.Values{"room": {room}}
	if opts.PeerServer {
		q.Set("peer", "server")
	}
	u.RawQuery = q.Encode()
	where := (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()

	do := &websocket.DialOptions{HTTPClient: opts.HTTPClient, HTTPHeader: http.Header{}}
	if opts.Token != "" {
		do.HTTPHeader.Set("Authorization", "Bearer "+opts.Token)
	}
	if do.HTTPClient == nil && opts.TLS != nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = opts.TLS
		do.HTTPClient = &http.Client{Transport: tr}
	}
	ws, resp, err := websocket.Dial(ctx, u.String(), do)
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return nil, statusError(resp, where)
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrUnreachable, where, ctx.Err())
		}
		return nil, fmt.Errorf("%w: %s: %v", ErrUnreachable, where, dialCause(err))
	}
	ws.SetReadLimit(MaxMessage)
	c := &Client{ws: ws, in: make(chan Message, 1024), done: make(chan struct{})}
	go c.readLoop()
	m, err := c.Recv(ctx)
	if err != nil {
		c.closeNow()
		return nil, fmt.Errorf("%w: %s: no joined message: %v", ErrUnreachable, where, err)
	}
	if m.Type != TypeJoined {
		c.closeNow()
		if m.Type == TypeError {
			return nil, fmt.Errorf("%w: %s: %s", ErrUnreachable, where, oneLine(m.Error))
		}
		return nil, fmt.Errorf("%w: %s: first message is %q, not joined: is this a natcheck rendezvous?", ErrUnreachable, where, oneLine(m.Type))
	}
	if err := checkJoined(m, room); err != nil {
		c.closeNow()
		return nil, fmt.Errorf("%w: %s: %v: is this a natcheck rendezvous?", ErrUnreachable, where, err)
	}
	c.joined = m
	return c, nil
}

// checkJoined checks the server's joined message for room: the pair
// engine takes its role from it and may print its fields.
func checkJoined(m Message, room string) error {
	if m.Role != RoleFirst && m.Role != RoleSecond {
		return fmt.Errorf("joined message with role %q", oneLine(m.Role))
	}
	if m.Room != room {
		return fmt.Errorf("joined message for room %q", oneLine(m.Room))
	}
	if _, err := netip.ParseAddrPort(m.RemoteAddr); err != nil {
		return fmt.Errorf("joined message with remote_addr %q", oneLine(m.RemoteAddr))
	}
	return nil
}

// statusError is Dial's error for a refused handshake.
func statusError(resp *http.Response, where string) error {
	var body string
	if resp.Body != nil {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		body = oneLine(string(b))
	}
	reason := func(def string) string {
		if body != "" {
			return body
		}
		return def
	}
	code := resp.StatusCode
	switch code {
	case http.StatusBadRequest:
		return fmt.Errorf("%w: %s (HTTP %d from %s)", ErrBadRequest, reason("bad request"), code, where)
	case http.StatusUnauthorized:
		return fmt.Errorf("%w: %s (HTTP %d from %s)", ErrUnauthorized, reason("token missing or wrong"), code, where)
	case http.StatusConflict:
		return fmt.Errorf("%w: %s (HTTP %d from %s)", ErrRoomFull, reason("room already has two members"), code, where)
	case http.StatusTooManyRequests:
		return fmt.Errorf("%w: %s (HTTP %d from %s)", ErrLimited, reason("too many connections"), code, where)
	case http.StatusNotImplemented:
		return fmt.Errorf("%w: %s (HTTP %d from %s)", ErrNoServerPeer, reason("no server peer"), code, where)
	case http.StatusNotFound:
		return fmt.Errorf("%w: HTTP 404 from %s: is the path right (natcheck serve answers on /pair)?", ErrUnreachable, where)
	}
	if body == "" {
		body = http.StatusText(code)
	}
	return fmt.Errorf("%w: HTTP %d from %s: %s", ErrUnreachable, code, where, body)
}

// dialCause strips the WebSocket library's and net/http's wrapping (which
// repeat the URL) down to the network or TLS error.
func dialCause(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// oneLine makes s, from the server, one printable line of at most 200
// bytes.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// Joined returns the server's joined message: Room, Role, ExpiresInS and
// RemoteAddr.
func (c *Client) Joined() Message { return c.joined }

// PeerSince is when the server first said the peer is in the room, as
// this client's reader received it (whether or not Recv has returned that
// message yet); zero before.
func (c *Client) PeerSince() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.peerSince
}

// Role is RoleFirst (ICE-controlling, the offerer) or RoleSecond.
func (c *Client) Role() string { return c.joined.Role }

func (c *Client) readLoop() {
	defer close(c.in)
	for {
		_, data, err := c.ws.Read(context.Background())
		if err != nil {
			c.setErr(err)
			c.mu.Lock()
			closing := c.closing
			c.mu.Unlock()
			if !closing {
				// The connection is of no more use (the server closed
				// it, or sent too much): a close handshake in Close
				// would skip the rest of an endless frame for ever.
				c.ws.CloseNow()
			}
			return
		}
		var m Message
		if err := json.Unmarshal(data, &m); err != nil {
			c.setErr(fmt.Errorf("rendezvous sent a message that is not JSON: %v", err))
			c.ws.CloseNow()
			return
		}
		if m.Type == TypePeer && m.Present != nil && *m.Present {
			c.mu.Lock()
			if c.peerSince.IsZero() {
				c.peerSince = time.Now()
			}
			c.mu.Unlock()
		}
		if m.Type == TypeError {
			// Callers print it: one printable line.
			m.Error = oneLine(m.Error)
			c.mu.Lock()
			c.lastError = m.Error
			c.mu.Unlock()
		}
		select {
		case c.in <- m:
		case <-c.done:
			return
		}
	}
}

// setErr records why reading ended, as an error wrapping ErrClosed.
func (c *Client) setErr(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closing:
		c.err = ErrClosed
	case c.lastError != "":
		c.err = fmt.Errorf("%w by the rendezvous: %s", ErrClosed, c.lastError)
	case websocket.CloseStatus(err) != -1:
		var ce websocket.CloseError
		errors.As(err, &ce)
		reason := oneLine(ce.Reason)
		if reason == "" {
			reason = ce.Code.String()
		}
		c.err = fmt.Errorf("%w by the rendezvous: %s", ErrClosed, reason)
	default:
		c.err = fmt.Errorf("%w: connection lost: %v", ErrClosed, err)
	}
}

// Send sends m to the other member. m must be of a peer type.
func (c *Client) Send(ctx context.Context, m Message) error {
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if _, err := validateMessage(data); err != nil {
		return err
	}
	if err := c.ws.Write(ctx, websocket.MessageText, data); err != nil {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.err != nil {
			return c.err
		}
		return fmt.Errorf("%w: send: %v", ErrClosed, err)
	}
	return nil
}

// Recv returns the next message from the server or the other member,
// including the server's error messages (TypeError: the connection closes
// after them, except for one sent before the peer was present). Once the
// connection has ended it returns an error wrapping ErrClosed with the
// server's reason.
func (c *Client) Recv(ctx context.Context) (Message, error) {
	select {
	case m, ok := <-c.in:
		if !ok {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.err == nil {
				return Message{}, ErrClosed
			}
			return Message{}, c.err
		}
		return m, nil
	case <-ctx.Done():
		return Message{}, ctx.Err()
	}
}

// Close leaves the room (close status 1000) and stops the reader. It
// waits for the server's answer to the close, at most a few seconds (the
// WebSocket library's bound).
func (c *Client) Close() error {
	c.close(func() { _ = c.ws.Close(websocket.StatusNormalClosure, "") })
	return nil
}

// closeNow ends c without a close handshake, for Dial's failures: after
// its ctx ended, or with a server that does not follow the protocol, the
// handshake could wait seconds for an answer that does not come.
func (c *Client) closeNow() {
	c.close(func() { _ = c.ws.CloseNow() })
}

func (c *Client) close(closeWS func()) {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closing = true
		c.mu.Unlock()
		close(c.done)
		closeWS()
	})
}
