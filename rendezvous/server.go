package rendezvous

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"

	"github.com/natcheck/natcheck/internal/connlimit"
)

// Defaults of the Server's limits: the values its zero fields stand for.
const (
	DefaultRoomTTL           = 10 * time.Minute
	DefaultMaxRooms          = 1024
	DefaultMaxConnsPerSource = 8
	DefaultMessageRate       = 20  // messages a second per connection
	DefaultMessageBurst      = 100 // messages at once per connection
	DefaultPingInterval      = 15 * time.Second
	DefaultWriteTimeout      = 10 * time.Second
	DefaultMaxPeerSessions   = 4
	DefaultPeerTimeout       = 60 * time.Second
)

// queueLen and queueBytes bound the messages, and their bytes, that wait
// for a member that reads slowly; a member whose queue is full is dropped.
// The sender's rate limit keeps a member that reads at all well below
// them, and a whole natcheck pair session sends far less than queueBytes;
// without the bytes bound, 256 messages of MaxMessage would hold 16 MiB a
// member.
const (
	queueLen   = 256
	queueBytes = 4 * MaxMessage
)

// PeerFunc is the server as the second member of a room (peer=server): it
// runs in its own goroutine with c, its end of the room, and remote, the
// WebSocket client's IP address. ctx ends when the client leaves, the room
// expires, Server.PeerTimeout passes or the server closes; the server peer
// leaves the room when the function returns.
type PeerFunc func(ctx context.Context, remote netip.Addr, c Conn)

// Server is the /pair endpoint: an http.Handler that upgrades requests to
// WebSocket and passes messages between the two members of each room. Set
// its fields before the first request; zero values are the defaults named.
// Its methods are safe for concurrent use.
type Server struct {
	// RoomTTL is a room's lifetime from its creation (DefaultRoomTTL).
	RoomTTL time.Duration
	// MaxRooms is the most rooms open at once (DefaultMaxRooms); beyond,
	// a new room is refused with 429.
	MaxRooms int
	// MaxConnsPerSource is the most connections open at once from one
	// IPv4 address or IPv6 /64 (DefaultMaxConnsPerSource); beyond, 429.
	MaxConnsPerSource int
	// MessageRate and MessageBurst are the token bucket of each
	// connection: messages a second and at once (DefaultMessageRate,
	// DefaultMessageBurst). A client that sends faster is closed.
	MessageRate  float64
	MessageBurst int
	// PingInterval is how often the server pings each client; a client
	// that has not answered by the next ping is dropped
	// (DefaultPingInterval).
	PingInterval time.Duration
	// WriteTimeout bounds the sending of one message, and the end of a
	// connection (what is still queued for it and the close handshake),
	// after which it is cut (DefaultWriteTimeout).
	WriteTimeout time.Duration
	// Token, if not empty, must be given by every client as
	// "Authorization: Bearer TOKEN" (compared in constant time); others
	// get 401. It is never logged.
	Token string
	// Peer, if not nil, lets clients ask for the server as the second
	// member (peer=server); without it they get 501.
	Peer PeerFunc
	// MaxPeerSessions is the most Peer sessions at once
	// (DefaultMaxPeerSessions); beyond, 429.
	MaxPeerSessions int
	// PeerTimeout bounds one Peer session (DefaultPeerTimeout).
	PeerTimeout time.Duration
	// Logger receives the server's logs (default: discarded). Events of
	// one connection are logged at debug level, refusals at most once a
	// second at warn level.
	Logger *slog.Logger

	once    sync.Once
	log     *slog.Logger
	ctx     context.Context // ends at Close
	cancel  context.CancelFunc
	limiter *connlimit.Limiter
	wg      sync.WaitGroup

	mu           sync.Mutex
	closed       bool
	rooms        map[string]*room
	peerSessions int
	peerSources  map[netip.Addr]int // server-peer sessions per source (IPv4 address or IPv6 /64)
	lastRefusal  time.Time
	refusals     uint64 // since the last logged refusal

	stats struct {
		roomsCreated, joins, forwarded, peerSessions                   atomic.Uint64
		badRequest, unauthorized, full, sourceLimit, roomLimit, noPeer atomic.Uint64
		peerBusy, badMessages, rateLimited, notPresent, expired        atomic.Uint64
		dropped                                                        atomic.Uint64
	}
}

// Stats are counters of a Server since its first request.
type Stats struct {
	// Rooms is the number of rooms open now.
	Rooms uint64
	// RoomsCreated counts rooms created; Joins counts members that joined
	// a room (the WebSocket upgrade succeeded); PeerSessions counts
	// server-peer sessions started.
	RoomsCreated, Joins, PeerSessions uint64
	// Forwarded counts messages passed from one member to the other.
	Forwarded uint64
	// Refusals before the upgrade, by reason: 400 bad room name or query,
	// 401 token missing or wrong, 409 room full, 429 too many connections
	// from the source, 429 too many rooms, 429 too many server-peer
	// sessions, 501 no server peer.
	RefusedBadRequest, RefusedUnauthorized, RefusedFull, RefusedSourceLimit,
	RefusedRoomLimit, RefusedPeerBusy, RefusedNoPeer uint64
	// BadMessages counts connections closed for a bad message (not JSON,
	// unknown or control type, binary, too big); RateLimited those closed
	// for sending faster than MessageRate.
	BadMessages, RateLimited uint64
	// NotPresent counts messages sent while the other member was absent
	// (answered with an error; the connection stays).
	NotPresent uint64
	// Expired counts rooms closed at RoomTTL; Dropped counts connections
	// dropped because they stopped answering pings or reading.
	Expired, Dropped uint64
}

// Stats returns a snapshot of the server's counters.
func (s *Server) Stats() Stats {
	s.init()
	s.mu.Lock()
	rooms := uint64(len(s.rooms))
	s.mu.Unlock()
	c := &s.stats
	return Stats{
		Rooms: rooms, RoomsCreated: c.roomsCreated.Load(), Joins: c.joins.Load(), PeerSessions: c.peerSessions.Load(),
		Forwarded:         c.forwarded.Load(),
		RefusedBadRequest: c.badRequest.Load(), RefusedUnauthorized: c.unauthorized.Load(), RefusedFull: c.full.Load(),
		RefusedSourceLimit: c.sourceLimit.Load(), RefusedRoomLimit: c.roomLimit.Load(), RefusedPeerBusy: c.peerBusy.Load(),
		RefusedNoPeer: c.noPeer.Load(),
		BadMessages:   c.badMessages.Load(), RateLimited: c.rateLimited.Load(), NotPresent: c.notPresent.Load(),
		Expired: c.expired.Load(), Dropped: c.dropped.Load(),
	}
}

func (s *Server) init() {
	s.once.Do(func() {
		if s.RoomTTL <= 0 {
			s.RoomTTL = DefaultRoomTTL
		}
		if s.MaxRooms <= 0 {
			s.MaxRooms = DefaultMaxRooms
		}
		if s.MaxConnsPerSource <= 0 {
			s.MaxConnsPerSource = DefaultMaxConnsPerSource
		}
		if s.MessageRate <= 0 {
			s.MessageRate = DefaultMessageRate
		}
		if s.MessageBurst <= 0 {
			s.MessageBurst = DefaultMessageBurst
		}
		if s.PingInterval <= 0 {
			s.PingInterval = DefaultPingInterval
		}
		if s.WriteTimeout <= 0 {
			s.WriteTimeout = DefaultWriteTimeout
		}
		if s.MaxPeerSessions <= 0 {
			s.MaxPeerSessions = DefaultMaxPeerSessions
		}
		if s.PeerTimeout <= 0 {
			s.PeerTimeout = DefaultPeerTimeout
		}
		s.log = s.Logger
		if s.log == nil {
			s.log = slog.New(slog.DiscardHandler)
		}
		s.ctx, s.cancel = context.WithCancel(context.Background())
		// Two members per room; the per-source limit is what matters.
		s.limiter = connlimit.New(2*s.MaxRooms, s.MaxConnsPerSource)
		s.rooms = make(map[string]*room)
	})
}

// ValidRoom reports whether name is a room name: 1 to 64 characters of
// A-Z, a-z, 0-9, '.', '_' and '-'.
func ValidRoom(name string) bool {
	if len(name) < 1 || len(name) > 64 {
		return false
	}
	for _, c := range []byte(name) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// room is a named meeting of at most two members, indexed by role (0
// first, 1 second).
type room struct {
	name       string
	expires    time.Time
	timer      *time.Timer
	members    [2]*member
	serverPeer bool // the second member is the server (Peer)
}

// member is one member of a room: a WebSocket client, or the server peer
// (ws nil). Messages to it go through out; quit ends it.
type member struct {
	s      *Server
	room   *room
	role   int
	ws     *websocket.Conn
	conn   net.Conn // under ws
	remote netip.AddrPort
	out    chan []byte
	queued atomic.Int64 // bytes in out
	quit   chan struct{}
	lim    *rate.Limiter
	isPeer bool // the server peer

	// Guarded by s.mu.
	attached bool // upgraded (a client) or started (the server peer)

	mu          sync.Mutex
	closing     bool
	closeCode   websocket.StatusCode
	closeReason string
}

func roleName(i int) string {
	if i == 0 {
		return RoleFirst
	}
	return RoleSecond
}

// enqueue queues data for m; a member whose queue is full is dropped:
// its connection is closed at once, since a client that does not read
// would not read a close message either.
func (m *member) enqueue(data []byte) {
	m.mu.Lock()
	if m.closing {
		m.mu.Unlock()
		return
	}
	if m.queued.Load()+int64(len(data)) <= queueBytes && m.push(data) {
		m.mu.Unlock()
		return
	}
	m.mu.Unlock()
	m.s.stats.dropped.Add(1)
	m.s.log.Debug("pair member dropped: not reading", "room", m.room.name, "role", roleName(m.role), "remote", m.remote)
	m.closeWith(websocket.StatusPolicyViolation, "not reading", "")
	if m.ws != nil {
		// Not under the caller's lock: the close may wait for a write.
		go m.ws.CloseNow()
	}
}

// push adds data to m.out unless it is full; m.mu is held.
func (m *member) push(data []byte) bool {
	select {
	case m.out <- data:
		m.queued.Add(int64(len(data)))
		return true
	default:
		return false
	}
}

// pop is the receiving end of m.out.
func (m *member) pop(data []byte) []byte {
	m.queued.Add(-int64(len(data)))
	return data
}

// closeWith ends m: errMsg, if not empty, is sent as an error message
// after what is queued, and then the WebSocket closes with code and
// reason. Only the first call counts.
func (m *member) closeWith(code websocket.StatusCode, reason, errMsg string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closing {
		return
	}
	if errMsg != "" {
		m.push(errorMessage(errMsg))
	}
	m.closing, m.closeCode, m.closeReason = true, code, reason
	close(m.quit)
}

// Close ends m as the server shuts down (connlimit calls it).
func (m *member) Close() error {
	m.closeWith(websocket.StatusGoingAway, "server shutting down", "rendezvous shutting down")
	return nil
}

// closedErr is the error of the server peer's Conn once m has ended.
func (m *member) closedErr() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closeReason != "" {
		return fmt.Errorf("%w: %s", ErrClosed, m.closeReason)
	}
	return ErrClosed
}

func errorMessage(text string) []byte {
	data, _ := json.Marshal(Message{Type: TypeError, Error: text})
	return data
}

func mustMarshal(m Message) []byte {
	data, err := json.Marshal(m)
	if err != nil {
		panic(err) // a Message of strings, ints and bools always marshals
	}
	return data
}

// refuse answers a request before the upgrade with status and a one-line
// text body, and counts and logs the refusal.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, status int, counter *atomic.Uint64, reason, text string) {
	counter.Add(1)
	s.mu.Lock()
	s.refusals++
	now := time.Now()
	logIt := now.Sub(s.lastRefusal) >= time.Second
	n := s.refusals
	if logIt {
		s.lastRefusal, s.refusals = now, 0
	}
	s.mu.Unlock()
	if logIt {
		s.log.Warn("pair refused", "status", status, "reason", reason, "remote", r.RemoteAddr, "refusals", n)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	fmt.Fprintln(w, text)
}

// tokenOK compares the request's bearer token with s.Token in constant
// time (of their SHA-256, so that not even the length shows).
func (s *Server) tokenOK(r *http.Request) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false
	}
	a, b := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(s.Token))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// ServeHTTP serves one member of a room: GET ?room=NAME[&peer=server].
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.init()
	c := &s.stats
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		s.refuse(w, r, http.StatusMethodNotAllowed, &c.badRequest, "method", "use GET with a WebSocket upgrade")
		return
	}
	q := r.URL.Query()
	name := q.Get("room")
	if len(q["room"]) != 1 || !ValidRoom(name) {
		s.refuse(w, r, http.StatusBadRequest, &c.badRequest, "room", "give ?room=NAME: 1 to 64 characters of A-Z a-z 0-9 . _ -")
		return
	}
	peerServer := false
	switch v := q["peer"]; {
	case len(v) == 0:
	case len(v) == 1 && v[0] == "server":
		peerServer = true
	default:
		s.refuse(w, r, http.StatusBadRequest, &c.badRequest, "peer", `peer must be "server" or absent`)
		return
	}
	if s.Token != "" && !s.tokenOK(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="natcheck pair"`)
		s.refuse(w, r, http.StatusUnauthorized, &c.unauthorized, "token", "pair token missing or wrong: give the server's token (natcheck pair --pair-token-file)")
		return
	}
	if peerServer && s.Peer == nil {
		s.refuse(w, r, http.StatusNotImplemented, &c.noPeer, "no server peer", "this rendezvous offers no server peer (natcheck serve without --pair-ice)")
		return
	}
	remote, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		s.refuse(w, r, http.StatusBadRequest, &c.badRequest, "remote address", "cannot tell your address")
		return
	}
	remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())

	m := &member{
		s: s, remote: remote, out: make(chan []byte, queueLen), quit: make(chan struct{}),
		lim: rate.NewLimiter(rate.Limit(s.MessageRate), s.MessageBurst),
	}
	if ref, ok := s.limiter.Admit(m, remote.Addr()); !ok {
		if ref.Closed {
			s.refuse(w, r, http.StatusServiceUnavailable, &c.badRequest, "closing", "rendezvous shutting down")
			return
		}
		s.refuse(w, r, http.StatusTooManyRequests, &c.sourceLimit, "source limit",
			fmt.Sprintf("too many connections from your address (at most %d at once)", s.MaxConnsPerSource))
		return
	}
	defer s.limiter.Release(m)
	peer, res := s.reserve(name, m, peerServer)
	switch res {
	case reserved:
	case reserveClosed:
		s.refuse(w, r, http.StatusServiceUnavailable, &c.badRequest, "closing", "rendezvous shutting down")
		return
	case reserveFull:
		s.refuse(w, r, http.StatusConflict, &c.full, "room full", fmt.Sprintf("room %q already has two members: pick another room name", name))
		return
	case reservePeerBusy:
		s.refuse(w, r, http.StatusTooManyRequests, &c.peerBusy, "server peer busy",
			fmt.Sprintf("the server peer is busy (%d sessions at once): try again in a minute", s.MaxPeerSessions))
		return
	case reservePeerSourceBusy:
		s.refuse(w, r, http.StatusTooManyRequests, &c.peerBusy, "server peer busy for this source",
			"this address already has a session with the server peer: one at a time, try again when it ends")
		return
	case reserveRoomLimit:
		s.refuse(w, r, http.StatusTooManyRequests, &c.roomLimit, "room limit", fmt.Sprintf("too many rooms open (%d): try again later", s.MaxRooms))
		return
	}
	defer s.wg.Done() // reserve added it
	defer s.leave(m)

	hw := &hijackWriter{ResponseWriter: w}
	ws, err := websocket.Accept(hw, r, nil)
	if err != nil {
		s.log.Debug("pair upgrade failed", "remote", remote, "err", err)
		if peer != nil {
			s.abandonPeer(peer)
		}
		return
	}
	ws.SetReadLimit(-1) // readLoop limits, to answer with an error message first
	m.ws, m.conn = ws, hw.conn
	c.joins.Add(1)
	s.log.Debug("pair joined", "room", name, "role", roleName(m.role), "remote", remote, "peer_server", peerServer)

	writeDone := make(chan struct{})
	go func() {
		defer close(writeDone)
		m.writeLoop()
	}()
	go m.pingLoop(writeDone)
	s.attach(m, peer)
	m.readLoop()
	// The read loop ends when the connection does.
	m.closeWith(websocket.StatusNormalClosure, "", "")
	<-writeDone
}

// reserve takes a place for m in room name (creating it) before the
// upgrade, so that a third member is refused with 409 rather than after.
// With peerServer it creates the room with the server peer as the second
// member, returned as peer. Any result but reserved refuses m; reserved
// adds one to s.wg.
func (s *Server) reserve(name string, m *member, peerServer bool) (peer *member, res reserveResult) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, reserveClosed
	}
	rm := s.rooms[name]
	switch {
	case rm != nil && peerServer, rm != nil && rm.serverPeer:
		return nil, reserveFull
	case rm != nil && rm.members[0] != nil && rm.members[1] != nil:
		return nil, reserveFull
	case rm == nil && len(s.rooms) >= s.MaxRooms:
		return nil, reserveRoomLimit
	case peerServer && s.peerSessions >= s.MaxPeerSessions:
		return nil, reservePeerBusy
	case peerServer && s.peerSources[peerSource(m.remote.Addr())] >= 1:
		return nil, reservePeerSourceBusy
	}
	if rm == nil {
		rm = &room{name: name, expires: time.Now().Add(s.RoomTTL), serverPeer: peerServer}
		rm.timer = time.AfterFunc(s.RoomTTL, func() { s.expire(rm) })
		s.rooms[name] = rm
		s.stats.roomsCreated.Add(1)
	}
	m.role = 0
	if rm.members[0] != nil {
		m.role = 1
	}
	m.room = rm
	rm.members[m.role] = m
	if peerServer {
		peer = &member{
			s: s, room: rm, role: 1, remote: m.remote, isPeer: true,
			out: make(chan []byte, queueLen), quit: make(chan struct{}),
		}
		rm.members[1] = peer
		s.peerSessions++
		if s.peerSources == nil {
			s.peerSources = make(map[netip.Addr]int)
		}
		s.peerSources[peerSource(m.remote.Addr())]++
		s.wg.Add(1) // for runPeer
	}
	s.wg.Add(1)
	return peer, reserved
}

type reserveResult int

const (
	reserved reserveResult = iota
	reserveClosed
	reserveFull
	reserveRoomLimit
	reservePeerBusy
	reservePeerSourceBusy
)

// peerSource is the key of the one server-peer session a source may hold:
// its IPv4 address, or its IPv6 /64 (one host usually has a whole /64).
func peerSource(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

// releasePeer gives back a server-peer session's places; s.mu is held.
func (s *Server) releasePeer(peer *member) {
	s.peerSessions--
	k := peerSource(peer.remote.Addr())
	if s.peerSources[k]--; s.peerSources[k] <= 0 {
		delete(s.peerSources, k)
	}
}

// attach sends m its joined message, tells both members when both are
// present, and starts the server peer.
func (s *Server) attach(m *member, peer *member) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rm := m.room
	m.attached = true
	expires := int(math.Ceil(time.Until(rm.expires).Seconds()))
	m.enqueue(mustMarshal(Message{
		Type: TypeJoined, Room: rm.name, Role: roleName(m.role), ExpiresInS: max(expires, 1),
		RemoteAddr: m.remote.String(),
	}))
	if peer != nil {
		peer.attached = true
		go s.runPeer(peer)
	}
	if o := rm.members[1-m.role]; o != nil && o.attached {
		present := mustMarshal(Message{Type: TypePeer, Present: new(true)})
		o.enqueue(present)
		m.enqueue(present)
	}
}

// runPeer runs s.Peer as the second member of peer's room.
func (s *Server) runPeer(peer *member) {
	defer s.wg.Done()
	ctx, cancel := context.WithTimeout(s.ctx, s.PeerTimeout)
	defer cancel()
	go func() {
		select {
		case <-peer.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	s.stats.peerSessions.Add(1)
	s.log.Debug("pair server peer started", "room", peer.room.name, "remote", peer.remote)
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("pair server peer panicked", "room", peer.room.name, "panic", p)
		}
		peer.closeWith(websocket.StatusNormalClosure, "server peer done", "")
		s.leave(peer)
		s.mu.Lock()
		s.releasePeer(peer)
		s.mu.Unlock()
		s.log.Debug("pair server peer done", "room", peer.room.name, "remote", peer.remote)
	}()
	s.Peer(ctx, peer.remote.Addr(), peerConn{peer})
}

// abandonPeer undoes the reservation of a server peer that never started
// (its client's upgrade failed).
func (s *Server) abandonPeer(peer *member) {
	s.mu.Lock()
	if peer.room.members[1] == peer {
		peer.room.members[1] = nil
	}
	s.releasePeer(peer)
	s.mu.Unlock()
	s.wg.Done() // reserve's for runPeer
}

// leave takes m out of its room: the other member learns that it left,
// and the room closes when empty. In a server-peer room the server peer
// leaves with its client.
func (s *Server) leave(m *member) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rm := m.room
	if rm == nil || rm.members[m.role] != m {
		return
	}
	rm.members[m.role] = nil
	o := rm.members[1-m.role]
	if o != nil && m.attached && o.attached {
		o.enqueue(mustMarshal(Message{Type: TypePeer, Present: new(false)}))
	}
	if o != nil && o.isPeer {
		o.closeWith(websocket.StatusNormalClosure, "client left", "")
	}
	if rm.members[0] == nil && rm.members[1] == nil && s.rooms[rm.name] == rm {
		rm.timer.Stop()
		delete(s.rooms, rm.name)
	}
}

// expire closes room rm at its RoomTTL.
func (s *Server) expire(rm *room) {
	s.mu.Lock()
	if s.rooms[rm.name] != rm {
		s.mu.Unlock()
		return
	}
	delete(s.rooms, rm.name)
	members := rm.members
	s.mu.Unlock()
	s.stats.expired.Add(1)
	s.log.Debug("pair room expired", "room", rm.name)
	for _, m := range members {
		if m != nil {
			m.closeWith(websocket.StatusNormalClosure, "room expired",
				fmt.Sprintf("room %q expired %v after it was created: join a new room to go on", rm.name, s.RoomTTL))
		}
	}
}

// forward passes data, a valid peer message from m, to the other member,
// or answers m with an error if there is none.
func (s *Server) forward(m *member, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rm := m.room
	if o := rm.members[1-m.role]; o != nil && o.attached && rm.members[m.role] == m {
		o.enqueue(data)
		s.stats.forwarded.Add(1)
		return
	}
	s.stats.notPresent.Add(1)
	m.enqueue(errorMessage("no peer in the room yet: wait for the peer message with present true before sending"))
}

// readLoop reads m's messages until its connection ends.
func (m *member) readLoop() {
	s := m.s
	failed := false
	fail := func(counter *atomic.Uint64, code websocket.StatusCode, reason, text string) {
		failed = true
		counter.Add(1)
		s.log.Debug("pair bad message", "room", m.room.name, "remote", m.remote, "err", text)
		m.closeWith(code, reason, text)
	}
	for {
		typ, rd, err := m.ws.Reader(s.ctx)
		if err != nil {
			return
		}
		data, err := io.ReadAll(io.LimitReader(rd, MaxMessage+1))
		if err != nil {
			return
		}
		if failed {
			continue // closing: only waiting for the close handshake
		}
		if len(data) > MaxMessage {
			fail(&s.stats.badMessages, websocket.StatusMessageTooBig, "message too big", fmt.Sprintf("message larger than %d bytes", MaxMessage))
			// Skip the rest, bounded by the close handshake's timeout.
			_, _ = io.Copy(io.Discard, rd)
			continue
		}
		if !m.lim.Allow() {
			fail(&s.stats.rateLimited, websocket.StatusPolicyViolation, "rate limit",
				fmt.Sprintf("more than %g messages a second (burst %d): slow down", s.MessageRate, s.MessageBurst))
			continue
		}
		if typ != websocket.MessageText {
			fail(&s.stats.badMessages, websocket.StatusPolicyViolation, "bad message", "binary message: send JSON text messages")
			continue
		}
		if _, err := validateMessage(data); err != nil {
			fail(&s.stats.badMessages, websocket.StatusPolicyViolation, "bad message", err.Error())
			continue
		}
		s.forward(m, data)
	}
}

// writeLoop sends m's queued messages until m ends, then closes the
// WebSocket with m's close code.
func (m *member) writeLoop() {
	s := m.s
	write := func(data []byte) bool {
		ctx, cancel := context.WithTimeout(s.ctx, s.WriteTimeout)
		defer cancel()
		return m.ws.Write(ctx, websocket.MessageText, data) == nil
	}
	for {
		select {
		case data := <-m.out:
			if !write(m.pop(data)) {
				m.ws.CloseNow()
				return
			}
		case <-m.quit:
			// coder/websocket's close handshake skips the rest of a
			// frame the client has begun with no time limit: a client
			// that trickles one could hold the connection for ever.
			cut := time.AfterFunc(s.WriteTimeout, func() { _ = m.conn.Close() })
			defer cut.Stop()
			for {
				select {
				case data := <-m.out:
					if !write(m.pop(data)) {
						m.ws.CloseNow()
						return
					}
					continue
				default:
				}
				break
			}
			m.mu.Lock()
			code, reason := m.closeCode, m.closeReason
			m.mu.Unlock()
			_ = m.ws.Close(code, reason)
			return
		}
	}
}

// pingLoop pings m every PingInterval and drops it when a ping goes
// unanswered for as long.
func (m *member) pingLoop(done <-chan struct{}) {
	s := m.s
	t := time.NewTicker(s.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-m.quit:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(s.ctx, s.PingInterval)
			err := m.ws.Ping(ctx)
			cancel()
			if err != nil {
				select {
				case <-m.quit:
				default:
					s.stats.dropped.Add(1)
					s.log.Debug("pair member dropped: no pong", "room", m.room.name, "remote", m.remote)
				}
				m.ws.CloseNow()
				return
			}
		}
	}
}

// Close closes every connection (each client gets an error message and
// the close status 1001 going away), ends the server-peer sessions and
// waits for them; later requests get 503.
func (s *Server) Close() error {
	s.init()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	var all []*member
	for _, rm := range s.rooms {
		rm.timer.Stop()
		for _, m := range rm.members {
			if m != nil {
				all = append(all, m)
			}
		}
	}
	s.mu.Unlock()
	s.cancelLater()
	for _, m := range all {
		_ = m.Close()
	}
	s.limiter.Close()
	s.wg.Wait()
	s.cancel()
	return nil
}

// cancelLater cancels s.ctx if the members have not gone after their
// close handshakes could have completed, so that Close cannot hang.
func (s *Server) cancelLater() {
	time.AfterFunc(2*s.WriteTimeout, s.cancel)
}

// hijackWriter is the ResponseWriter given to websocket.Accept: it keeps
// the connection that Accept takes over, for writeLoop to cut.
type hijackWriter struct {
	http.ResponseWriter
	conn net.Conn
}

func (h *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	h.conn = c
	return c, brw, err
}

func (h *hijackWriter) Unwrap() http.ResponseWriter { return h.ResponseWriter }

// errTooBig is validateMessage's error for a message over MaxMessage.
var errTooBig = fmt.Errorf("message larger than %d bytes", MaxMessage)

// validateMessage checks a message from a client: at most MaxMessage
// bytes, one JSON object, of a peer type.
func validateMessage(data []byte) (Message, error) {
	if len(data) > MaxMessage {
		return Message{}, errTooBig
	}
	var m Message
	if err := json.Unmarshal(data, &m); err != nil {
		return Message{}, fmt.Errorf("message is not a JSON rendezvous message: %v", err)
	}
	switch {
	case m.Type == "":
		return Message{}, errors.New(`message has no "type"`)
	case m.Type == TypeJoined || m.Type == TypePeer || m.Type == TypeError:
		return Message{}, fmt.Errorf("message type %q is sent by the server only", m.Type)
	case !slices.Contains(PeerTypes, m.Type):
		t := m.Type
		if len(t) > 32 {
			t = t[:32] + "..."
		}
		return Message{}, fmt.Errorf("unknown message type %q: send one of %s", t, strings.Join(PeerTypes, ", "))
	}
	return m, nil
}
