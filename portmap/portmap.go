package portmap

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Protocol names a port mapping protocol as the report spells it.
type Protocol string

const (
	UPnP   Protocol = "upnp"
	NATPMP Protocol = "nat-pmp"
	PCP    Protocol = "pcp"
)

// DefaultBudget is how long Detect waits for answers by default.
const DefaultBudget = 250 * time.Millisecond

// MaxLifetime is the longest mapping Map asks for.
const MaxLifetime = 2 * time.Minute

// Config says where the gateway is and how long to wait. The zero value
// asks the default gateways from the routing table, on the standard ports,
// within DefaultBudget.
type Config struct {
	// Gateway4 and Gateway6 are the gateways to ask; zero: the default
	// route's of that family (DefaultGateways). Set one to ask only it.
	Gateway4, Gateway6 netip.Addr
	// PMPPort is the NAT-PMP and PCP port (zero: 5351); SSDPPort the
	// UPnP one (zero: 1900). Tests point these at loopback servers.
	PMPPort, SSDPPort uint16
	// NoMulticast sends the SSDP search only to the gateway, not also to
	// 239.255.255.250.
	NoMulticast bool
	// Budget bounds Detect (zero: DefaultBudget).
	Budget time.Duration
	// MapTimeout bounds each protocol's attempt in Map and each Delete
	// (zero: 2 s).
	MapTimeout time.Duration
}

func (c Config) budget() time.Duration {
	if c.Budget > 0 {
		return c.Budget
	}
	return DefaultBudget
}

func (c Config) mapTimeout() time.Duration {
	if c.MapTimeout > 0 {
		return c.MapTimeout
	}
	return 2 * time.Second
}

func (c Config) pmpPort() uint16 {
	if c.PMPPort != 0 {
		return c.PMPPort
	}
	return gatewayPort
}

func (c Config) ssdpPort() uint16 {
	if c.SSDPPort != 0 {
		return c.SSDPPort
	}
	return 1900
}

// gateways returns the gateways to ask and why a family has none.
func (c Config) gateways() (v4, v6 netip.Addr, why string) {
	if c.Gateway4.IsValid() || c.Gateway6.IsValid() {
		return c.Gateway4, c.Gateway6, ""
	}
	v4, v6, err4, err6 := DefaultGateways()
	if err4 != nil && err6 != nil {
		if errors.Is(err4, ErrNoGateway) && errors.Is(err6, ErrNoGateway) {
			return v4, v6, "no default gateway"
		}
		return v4, v6, err4.Error()
	}
	return v4, v6, ""
}

// ProtocolResult is what one protocol found.
type ProtocolResult struct {
	// Answered: the gateway answered in this protocol (a refusal is an
	// answer too; Error then says what it refused).
	Answered bool
	// Gateway is the address that answered or was asked.
	Gateway netip.Addr
	// External is the external address the gateway claims (zero if it
	// said none; PCP's ANNOUNCE carries none, only MAP does).
	External netip.Addr
	// Error says why the protocol did not answer or what failed.
	Error string
	// ResultCode is the NAT-PMP or PCP result code of a refusal (for
	// example NAT-PMP 3, network failure); 0 otherwise.
	ResultCode int
}

// Result is what Detect found.
type Result struct {
	Gateway4, Gateway6 netip.Addr
	// NoGateway says why no gateway was asked (empty if one was).
	NoGateway         string
	UPnP, NATPMP, PCP ProtocolResult
	Duration          time.Duration
}

// Any reports whether any protocol answered.
func (r Result) Any() bool { return r.UPnP.Answered || r.NATPMP.Answered || r.PCP.Answered }

// Get returns the result of protocol p.
func (r Result) Get(p Protocol) ProtocolResult {
	switch p {
	case UPnP:
		return r.UPnP
	case NATPMP:
		return r.NATPMP
	default:
		return r.PCP
	}
}

// Summary is one line: which protocols answered, or that none did.
func (r Result) Summary() string {
	var names []string
	for _, p := range []Protocol{UPnP, NATPMP, PCP} {
		if r.Get(p).Answered {
			names = append(names, string(p))
		}
	}
	if len(names) == 0 {
		if r.NoGateway != "" {
			return "no port mapping protocol answered (" + r.NoGateway + ")"
		}
		return "no port mapping protocol answered"
	}
	return "the gateway answers " + strings.Join(names, ", ")
}

// Detect asks the gateways, in parallel and within cfg's budget, whether
// they speak UPnP IGD, NAT-PMP and PCP and which external address they
// claim. It changes no state on the gateway.
func Detect(ctx context.Context, cfg Config) Result {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, cfg.budget())
	defer cancel()
	var r Result
	r.Gateway4, r.Gateway6, r.NoGateway = cfg.gateways()
	if r.NoGateway != "" {
		for _, p := range []*ProtocolResult{&r.UPnP, &r.NATPMP, &r.PCP} {
			p.Error = r.NoGateway
		}
		r.Duration = time.Since(start)
		return r
	}
	var wg sync.WaitGroup
	wg.Go(func() { r.UPnP = detectUPnP(ctx, cfg, r.Gateway4) })
	wg.Go(func() { r.NATPMP = detectNATPMP(ctx, cfg, r.Gateway4) })
	wg.Go(func() { r.PCP = detectPCP(ctx, cfg, r.Gateway4, r.Gateway6) })
	wg.Wait()
	r.Duration = time.Since(start)
	return r
}

func detectNATPMP(ctx context.Context, cfg Config, gw netip.Addr) ProtocolResult {
	res := ProtocolResult{Gateway: gw}
	if !gw.Is4() {
		res.Error = "no IPv4 gateway (NAT-PMP is IPv4 only)"
		return res
	}
	to := netip.AddrPortFrom(gw, cfg.pmpPort())
	conn, err := dial(to)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	defer conn.Close()
	answered, err := exchange(ctx, conn, to, natpmpExternalRequest(), func(b []byte) error {
		a, err := parseNATPMPExternal(b)
		if err == nil {
			res.External = a
		}
		return err
	})
	res.record(answered, err, "the gateway answered in PCP: it speaks PCP, not NAT-PMP")
	return res
}

func detectPCP(ctx context.Context, cfg Config, gw4, gw6 netip.Addr) ProtocolResult {
	var gws []netip.Addr
	for _, gw := range []netip.Addr{gw4, gw6} {
		if gw.IsValid() {
			gws = append(gws, gw)
		}
	}
	results := make([]ProtocolResult, len(gws))
	var wg sync.WaitGroup
	for i, gw := range gws {
		wg.Go(func() { results[i] = announcePCP(ctx, cfg, gw) })
	}
	wg.Wait()
	for _, r := range results {
		if r.Answered {
			return r
		}
	}
	if len(results) == 0 {
		return ProtocolResult{Error: "no gateway"}
	}
	return results[0]
}

func announcePCP(ctx context.Context, cfg Config, gw netip.Addr) ProtocolResult {
	res := ProtocolResult{Gateway: gw}
	to := netip.AddrPortFrom(gw, cfg.pmpPort())
	conn, err := dial(to)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	defer conn.Close()
	answered, err := exchange(ctx, conn, to, pcpAnnounceRequest(localAddr(conn)), func(b []byte) error {
		_, err := parsePCP(b, pcpOpAnnounce, [12]byte{}, 0)
		return err
	})
	res.record(answered, err, "the gateway answered in NAT-PMP: it speaks NAT-PMP, not PCP")
	return res
}

// record sets what a detection exchange found: answered, and the error
// with the refusal's result code; a reply in the other protocol's version
// is no answer in this one, and otherVersion says so.
func (res *ProtocolResult) record(answered bool, err error, otherVersion string) {
	res.Answered = answered
	if errors.Is(err, errOtherVersion) {
		res.Answered = false
		err = errors.New(otherVersion)
	}
	if err != nil {
		res.Error = err.Error()
		var re *ResultError
		if errors.As(err, &re) {
			res.ResultCode = re.Code
		}
	}
}

// Mapping is a UDP port mapping on the gateway. Delete removes it.
type Mapping struct {
	Protocol Protocol
	// Internal is the local address and port the gateway forwards to.
	Internal netip.AddrPort
	// External is the address and port the gateway says it forwards from
	// (the address may be zero with NAT-PMP when the external address
	// request failed).
	External netip.AddrPort
	Lifetime time.Duration

	timeout time.Duration
	once    sync.Once
	del     func(ctx context.Context) error
	delErr  error
}

// Delete removes the mapping. It runs even when ctx is already cancelled
// (it keeps ctx's values, not its cancellation, and gives itself the
// config's MapTimeout), so that callers can defer it; later calls return
// the first call's result.
func (m *Mapping) Delete(ctx context.Context) error {
	if m == nil {
		return nil
	}
	m.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.timeout)
		defer cancel()
		m.delErr = m.del(ctx)
	})
	return m.delErr
}

// MapRequest says what to map.
type MapRequest struct {
	// InternalPort is the local UDP port to map (required).
	InternalPort uint16
	// Lifetime of the mapping (zero or more than MaxLifetime: MaxLifetime).
	Lifetime time.Duration
	// Protocols to try, in order (empty: PCP, NAT-PMP, UPnP).
	Protocols []Protocol
}

// Map creates a UDP mapping for req.InternalPort on the IPv4 gateway with
// the first of req.Protocols that works. When an attempt fails after its
// request was sent, Map sends the protocol's delete as well, in case the
// gateway created the mapping and only the answer was lost. The error lists
// every protocol's failure.
func Map(ctx context.Context, cfg Config, req MapRequest) (*Mapping, error) {
	if req.InternalPort == 0 {
		return nil, errors.New("portmap: no internal port to map")
	}
	if req.Lifetime <= 0 || req.Lifetime > MaxLifetime {
		req.Lifetime = MaxLifetime
	}
	protos := req.Protocols
	if len(protos) == 0 {
		protos = []Protocol{PCP, NATPMP, UPnP}
	}
	gw, _, why := cfg.gateways()
	if why != "" {
		return nil, errors.New(why)
	}
	if !gw.Is4() {
		return nil, errors.New("no IPv4 gateway to ask for a mapping")
	}
	var errs []string
	for _, p := range protos {
		if ctx.Err() != nil {
			errs = append(errs, ctx.Err().Error())
			break
		}
		actx, cancel := context.WithTimeout(ctx, cfg.mapTimeout())
		var m *Mapping
		var err error
		switch p {
		case PCP:
			m, err = mapPCP(actx, cfg, gw, req)
		case NATPMP:
			m, err = mapNATPMP(actx, cfg, gw, req)
		case UPnP:
			m, err = mapUPnP(actx, cfg, gw, req)
		default:
			err = fmt.Errorf("unknown protocol %q", p)
		}
		cancel()
		if err == nil {
			m.Protocol = p
			m.timeout = cfg.mapTimeout()
			return m, nil
		}
		errs = append(errs, fmt.Sprintf("%s: %v", p, err))
	}
	return nil, fmt.Errorf("no port mapping: %s", strings.Join(errs, "; "))
}

// cleanup runs del with a fresh timeout after a failed attempt.
func cleanup(ctx context.Context, cfg Config, del func(context.Context) error) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.mapTimeout())
	defer cancel()
	_ = del(dctx)
}

func seconds(d time.Duration) uint32 { return uint32((d + time.Second - 1) / time.Second) }

func mapNATPMP(ctx context.Context, cfg Config, gw netip.Addr, req MapRequest) (*Mapping, error) {
	to := netip.AddrPortFrom(gw, cfg.pmpPort())
	conn, err := dial(to)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	local := localAddr(conn)
	var ext netip.Addr
	var extErr error
	if _, err := exchange(ctx, conn, to, natpmpExternalRequest(), func(b []byte) error {
		a, err := parseNATPMPExternal(b)
		ext = a
		return err
	}); err != nil {
		if errors.Is(err, errOtherVersion) {
			return nil, errors.New("the gateway speaks PCP, not NAT-PMP")
		}
		extErr = err
		if ctx.Err() != nil {
			return nil, err
		}
	}
	var got natpmpMapping
	_, err = exchange(ctx, conn, to, natpmpMapRequest(req.InternalPort, req.InternalPort, seconds(req.Lifetime)), func(b []byte) error {
		m, err := parseNATPMPMap(b, req.InternalPort)
		got = m
		return err
	})
	del := func(ctx context.Context) error {
		c, err := dial(to)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = exchange(ctx, c, to, natpmpMapRequest(req.InternalPort, 0, 0), func(b []byte) error {
			_, err := parseNATPMPMap(b, req.InternalPort)
			return err
		})
		return err
	}
	if err == nil && got.lifetime == 0 {
		err = errors.New("the gateway granted a lifetime of 0")
	}
	if err != nil {
		cleanup(ctx, cfg, del)
		if errors.Is(err, errOtherVersion) {
			err = errors.New("the gateway speaks PCP, not NAT-PMP")
		}
		return nil, err
	}
	_ = extErr // the mapping works without it; External's address stays zero
	return &Mapping{
		Internal: netip.AddrPortFrom(local, req.InternalPort),
		External: netip.AddrPortFrom(ext, got.external),
		Lifetime: time.Duration(got.lifetime) * time.Second,
		del:      del,
	}, nil
}

func mapPCP(ctx context.Context, cfg Config, gw netip.Addr, req MapRequest) (*Mapping, error) {
	to := netip.AddrPortFrom(gw, cfg.pmpPort())
	conn, err := dial(to)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	local := localAddr(conn)
	var nonce [12]byte
	rand.Read(nonce[:])
	var got pcpReply
	_, err = exchange(ctx, conn, to, pcpMapRequest(local, nonce, req.InternalPort, req.InternalPort, seconds(req.Lifetime)), func(b []byte) error {
		r, err := parsePCP(b, pcpOpMap, nonce, req.InternalPort)
		got = r
		return err
	})
	del := func(ctx context.Context) error {
		c, err := dial(to)
		if err != nil {
			return err
		}
		defer c.Close()
		// The delete must come from the same client address with the same
		// nonce (section 15); the port may differ.
		_, err = exchange(ctx, c, to, pcpMapRequest(local, nonce, req.InternalPort, 0, 0), func(b []byte) error {
			_, err := parsePCP(b, pcpOpMap, nonce, req.InternalPort)
			return err
		})
		return err
	}
	if err == nil && got.lifetime == 0 {
		err = errors.New("the gateway granted a lifetime of 0")
	}
	if err != nil {
		cleanup(ctx, cfg, del)
		if errors.Is(err, errOtherVersion) {
			err = errors.New("the gateway speaks NAT-PMP, not PCP")
		}
		return nil, err
	}
	return &Mapping{
		Internal: netip.AddrPortFrom(local, req.InternalPort),
		External: netip.AddrPortFrom(got.externalIP, got.external),
		Lifetime: time.Duration(got.lifetime) * time.Second,
		del:      del,
	}, nil
}
