//go:build !linux

package portmap

import "net/netip"

// DefaultGateways is only implemented on Linux; elsewhere it returns
// ErrUnsupported for both families.
func DefaultGateways() (v4, v6 netip.Addr, err4, err6 error) {
	return netip.Addr{}, netip.Addr{}, ErrUnsupported, ErrUnsupported
}
