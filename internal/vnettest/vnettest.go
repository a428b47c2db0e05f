// Package vnettest builds pion/transport vnet topologies for tests: a WAN
// router, hosts with static IPs on it, and NAT routers with hosts behind
// them, optionally nested and with packet loss.
//
// pion/transport v4.1.0 wants the whole tree built before it starts, so a
// test adds everything and then calls Start on the WAN:
//
//	wan := vnettest.NewWAN(t)
//	server := wan.Host("1.2.3.4", "1.2.3.5")
//	client := wan.NAT("10.0.0.0/24", "27.1.1.1", &vnet.NATType{}).Host("10.0.0.2")
//	wan.Start()
package vnettest

import (
	"testing"

	"github.com/pion/logging"
	"github.com/pion/transport/v5/vnet"
)

// Router is a vnet router under construction: the WAN or a NAT on it.
// Its methods fail the test on error.
type Router struct {
	*vnet.Router
	tb testing.TB
	lf logging.LoggerFactory
}

// NewWAN returns a router for 0.0.0.0/0 whose log shows errors only.
func NewWAN(tb testing.TB) *Router {
	tb.Helper()
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelError
	r, err := vnet.NewRouter(&vnet.RouterConfig{CIDR: "0.0.0.0/0", LoggerFactory: lf})
	if err != nil {
		tb.Fatal(err)
	}
	return &Router{Router: r, tb: tb, lf: lf}
}

// Host adds a host with the static IPs ips to r.
func (r *Router) Host(ips ...string) *vnet.Net {
	r.tb.Helper()
	return r.LossyHost(0, ips...)
}

// LossyHost adds a host with the static IPs ips to r whose interface drops
// percent of the packets it receives (vnet.NewLossFilter); 0 is no loss.
func (r *Router) LossyHost(percent int, ips ...string) *vnet.Net {
	r.tb.Helper()
	n, err := vnet.NewNet(&vnet.NetConfig{StaticIPs: ips})
	if err != nil {
		r.tb.Fatal(err)
	}
	var nic vnet.NIC = n
	if percent > 0 {
		if nic, err = vnet.NewLossFilter(n, percent); err != nil {
			r.tb.Fatal(err)
		}
	}
	if err := r.AddNet(nic); err != nil {
		r.tb.Fatal(err)
	}
	return n
}

// NAT adds to r a NAT router of type nat for the private network cidr,
// with the public address ext on r's side, and returns it for its hosts.
func (r *Router) NAT(cidr, ext string, nat *vnet.NATType) *Router {
	r.tb.Helper()
	lan, err := vnet.NewRouter(&vnet.RouterConfig{
		CIDR: cidr, StaticIPs: []string{ext}, NATType: nat, LoggerFactory: r.lf,
	})
	if err != nil {
		r.tb.Fatal(err)
	}
	if err := r.AddRouter(lan); err != nil {
		r.tb.Fatal(err)
	}
	return &Router{Router: lan, tb: r.tb, lf: r.lf}
}

// Start starts r and every router under it, and stops them when the test
// ends. Call it on the WAN once the tree is complete.
func (r *Router) Start() {
	r.tb.Helper()
	if err := r.Router.Start(); err != nil {
		r.tb.Fatal(err)
	}
	r.tb.Cleanup(func() {
		if err := r.Stop(); err != nil {
			r.tb.Error(err)
		}
	})
}
