package turncheck

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"math"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pion/stun/v4"

	"github.com/natcheck/natcheck/natclass"
	natstun "github.com/natcheck/natcheck/stun"
)

// SoakOptions configure the long run of natcheck turn --duration.
type SoakOptions struct {
	// Duration is how long each allocation is kept alive.
	Duration time.Duration
	// Rate is the packets per second of each of the two streams
	// (ChannelData, and Send indications); zero means 10, at most 100.
	Rate int
	// MaxLoss fails the soak when more than this fraction (0 to 1) of its
	// packets did not come back.
	MaxLoss float64
	// PermissionRefresh is how often the client refreshes its permissions
	// (CreatePermission); zero means pion/turn's 2 minutes, well within
	// the 5-minute permission lifetime of RFC 8656.
	PermissionRefresh time.Duration
	// Progress, if set, is called about once a second with the partial
	// result of one server's soak, from several goroutines at once.
	Progress func(url, partial string)

	// minute is the span of a row of Minutes; zero means a minute. Tests
	// shorten it.
	minute time.Duration
}

func (o *SoakOptions) permissionRefresh() time.Duration {
	if o == nil {
		return 0
	}
	return o.PermissionRefresh
}

func (o *SoakOptions) rate() int {
	switch {
	case o.Rate <= 0:
		return 10
	case o.Rate > 100:
		return 100
	}
	return o.Rate
}

func (o *SoakOptions) span() time.Duration {
	if o.minute > 0 {
		return o.minute
	}
	return time.Minute
}

// soakMagic starts every soak packet, followed by a random token, the
// stream and a sequence number.
const soakMagic = "natcheck-soak:"

const (
	streamChannel    = 0
	streamIndication = 1
)

type soakArrival struct {
	stream byte
	seq    uint32
	from   netip.AddrPort
	at     time.Time
}

// soak keeps the allocation of a passed quick check alive for
// o.Soak.Duration: pion/turn refreshes the allocation (at half its
// lifetime), the permission (every PermissionRefresh) and the channel
// binding (after 5 minutes) by itself, and the soak records each of those
// transactions as the control connection saw it. Meanwhile two streams go
// through the relay to two local peer sockets that echo them back: one as
// ChannelData over a bound channel, the other as Send indications to a
// peer without a channel. Loss, round trips and jitter are counted per
// minute of sending.
func (c *checker) soak(ctx context.Context, relay net.PacketConn) bool {
	o := c.o.Soak
	start := time.Now()
	res := &natclass.TURNSoak{Planned: o.Duration, MaxLoss: o.MaxLoss, Refreshes: []natclass.TURNRefresh{}, Minutes: []natclass.SoakMinute{}}
	c.res.Soak = res
	defer func() { res.Elapsed = time.Since(start) }()

	rate := o.rate()
	// Bounds: every loop below ends on its count or when its socket is
	// closed.
	maxPackets := int(o.Duration.Seconds()+5) * rate
	token := make([]byte, 8)
	rand.Read(token)
	prefix := append([]byte(soakMagic), token...)
	packet := func(stream byte, seq uint32) []byte {
		b := make([]byte, 0, len(prefix)+5+32)
		b = append(b, prefix...)
		b = append(b, stream)
		b = binary.BigEndian.AppendUint32(b, seq)
		return append(b, make([]byte, 32)...)
	}
	parse := func(b []byte) (byte, uint32, bool) {
		if len(b) < len(prefix)+5 || string(b[:len(prefix)]) != string(prefix) {
			return 0, 0, false
		}
		return b[len(prefix)], binary.BigEndian.Uint32(b[len(prefix)+1:]), true
	}

	var wg sync.WaitGroup
	defer wg.Wait()
	local := c.res.Local.Addr()
	var peers [2]*net.UDPConn
	for i := range peers {
		p, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, 0)))
		if err != nil {
			c.warn("soak: opening a local peer socket: %v", err)
			res.Interrupted = true
			return true
		}
		defer p.Close()
		peers[i] = p
		wg.Go(func() {
			buf := make([]byte, 1500)
			for range maxPackets + 100 {
				n, from, err := p.ReadFromUDPAddrPort(buf)
				if err != nil {
					return
				}
				if _, seq, ok := parse(buf[:n]); ok && seq != helloSeq {
					p.WriteToUDPAddrPort(buf[:n], from)
				}
			}
		})
	}

	relay.SetReadDeadline(time.Time{}) // the quick check set one when it ended
	arrivals := make(chan soakArrival, 1024)
	wg.Go(func() {
		buf := make([]byte, 1500)
		for range 2*maxPackets + 100 {
			n, from, err := relay.ReadFrom(buf)
			if err != nil {
				return
			}
			at := time.Now()
			if st, seq, ok := parse(buf[:n]); ok {
				ua, _ := from.(*net.UDPAddr)
				select {
				case arrivals <- soakArrival{st, seq, natstun.AddrPortOf(ua), at}:
				default:
				}
			}
		}
	})
	defer relay.SetReadDeadline(time.Now())

	// Each peer's address as the relay sees it: its first packet to the
	// relayed address tells (through a NAT, the port may differ). Without
	// an answer, the quick check's peer address with this socket's port.
	var peerAddrs [2]netip.AddrPort
	base := c.res.Local.Addr()
	if c.res.Data != nil && c.res.Data.Peer.IsValid() {
		base = c.res.Data.Peer.Addr()
	}
	dest := c.res.Relayed
	if c.relayedDest.IsValid() {
		dest = c.relayedDest // through NAT64
	}
	relayed := net.UDPAddrFromAddrPort(dest)
	for i, p := range peers {
		peerAddrs[i] = netip.AddrPortFrom(base, p.LocalAddr().(*net.UDPAddr).AddrPort().Port())
		if c.o.Allow == nil || c.o.Allow(dest) == nil {
			p.WriteTo(packet(byte(i), helloSeq), relayed)
		}
	}
	helloWait := time.NewTimer(min(c.o.stepTimeout(), time.Second))
	for got := 0; got < 2; {
		select {
		case a := <-arrivals:
			if a.seq == helloSeq && a.stream < 2 {
				peerAddrs[a.stream] = a.from
				got++
			}
			continue
		case <-helloWait.C:
		case <-ctx.Done():
		}
		break
	}
	helloWait.Stop()

	span := o.span()
	nMin := int((o.Duration + span - 1) / span)
	type pkt struct {
		sent time.Time
		rtt  time.Duration // 0: not back
	}
	var sent [2][]pkt
	serverAddr := c.client.TURNServerAddr()
	send := func(stream byte) {
		seq := uint32(len(sent[stream]))
		b := packet(stream, seq)
		now := time.Now()
		sent[stream] = append(sent[stream], pkt{sent: now})
		var err error
		if stream == streamChannel {
			// pion binds a channel on the first write to a peer and sends
			// ChannelData once the binding is confirmed.
			_, err = relay.WriteTo(b, net.UDPAddrFromAddrPort(peerAddrs[stream]))
		} else {
			var m *stun.Message
			m, err = stun.Build(stun.TransactionID, stun.NewType(stun.MethodSend, stun.ClassIndication),
				xorPeer(peerAddrs[stream]), stun.RawAttribute{Type: stun.AttrData, Value: b}, stun.Fingerprint)
			if err == nil {
				_, err = c.client.WriteTo(m.Raw, serverAddr)
			}
		}
		if err != nil && len(c.res.Warnings) < 20 {
			c.warn("soak: sending through the relay: %v", err)
		}
	}

	// Refreshes, as the control connection saw them.
	c.rec.mu.Lock()
	seen := len(c.rec.responses)
	c.rec.mu.Unlock()
	lastOK := map[string]time.Time{natclass.RefreshAllocation: start, natclass.RefreshPermission: start}
	due := map[string]time.Duration{natclass.RefreshPermission: 2 * cmp.Or(max(o.PermissionRefresh, 0), 2*time.Minute)}
	if c.res.Lifetime > 0 {
		due[natclass.RefreshAllocation] = c.res.Lifetime
	}
	pollRefreshes := func(now time.Time) {
		c.rec.mu.Lock()
		rs := slices.Clone(c.rec.responses[seen:])
		seen = len(c.rec.responses)
		c.rec.mu.Unlock()
		for _, r := range rs {
			var kind string
			switch r.method {
			case stun.MethodRefresh:
				kind = natclass.RefreshAllocation
			case stun.MethodCreatePermission:
				kind = natclass.RefreshPermission
			case stun.MethodChannelBind:
				kind = natclass.RefreshChannel
			default:
				continue
			}
			if r.class == stun.ClassErrorResponse && r.code == int(stun.CodeStaleNonce) {
				continue // pion retries with the new nonce
			}
			rf := natclass.TURNRefresh{Kind: kind, At: r.at.Sub(start), RTT: r.rtt, OK: r.class == stun.ClassSuccessResponse}
			if rf.OK {
				lastOK[kind] = r.at
				if kind == natclass.RefreshChannel {
					// A channel binding lasts 10 minutes (RFC 8656 section
					// 12); one not renewed by then has expired.
					due[kind] = channelLifetime
				}
			} else {
				rf.Code = r.code
				rf.Error = fmt.Sprintf("the server refused the %s refresh (error %d)", kind, r.code)
			}
			res.Refreshes = append(res.Refreshes, rf)
		}
		for kind, d := range due {
			if now.Sub(lastOK[kind]) > d {
				res.Refreshes = append(res.Refreshes, natclass.TURNRefresh{Kind: kind, At: now.Sub(start),
					Error: fmt.Sprintf("no successful %s refresh within %s: it has expired on the server", kind, d.Round(time.Second))})
				lastOK[kind] = now
			}
		}
	}

	get := func(p pkt) (time.Time, time.Duration) { return p.sent, p.rtt }
	// stats counts the packets sent so far, leaving out the last second's,
	// which may still be on their way.
	stats := func() natclass.SoakStats {
		cut := time.Now().Add(-time.Second)
		n := func(ps []pkt) []pkt {
			i, _ := slices.BinarySearchFunc(ps, cut, func(p pkt, t time.Time) int { return p.sent.Compare(t) })
			return ps[:i]
		}
		return soakStats(n(sent[0]), n(sent[1]), get, start, -1, span)
	}
	report := func() {
		if o.Progress == nil {
			return
		}
		t := stats()
		o.Progress(c.res.URL, fmt.Sprintf("%d refreshes (%d failed), %d sent, loss %.1f%%, rtt p50 %s",
			len(res.Refreshes), res.RefreshFailures(), t.Sent, 100*t.Loss(), t.RTTP50.Round(10*time.Microsecond)))
	}

	tick := time.NewTicker(time.Second / time.Duration(2*rate))
	defer tick.Stop()
	second := time.NewTicker(time.Second)
	defer second.Stop()
	end := time.NewTimer(o.Duration)
	defer end.Stop()
	var grace <-chan time.Time
	next := byte(streamChannel)
	arrive := func(a soakArrival) {
		if a.stream < 2 && int(a.seq) < len(sent[a.stream]) && sent[a.stream][a.seq].rtt == 0 {
			sent[a.stream][a.seq].rtt = max(a.at.Sub(sent[a.stream][a.seq].sent), time.Nanosecond)
		}
	}
loop:
	for {
		select {
		case a := <-arrivals:
			arrive(a)
		case <-tick.C:
			if grace == nil && len(sent[next]) < maxPackets {
				send(next)
				next ^= 1
			}
		case now := <-second.C:
			pollRefreshes(now)
			report()
		case <-end.C:
			// Stragglers: one more second for the last packets.
			grace = time.After(min(c.o.stepTimeout(), time.Second))
		case <-grace:
			break loop
		case <-ctx.Done():
			res.Interrupted = true
			break loop
		}
	}
	// Whatever is already queued.
	for range len(arrivals) {
		arrive(<-arrivals)
	}
	pollRefreshes(time.Now())
	if res.Interrupted {
		// Cut short: the last second's packets may still be on their way.
		cut := time.Now().Add(-time.Second)
		for i := range sent {
			k, _ := slices.BinarySearchFunc(sent[i], cut, func(p pkt, t time.Time) int { return p.sent.Compare(t) })
			sent[i] = sent[i][:k]
		}
	}
	res.Total = soakStats(sent[0], sent[1], get, start, -1, span)
	for m := range nMin {
		st := soakStats(sent[0], sent[1], get, start, m, span)
		if st.Sent == 0 {
			continue
		}
		res.Minutes = append(res.Minutes, natclass.SoakMinute{Minute: m, SoakStats: st})
	}
	return c.judgeSoak()
}

// channelLifetime is how long a channel binding lasts (RFC 8656 section 12).
const channelLifetime = 10 * time.Minute

// judgeSoak fails the check on a failed refresh or a loss above MaxLoss.
func (c *checker) judgeSoak() bool {
	res := c.res.Soak
	var why []string
	if n := res.RefreshFailures(); n > 0 {
		for _, r := range res.Refreshes {
			if !r.OK {
				why = append(why, fmt.Sprintf("%d of %d refreshes failed, the first at %s: %s", n, len(res.Refreshes), r.At.Round(time.Second), r.Error))
				break
			}
		}
	}
	if l := res.Total.Loss(); l > res.MaxLoss {
		why = append(why, fmt.Sprintf("%.1f%% of %d packets through the relay were lost (limit %.1f%%)", 100*l, res.Total.Sent, 100*res.MaxLoss))
	}
	if len(why) == 0 {
		return true
	}
	c.res.FailedStep = natclass.TURNStepSoak
	c.res.Error = strings.Join(why, "; ")
	c.res.Hint = "the relay worked at first but not for the whole run: check the server's allocation, permission and channel lifetimes and quotas, and middleboxes that expire UDP flows; the per-minute rows show when it began"
	return false
}

// xorPeer is an XOR-PEER-ADDRESS attribute (RFC 8656 section 18.3).
type xorPeer netip.AddrPort

func (x xorPeer) AddTo(m *stun.Message) error {
	a := netip.AddrPort(x)
	return (&stun.XORMappedAddress{IP: a.Addr().AsSlice(), Port: int(a.Port())}).AddToAs(m, stun.AttrXORPeerAddress)
}

// soakStats counts the packets of two streams sent in minute m (span
// long, from start), or all of them when m is negative. get returns a
// packet's send time and round trip (0: lost).
func soakStats[P any](ch, ind []P, get func(P) (time.Time, time.Duration), start time.Time, m int, span time.Duration) natclass.SoakStats {
	var st natclass.SoakStats
	var rtts []time.Duration
	var jsum time.Duration
	var jn int
	for i, stream := range [][]P{ch, ind} {
		var prev time.Duration
		for _, p := range stream {
			at, rtt := get(p)
			if m >= 0 && int(at.Sub(start)/span) != m {
				continue
			}
			st.Sent++
			if i == streamChannel {
				st.ChannelSent++
			} else {
				st.IndicationSent++
			}
			if rtt == 0 {
				prev = 0
				continue
			}
			st.Received++
			if i == streamChannel {
				st.ChannelReceived++
			} else {
				st.IndicationReceived++
			}
			rtts = append(rtts, rtt)
			if prev > 0 {
				jsum += (rtt - prev).Abs()
				jn++
			}
			prev = rtt
		}
	}
	if len(rtts) > 0 {
		slices.Sort(rtts)
		st.RTTP50 = quantile(rtts, 0.50)
		st.RTTP95 = quantile(rtts, 0.95)
		st.RTTP99 = quantile(rtts, 0.99)
	}
	if jn > 0 {
		st.Jitter = jsum / time.Duration(jn)
	}
	return st
}

// quantile is the nearest-rank q quantile of sorted.
func quantile(sorted []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
