// Command natcheck diagnoses how real-time traffic (WebRTC, VoIP, games,
// VPNs) will get through the NATs and firewalls between this host and the
// internet: directly over UDP, or only through a TURN relay, and why.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/natcheck/natcheck/portmap"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, env{getenv: os.Getenv, portmap: &portmap.Config{}})
	stop()
	os.Exit(code)
}
