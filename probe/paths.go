package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/pion/stun/v4"

	"github.com/natcheck/natcheck/natclass"
	natstun "github.com/natcheck/natcheck/stun"
)

// DefaultTLSPorts are the ports tried with STUN over TLS for every server:
// 443, which most firewalls let out, and the STUN/TURN TLS port.
var DefaultTLSPorts = []uint16{443, DefaultTLSPort}

// defaultPathTimeout bounds one TCP or TLS attempt: a dropped SYN must not
// hold the run.
const defaultPathTimeout = 2 * time.Second

type pathJob struct {
	transport string
	server    string
	host      string // for TLS server name
	dest      netip.AddrPort
}

// pathJobs lists the TCP and TLS attempts for one family, without
// duplicates: for every UDP target TCP on its port and TLS on each TLS port,
// for a stun:...?transport=tcp target TCP, for a stuns: target TLS.
func (e *engine) pathJobs(res []resolved) []pathJob {
	seen := map[string]bool{}
	var jobs []pathJob
	add := func(transport string, r resolved, port uint16) {
		j := pathJob{transport: transport, server: r.target.String(), host: r.target.Host, dest: netip.AddrPortFrom(r.addr, port)}
		k := transport + " " + j.dest.String()
		if !seen[k] {
			seen[k] = true
			jobs = append(jobs, j)
		}
	}
	for _, r := range res {
		if !r.addr.IsValid() {
			continue
		}
		switch r.target.Transport {
		case TransportTCP:
			add(TransportTCP, r, r.target.Port)
		case TransportTLS:
			add(TransportTLS, r, r.target.Port)
		default:
			add(TransportTCP, r, r.target.Port)
			ports := e.cfg.TLSPorts
			if ports == nil {
				ports = DefaultTLSPorts
			}
			for _, p := range ports {
				add(TransportTLS, r, p)
			}
		}
	}
	return jobs
}

// pathRunner runs TCP and TLS attempts at once. The plain TCP attempts
// share one local port, so that their mapped addresses show whether the
// NAT's TCP mapping is endpoint-independent; attempts can be added while it
// runs (the alternate address of an RFC 5780 server, once Test I named it).
type pathRunner struct {
	e        *engine
	ctx      context.Context
	cancel   context.CancelFunc
	shared   netip.AddrPort
	release  func()
	wg       sync.WaitGroup
	mu       sync.Mutex
	seen     map[string]bool
	out      []natclass.Attempt
	finished bool
	// budgetBound: the run's deadline comes before the attempts' own
	// timeout, so an attempt still waiting then is cut short, not failed.
	budgetBound bool
}

func (e *engine) startPaths(ctx context.Context, jobs []pathJob) *pathRunner {
	timeout := e.cfg.PathTimeout
	if timeout == 0 {
		timeout = defaultPathTimeout
	}
	pr := &pathRunner{e: e, seen: map[string]bool{}}
	deadline := time.Now().Add(timeout)
	if e.deadline.Before(deadline) {
		// The run's budget, not the attempt's own timeout, ends it.
		deadline, pr.budgetBound = e.deadline, true
	}
	pr.ctx, pr.cancel = context.WithDeadline(ctx, deadline)
	if release, port, err := reserveTCPPort(e.localIP); err == nil {
		pr.release = release
		pr.shared = netip.AddrPortFrom(e.localIP, port)
	}
	for _, j := range jobs {
		pr.add(j)
	}
	return pr
}

// add starts one attempt, unless the same one ran already or the runner is
// done.
func (pr *pathRunner) add(j pathJob) {
	k := j.transport + " " + j.dest.String()
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if pr.finished || pr.seen[k] || pr.ctx.Err() != nil {
		return
	}
	pr.seen[k] = true
	pr.wg.Add(1)
	go func() {
		defer pr.wg.Done()
		local := netip.AddrPortFrom(pr.e.localIP, 0)
		if j.transport == TransportTCP && pr.shared.IsValid() {
			local = pr.shared
		}
		p := pr.e.probePath(pr.ctx, j, local, pr.budgetBound)
		pr.mu.Lock()
		pr.out = append(pr.out, p)
		pr.mu.Unlock()
	}()
}

// wait waits for every attempt and returns them, TCP before TLS.
func (pr *pathRunner) wait() []natclass.Attempt {
	pr.mu.Lock()
	pr.finished = true
	pr.mu.Unlock()
	pr.wg.Wait()
	pr.cancel()
	if pr.release != nil {
		pr.release()
	}
	sort.SliceStable(pr.out, func(a, b int) bool {
		if pr.out[a].Transport != pr.out[b].Transport {
			return pr.out[a].Transport < pr.out[b].Transport
		}
		return pr.out[a].Dest.Compare(pr.out[b].Dest) < 0
	})
	return pr.out
}

func (e *engine) probePath(ctx context.Context, j pathJob, local netip.AddrPort, budgetBound bool) (p natclass.Attempt) {
	p = natclass.Attempt{Transport: j.transport, Server: j.server, Dest: j.dest, SharedPort: local.Port() != 0}
	start := time.Now()
	defer func() {
		if p.Total == 0 {
			p.Total = time.Since(start) // until the attempt gave up
		}
		// Ended from outside before it could finish: unknown, not failed.
		if !p.OK && ctx.Err() != nil && (budgetBound || errors.Is(context.Cause(ctx), errUDPDone)) {
			p.CutShort = true
		}
	}()
	d := &net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(local), Control: reuseControl}
	if local.Port() == 0 {
		d.Control = nil
	}
	if dl, ok := ctx.Deadline(); ok {
		d.Deadline = dl
	}
	network := "tcp4"
	if e.fam == IPv6 {
		network = "tcp6"
	}
	conn, err := dial(ctx, e.net.CreateDialer(d), network, j.dest.String())
	if err != nil {
		p.Error = describeDialError(err, ctx)
		e.emitPath(j, p, "connect failed: "+p.Error)
		return p
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() }) // unblock reads when cut short
	defer stop()
	p.Connected = true
	p.Connect = time.Since(start)
	p.Local = natstun.AddrPortOf(conn.LocalAddr())
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	rw := io.ReadWriter(conn)
	if j.transport == TransportTLS {
		tc, err := e.tlsHandshake(ctx, conn, j.host)
		if tc != nil {
			if st := tc.ConnectionState(); len(st.PeerCertificates) > 0 {
				p.CertNotAfter = st.PeerCertificates[0].NotAfter.UTC()
			}
		}
		if err != nil {
			p.Handshake = time.Since(start) - p.Connect
			var ce *tls.CertificateVerificationError
			if errors.As(err, &ce) {
				p.CertError = describeCertError(ce)
				if len(ce.UnverifiedCertificates) > 0 {
					p.CertNotAfter = ce.UnverifiedCertificates[0].NotAfter.UTC()
				}
				p.Error = "TLS certificate rejected: " + p.CertError
			} else {
				p.Error = "TLS handshake: " + describeDialError(err, ctx)
			}
			p.Total = time.Since(start)
			e.emitPath(j, p, p.Error)
			return p
		}
		p.Handshake = time.Since(start) - p.Connect
		rw = tc
	}
	m, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	if err != nil {
		p.Error = err.Error()
		return p
	}
	if err := natstun.WriteMessage(rw, m.Raw); err != nil {
		p.Error = "send: " + describeDialError(err, ctx)
		e.emitPath(j, p, p.Error)
		return p
	}
	resp, err := natstun.ReadMessage(rw, natstun.DefaultMaxMessageSize)
	p.Total = time.Since(start)
	switch {
	case err != nil:
		p.Error = "no STUN response: " + describeDialError(err, ctx)
	case resp.TransactionID != m.TransactionID:
		p.Error = "response with another transaction ID"
	case resp.Type != stun.BindingSuccess:
		p.Error = "unexpected response " + resp.Type.String()
	default:
		var xor stun.XORMappedAddress
		if xor.GetFrom(resp) == nil {
			p.Mapped = natstun.AddrPortFromIP(xor.IP, xor.Port)
		}
		p.OK = true
	}
	detail := p.Error
	if p.OK {
		detail = fmt.Sprintf("mapped %s in %v", p.Mapped, p.Total.Round(time.Microsecond))
	}
	e.emitPath(j, p, detail)
	return p
}

func (e *engine) emitPath(j pathJob, p natclass.Attempt, detail string) {
	if e.cfg.Trace == nil {
		return
	}
	kind := EventReply
	if !p.OK {
		kind = EventError
	}
	e.cfg.Trace(Event{Time: time.Now(), Kind: kind, Test: j.transport, SocketName: j.transport, Socket: p.Local, Peer: j.dest, Detail: detail})
}

func (e *engine) tlsHandshake(ctx context.Context, conn net.Conn, host string) (*tls.Conn, error) {
	var cfg *tls.Config
	if e.cfg.TLS != nil {
		cfg = e.cfg.TLS.Clone()
	} else {
		cfg = &tls.Config{}
	}
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	if cfg.MinVersion == 0 {
		cfg.MinVersion = tls.VersionTLS12
	}
	tc := tls.Client(conn, cfg)
	return tc, tc.HandshakeContext(ctx)
}

// dial dials with the context when the dialer supports it (the host's
// network does), else with the dialer's deadline alone.
func dial(ctx context.Context, d interface {
	Dial(network, address string) (net.Conn, error)
}, network, addr string) (net.Conn, error) {
	if cd, ok := d.(interface {
		DialContext(ctx context.Context, network, address string) (net.Conn, error)
	}); ok {
		return cd.DialContext(ctx, network, addr)
	}
	return d.Dial(network, addr)
}

func describeDialError(err error, ctx context.Context) string {
	if c := context.Cause(ctx); errors.Is(c, errUDPDone) {
		return c.Error()
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.ErrUnexpectedEOF) && ctx.Err() != nil:
		return "timed out (packets dropped on the way?)"
	case ctx.Err() != nil:
		return "timed out (packets dropped on the way?)"
	case errors.Is(err, net.ErrClosed):
		return "cut short"
	case errors.Is(err, io.EOF):
		return "connection closed by the server"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timed out (packets dropped on the way?)"
	}
	return unwrapOp(err).Error()
}

func describeCertError(ce *tls.CertificateVerificationError) string {
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ie x509.CertificateInvalidError
	switch {
	case errors.As(ce.Err, &ua):
		return "signed by an unknown authority (self-signed or private CA)"
	case errors.As(ce.Err, &he):
		return "not valid for this name: " + he.Error()
	case errors.As(ce.Err, &ie) && ie.Reason == x509.Expired:
		return "expired or not yet valid: " + ie.Error()
	}
	return ce.Err.Error()
}
