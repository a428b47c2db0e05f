package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/pion/transport/v5"

	"github.com/natcheck/natcheck/internal/connlimit"
	"github.com/natcheck/natcheck/internal/safefile"
	"github.com/natcheck/natcheck/rendezvous"
)

// servePairOptions are the rendezvous flags of natcheck serve.
type servePairOptions struct {
	http      netip.AddrPort // --http; invalid when off
	tokenFile string
	roomTTL   time.Duration
	ice       netip.AddrPort // --pair-ice; invalid when off
}

// serveHTTPPort is --http's port when none is given.
const serveHTTPPort = 8080

// servePairPeerStart starts the server peer of natcheck pair (the server
// as the second member of a room, peer=server) with its ICE sockets on
// ice, UDP and TCP (--pair-ice), and returns the hook for
// rendezvous.Server.Peer and a function that stops it. The pair engine
// sets it (cmd/natcheck/pair.go); while it is nil, --pair-ice is refused.
var servePairPeerStart func(ctx context.Context, ice netip.AddrPort, nw transport.Net, log *slog.Logger) (rendezvous.PeerFunc, func() error, error)

func addServePairFlags(fs *flag.FlagSet, p *servePairOptions) {
	fs.Func("http", fmt.Sprintf("serve the natcheck pair rendezvous (WebSocket /pair) on `IP[:PORT]` (port %d if omitted); over TLS (wss://) when --tls-cert and --tls-key are given", serveHTTPPort), func(s string) error {
		ap, err := serveParseAddrPort(s, serveHTTPPort)
		if err != nil {
			return err
		}
		p.http = ap
		return nil
	})
	fs.StringVar(&p.tokenFile, "pair-token-file", "", "rendezvous clients must give the token in `FILE` (its content, trimmed; natcheck pair --pair-token-file)")
	p.roomTTL = rendezvous.DefaultRoomTTL
	fs.Var(servePositiveDuration{&p.roomTTL, "10m"}, "pair-room-ttl", "close a rendezvous room `DURATION` after it was created")
	fs.Func("pair-ice", "be the second peer for natcheck pair --peer server, with ICE on UDP and TCP `IP:PORT` (needs --http)", func(s string) error {
		ap, err := netip.ParseAddrPort(s)
		if err != nil || ap.Addr().IsUnspecified() || ap.Port() == 0 {
			return fmt.Errorf("%q is not IP:PORT with a concrete address and port", s)
		}
		p.ice = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		return nil
	})
}

// check is called after fs parsed the flags.
func (p *servePairOptions) check(fs *flag.FlagSet) error {
	if !p.http.IsValid() {
		var err error
		fs.Visit(func(f *flag.Flag) {
			if err == nil && strings.HasPrefix(f.Name, "pair-") {
				err = fmt.Errorf("--%s needs --http IP[:PORT]", f.Name)
			}
		})
		return err
	}
	if p.ice.IsValid() && servePairPeerStart == nil {
		return errors.New("--pair-ice: this natcheck has no server peer")
	}
	return nil
}

// readPairToken reads --pair-token-file: its content, trimmed; it must not
// be empty. Errors never hold the content.
func readPairToken(file string) (string, error) {
	b, err := safefile.Read(file, safefile.MaxSecret)
	if err != nil {
		return "", fmt.Errorf("--pair-token-file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	switch {
	case tok == "":
		return "", fmt.Errorf("--pair-token-file %s is empty: put the token in it", file)
	case strings.ContainsAny(tok, "\r\n"):
		return "", fmt.Errorf("--pair-token-file %s has more than one line: the token is one line", file)
	}
	return tok, nil
}

// servePair is the running rendezvous of natcheck serve.
type servePair struct {
	srv      *rendezvous.Server
	http     *http.Server
	ln       net.Listener
	limiter  *connlimit.Listener
	stopPeer func() error
	done     chan struct{}
}

// startServePair starts the rendezvous on --http: TLS when tlsCfg is not
// nil, clients needing token when it is not empty. Connections are limited as STUN's are (--max-conns,
// --max-conns-per-source, --idle-timeout for the first bytes).
func startServePair(ctx context.Context, o serveOptions, token string, tlsCfg *tls.Config, nw transport.Net, log *slog.Logger) (*servePair, error) {
	p := o.pair
	log = log.With("component", "pair")
	srv := &rendezvous.Server{RoomTTL: p.roomTTL, Token: token, Logger: log}
	sp := &servePair{srv: srv, done: make(chan struct{})}
	if p.ice.IsValid() {
		peer, stop, err := servePairPeerStart(ctx, p.ice, nw, log)
		if err != nil {
			return nil, fmt.Errorf("--pair-ice %v: %w", p.ice, err)
		}
		srv.Peer, sp.stopPeer = peer, stop
	}
	ln, err := net.Listen("tcp", p.http.String())
	if err != nil {
		if sp.stopPeer != nil {
			_ = sp.stopPeer()
		}
		return nil, fmt.Errorf("--http: %w", err)
	}
	sp.limiter = connlimit.NewListener(ln, connlimit.ListenerConfig{
		MaxConns: o.maxConns, MaxConnsPerSource: o.maxConnsPerSource, FirstTimeout: o.idleTimeout,
	})
	sp.ln = sp.limiter
	scheme := "ws"
	if tlsCfg != nil {
		sp.ln = tls.NewListener(sp.limiter, tlsCfg)
		scheme = "wss"
	}
	mux := http.NewServeMux()
	mux.Handle("/pair", srv)
	sp.http = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: o.idleTimeout,
		IdleTimeout:       o.idleTimeout,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	go func() {
		defer close(sp.done)
		if err := sp.http.Serve(sp.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", "err", err)
		}
	}()
	log.Info("pair listening", "http", ln.Addr().String(), "url", fmt.Sprintf("%s://%s/pair", scheme, ln.Addr()),
		"token", srv.Token != "", "room_ttl", p.roomTTL.String(), "server_peer", p.ice.IsValid())
	return sp, nil
}

// Close stops the rendezvous: no new connections, every room closed.
func (sp *servePair) Close() error {
	err := sp.http.Close()
	<-sp.done
	sp.srv.Close()
	sp.limiter.CloseConns()
	if sp.stopPeer != nil {
		if perr := sp.stopPeer(); perr != nil && err == nil {
			err = perr
		}
	}
	return err
}

// serveLogPairStats logs the rendezvous counters if they changed since
// last (or always with force) and returns them.
func serveLogPairStats(log *slog.Logger, sp *servePair, last rendezvous.Stats, force bool) rendezvous.Stats {
	st := sp.srv.Stats()
	if force || st != last {
		log.Info("pair stats", "rooms", st.Rooms, "rooms_created", st.RoomsCreated, "joins", st.Joins,
			"peer_sessions", st.PeerSessions, "forwarded", st.Forwarded,
			"refused_bad_request", st.RefusedBadRequest, "refused_unauthorized", st.RefusedUnauthorized,
			"refused_full", st.RefusedFull, "refused_source_limit", st.RefusedSourceLimit,
			"refused_room_limit", st.RefusedRoomLimit, "refused_peer_busy", st.RefusedPeerBusy,
			"refused_no_peer", st.RefusedNoPeer, "bad_messages", st.BadMessages, "rate_limited", st.RateLimited,
			"not_present", st.NotPresent, "expired", st.Expired, "dropped", st.Dropped)
	}
	return st
}
