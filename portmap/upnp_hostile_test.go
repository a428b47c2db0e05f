package portmap

import (
	"context"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

// thirdHost is an HTTP server on 127.0.0.2, a host other than the fake
// gateway (127.0.0.1), counting the requests it gets.
func thirdHost(t *testing.T) (addr string, hits *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	hits = new(atomic.Int32)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusTeapot)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), hits
}

// TestUPnPStaysOnGateway: the gateway's SSDP LOCATION must be on the
// gateway, and so must everything natcheck fetches or posts after it: a
// description whose controlURL names another host, or a redirect to one,
// sends nothing there and fails; a URLBase (deprecated since UPnP 1.1) is
// ignored, the gateway's own URLs used.
func TestUPnPStaysOnGateway(t *testing.T) {
	for _, c := range []struct {
		name  string
		set   func(g *fakeIGD, third string)
		works bool
	}{
		{"controlURL elsewhere", func(g *fakeIGD, third string) {
			g.desc = strings.Replace(igdDesc, "<controlURL>/ctl</controlURL>", "<controlURL>http://"+third+"/ctl</controlURL>", 1)
		}, false},
		{"URLBase elsewhere", func(g *fakeIGD, third string) {
			g.desc = strings.Replace(igdDesc, "<specVersion>", "<URLBase>http://"+third+"/</URLBase><specVersion>", 1)
		}, true},
		{"redirect", func(g *fakeIGD, third string) { g.redirect = "http://" + third + "/desc.xml" }, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			third, hits := thirdHost(t)
			g := newFakeIGD(t, "198.51.100.4")
			c.set(g, third)
			cfg := g.cfg(t)
			cfg.Budget = cfg.mapTimeout()
			r := Detect(context.Background(), cfg)
			if r.UPnP.External.IsValid() != c.works {
				t.Errorf("UPnP result %+v, want an external address: %v", r.UPnP, c.works)
			}
			m, err := Map(context.Background(), cfg, MapRequest{InternalPort: 5000, Protocols: []Protocol{UPnP}})
			if (err == nil) != c.works {
				t.Errorf("Map: %v, want success: %v", err, c.works)
			}
			if err := m.Delete(context.Background()); err != nil {
				t.Error(err)
			}
			if n := hits.Load(); n != 0 {
				t.Errorf("%d requests went to %s, not the gateway", n, third)
			}
		})
	}
}

// TestUPnPHugeDescription: a description larger than maxUPnPBody is
// refused rather than read whole.
func TestUPnPHugeDescription(t *testing.T) {
	g := newFakeIGD(t, "198.51.100.4")
	g.desc = strings.Replace(igdDesc, "<friendlyName>fake", "<friendlyName>"+strings.Repeat("x", 2*maxUPnPBody), 1)
	cfg := g.cfg(t)
	cfg.Budget = cfg.mapTimeout()
	r := Detect(context.Background(), cfg)
	if r.UPnP.Answered || !strings.Contains(r.UPnP.Error, "larger than") {
		t.Fatalf("UPnP result %+v, want an error about the size", r.UPnP)
	}
}

// TestMapUPnPConflictNotDeleted: a port the gateway refused with
// ConflictInMappingEntry (718) is mapped for someone else; when the
// mapping then fails, natcheck must not delete that other mapping.
func TestMapUPnPConflictNotDeleted(t *testing.T) {
	g := newFakeIGD(t, "198.51.100.4")
	g.addFaults = []int{upnpConflict, 606}
	_, err := Map(context.Background(), g.cfg(t), MapRequest{InternalPort: 5000, Protocols: []Protocol{UPnP}})
	if err == nil {
		t.Fatal("Map succeeded")
	}
	for _, c := range g.calls() {
		if strings.HasPrefix(c, "DeletePortMapping ") {
			t.Errorf("deleted a mapping the gateway never granted natcheck: %s", c)
		}
	}
}
