package probe

import (
	"testing"
	"time"

	"github.com/pion/transport/v5/vnet"

	"github.com/natcheck/natcheck/natclass"
)

// BenchmarkDiagnosePortRestricted times a full diagnosis (an RFC 5780 server
// and a plain server) behind an endpoint-independent-mapping,
// address-and-port-dependent-filtering NAT: the case where classic tools
// spend seconds waiting for replies the NAT is meant to drop.
func BenchmarkDiagnosePortRestricted(b *testing.B) {
	l := newVlab(b, vlabOpts{nat: &vnet.NATType{MappingBehavior: vnet.EndpointIndependent, FilteringBehavior: vnet.EndpointAddrPortDependent}})
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		_, r := l.run(b, 10*time.Second)
		if r.Type != natclass.TypePortRestrictedCone {
			b.Fatalf("type %s; reasons %q", r.Type, r.Reasons)
		}
	}
}
