package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
)

// Resolver looks up host names; *net.Resolver implements it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

func anyResolved(res map[Family][]resolved) bool {
	for _, rs := range res {
		for _, r := range rs {
			if r.addr.IsValid() {
				return true
			}
		}
	}
	return false
}

type resolved struct {
	target Target
	addr   netip.Addr // zero if none in this family
	err    string
}

// resolveAll looks up every target once for every family, all at once.
func resolveAll(ctx context.Context, cfg Config, families []Family) map[Family][]resolved {
	r := cfg.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	out := map[Family][]resolved{}
	for _, f := range families {
		out[f] = make([]resolved, len(cfg.Servers))
	}
	// A resolver that gets no answer must not eat the whole run.
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i, t := range cfg.Servers {
		if a, err := netip.ParseAddr(t.Host); err == nil {
			a = a.Unmap()
			for _, f := range families {
				rr := resolved{target: t}
				if (f == IPv4) == a.Is4() {
					rr.addr = a
				} else {
					rr.err = fmt.Sprintf("%s is not an %s address", a, f)
				}
				out[f][i] = rr
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			addrs, err := r.LookupNetIP(ctx, "ip", t.Host)
			mu.Lock()
			defer mu.Unlock()
			for _, f := range families {
				rr := resolved{target: t}
				if err != nil {
					rr.err = describeDNSError(err)
				} else {
					for _, a := range addrs {
						a = a.Unmap()
						if (f == IPv4) == a.Is4() {
							rr.addr = a
							break
						}
					}
					if !rr.addr.IsValid() {
						rr.err = fmt.Sprintf("%s has no %s address", t.Host, f)
					}
				}
				out[f][i] = rr
			}
		}()
	}
	wg.Wait()
	return out
}

func describeDNSError(err error) string {
	var de *net.DNSError
	if errors.As(err, &de) {
		switch {
		case de.IsNotFound:
			return fmt.Sprintf("DNS: no such host %s", de.Name)
		case de.IsTimeout:
			return fmt.Sprintf("DNS: lookup of %s timed out", de.Name)
		}
		return "DNS: " + de.Err
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return fmt.Sprintf("DNS: no answer within %v", resolveTimeout)
	}
	return "DNS: " + err.Error()
}
