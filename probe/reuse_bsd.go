//go:build darwin || freebsd || netbsd || openbsd

package probe

import "syscall"

const soReusePort = syscall.SO_REUSEPORT
