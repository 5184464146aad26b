package broker

import (
	"net"
	"net/http"
	"net/netip"
	"time"
)

// IPResolver identifies every client anonymously by its socket peer
// address (IPv6 grouped by /64). It is the default Resolver.
type IPResolver struct{}

// Resolve implements Resolver.
func (IPResolver) Resolve(r *http.Request, _ time.Time) (Identity, *Refusal) {
	addr := PeerAddr(r)
	return Identity{Kind: Anonymous, ID: IPIdentity(addr), IP: addr}, nil
}

// PeerAddr returns the socket peer address of r, unmapped from IPv4-in-IPv6.
func PeerAddr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}

// IPIdentity returns the budget identity of an address: "ip:<addr>" for
// IPv4, "ip:<prefix>/64" for IPv6, since one IPv6 host usually owns a /64.
func IPIdentity(a netip.Addr) string {
	if a.Is6() {
		p, err := a.Prefix(64)
		if err == nil {
			return "ip:" + p.String()
		}
	}
	return "ip:" + a.String()
}

// AdmitAll admits every connection with an unlimited budget. It is the
// default Admitter.
type AdmitAll struct{}

// Admit implements Admitter.
func (AdmitAll) Admit(Identity, time.Time) (Budget, *Refusal) { return unlimited{}, nil }

type unlimited struct{}

func (unlimited) Charge(Op, time.Time) Decision { return Decision{Allowed: true} }
func (unlimited) MaxSubscriptions() int         { return 0 }
func (unlimited) Release(time.Time)             {}
