//go:build linux

package portmap

import (
	"io"
	"net/netip"
	"os"
)

// DefaultGateways reads the default gateway of each family from the routing
// table of the calling thread's network namespace (/proc/thread-self, so
// that a thread that joined another namespace sees that namespace's table).
func DefaultGateways() (v4, v6 netip.Addr, err4, err6 error) {
	v4, err4 = readRoute("net/route", parseRoute4)
	v6, err6 = readRoute("net/ipv6_route", parseRoute6)
	return
}

func readRoute(name string, parse func(io.Reader) (netip.Addr, error)) (netip.Addr, error) {
	f, err := os.Open("/proc/thread-self/" + name)
	if err != nil {
		f, err = os.Open("/proc/" + name)
	}
	if err != nil {
		return netip.Addr{}, err
	}
	defer f.Close()
	return parse(f)
}
