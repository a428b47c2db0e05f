//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package probe

import (
	"errors"
	"net/netip"
	"syscall"
)

// On this system the TCP probes use separate ports: the TCP mapping
// cannot be compared across servers.
func reuseControl(_, _ string, _ syscall.RawConn) error { return nil }

func reserveTCPPort(netip.Addr) (func(), uint16, error) {
	return nil, 0, errors.New("port reuse not supported here")
}
