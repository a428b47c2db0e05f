package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
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

// MaxHostNameLen is the longest host name DNS can carry (RFC 1035 section
// 2.3.4: 255 octets on the wire, 253 characters written without the
// trailing dot).
const MaxHostNameLen = 253

// CheckHostName reports why host, which is not an IP address, cannot be
// a host name, or nil: at most 253 characters (a trailing dot aside),
// labels of 1 to 63 letters, digits, '-' (not first or last) and '_', and
// a last label that is not all digits (RFC 1123 section 2.1, RFC 3696
// section 2). The error does not quote host: the caller names it.
func CheckHostName(host string) error {
	name := strings.TrimSuffix(host, ".")
	switch {
	case name == "":
		return errors.New("empty host name")
	case len(name) > MaxHostNameLen:
		return fmt.Errorf("the host name is %d characters long; DNS allows at most %d", len(name), MaxHostNameLen)
	}
	labels := strings.Split(name, ".")
	for _, l := range labels {
		switch {
		case l == "":
			return errors.New("the host name has an empty label (a leading dot or two dots in a row)")
		case len(l) > 63:
			return fmt.Errorf("a label of the host name (a part between dots) is %d characters long; DNS allows at most 63", len(l))
		case l[0] == '-' || l[len(l)-1] == '-':
			return errors.New("a label of the host name (a part between dots) begins or ends with '-'")
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				if r >= 0x80 {
					return fmt.Errorf("character %q is not allowed in a host name: give an internationalized name in its ASCII (xn--) form", r)
				}
				return fmt.Errorf("character %q is not allowed in a host name (letters, digits, '-' and '_' only)", r)
			}
		}
	}
	if strings.Trim(labels[len(labels)-1], "0123456789") == "" {
		return errors.New("neither an IP address nor a host name (a host name does not end in a number)")
	}
	return nil
}
