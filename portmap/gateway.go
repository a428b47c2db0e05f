package portmap

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
)

// ErrNoGateway means the routing table has no default route of that family.
var ErrNoGateway = errors.New("no default gateway")

// ErrUnsupported means the platform's routing table cannot be read; set
// Config.Gateway4 or Config.Gateway6 instead.
var ErrUnsupported = errors.New("finding the default gateway is only implemented on Linux; set the gateway address")

const maxRouteTable = 1 << 20

// parseRoute4 returns the gateway of the IPv4 default route with the lowest
// metric in a /proc/net/route table.
func parseRoute4(r io.Reader) (netip.Addr, error) {
	sc := bufio.NewScanner(io.LimitReader(r, maxRouteTable))
	var best netip.Addr
	bestMetric := -1
	first := true
	for sc.Scan() {
		if first { // header line
			first = false
			continue
		}
		f := strings.Fields(sc.Text())
		if len(f) < 8 {
			continue
		}
		// Iface Destination Gateway Flags RefCnt Use Metric Mask ...
		if f[1] != "00000000" || f[7] != "00000000" {
			continue
		}
		flags, err := strconv.ParseUint(f[3], 16, 32)
		if err != nil || flags&0x3 != 0x3 { // RTF_UP|RTF_GATEWAY
			continue
		}
		gw, err := hex.DecodeString(f[2])
		if err != nil || len(gw) != 4 {
			continue
		}
		metric, err := strconv.Atoi(f[6])
		if err != nil {
			continue
		}
		// The kernel prints the address in host byte order (little endian).
		addr := netip.AddrFrom4([4]byte{gw[3], gw[2], gw[1], gw[0]})
		if addr.IsUnspecified() {
			continue
		}
		if bestMetric < 0 || metric < bestMetric {
			best, bestMetric = addr, metric
		}
	}
	if err := sc.Err(); err != nil {
		return netip.Addr{}, fmt.Errorf("reading the IPv4 routing table: %w", err)
	}
	if !best.IsValid() {
		return netip.Addr{}, fmt.Errorf("IPv4: %w", ErrNoGateway)
	}
	return best, nil
}

// parseRoute6 returns the next hop of the IPv6 default route with the
// lowest metric in a /proc/net/ipv6_route table; a link-local next hop gets
// its interface as zone.
func parseRoute6(r io.Reader) (netip.Addr, error) {
	sc := bufio.NewScanner(io.LimitReader(r, maxRouteTable))
	var best netip.Addr
	var bestMetric uint64
	for sc.Scan() {
		// dst dstlen src srclen nexthop metric refcnt use flags iface
		f := strings.Fields(sc.Text())
		if len(f) < 10 || f[0] != strings.Repeat("0", 32) || f[1] != "00" {
			continue
		}
		flags, err := strconv.ParseUint(f[8], 16, 32)
		if err != nil || flags&0x3 != 0x3 || flags&0x200 != 0 { // RTF_UP|RTF_GATEWAY, not RTF_REJECT
			continue
		}
		nh, err := hex.DecodeString(f[4])
		if err != nil || len(nh) != 16 {
			continue
		}
		metric, err := strconv.ParseUint(f[5], 16, 32)
		if err != nil {
			continue
		}
		addr := netip.AddrFrom16([16]byte(nh))
		if addr.IsUnspecified() {
			continue
		}
		if addr.IsLinkLocalUnicast() {
			addr = addr.WithZone(f[9])
		}
		if !best.IsValid() || metric < bestMetric {
			best, bestMetric = addr, metric
		}
	}
	if err := sc.Err(); err != nil {
		return netip.Addr{}, fmt.Errorf("reading the IPv6 routing table: %w", err)
	}
	if !best.IsValid() {
		return netip.Addr{}, fmt.Errorf("IPv6: %w", ErrNoGateway)
	}
	return best, nil
}
