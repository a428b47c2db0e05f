//go:build linux || darwin || freebsd || netbsd || openbsd

package probe

import (
	"errors"
	"net/netip"
	"syscall"
)

// reuseControl sets SO_REUSEADDR and SO_REUSEPORT so that several TCP
// connections can be made from one local port.
func reuseControl(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		if serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); serr != nil {
			return
		}
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, soReusePort, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

// reserveTCPPort binds an idle TCP socket with port reuse to ip:0 and
// returns its port; the TCP probes then connect from that port. release
// closes the socket.
func reserveTCPPort(ip netip.Addr) (release func(), port uint16, err error) {
	ip = ip.Unmap()
	var domain int
	var sa syscall.Sockaddr
	switch {
	case ip.Is4():
		domain, sa = syscall.AF_INET, &syscall.SockaddrInet4{Addr: ip.As4()}
	case ip.Is6() && ip.Zone() == "":
		domain, sa = syscall.AF_INET6, &syscall.SockaddrInet6{Addr: ip.As16()}
	default:
		return nil, 0, errors.New("no address to reserve a port on")
	}
	fd, err := syscall.Socket(domain, syscall.SOCK_STREAM, 0)
	if err != nil {
		return nil, 0, err
	}
	fail := func(err error) (func(), uint16, error) {
		_ = syscall.Close(fd)
		return nil, 0, err
	}
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
		return fail(err)
	}
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, soReusePort, 1); err != nil {
		return fail(err)
	}
	if err := syscall.Bind(fd, sa); err != nil {
		return fail(err)
	}
	got, err := syscall.Getsockname(fd)
	if err != nil {
		return fail(err)
	}
	switch a := got.(type) {
	case *syscall.SockaddrInet4:
		port = uint16(a.Port)
	case *syscall.SockaddrInet6:
		port = uint16(a.Port)
	default:
		return fail(errors.New("unexpected socket address"))
	}
	return func() { _ = syscall.Close(fd) }, port, nil
}
