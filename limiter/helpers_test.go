package limiter_test

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"floodgate/internal/proto"
	"floodgate/limiter"
)

var t0 = time.Unix(302400*6262, 0).UTC() // 2030-01-03, aligned to every quota bucket (daily 24 min, weekly 168 min, monthly 12 h)

func newLimiter(t testing.TB, cfg *limiter.Config) *limiter.Limiter {
	t.Helper()
	l, err := limiter.New(limiter.Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// fastConns is a config whose per-connection bucket never binds, to test
// identity budgets alone.
func fastConns() *limiter.Config {
	c := limiter.DefaultConfig()
	for _, tr := range []*limiter.Tier{&c.Tiers.Anonymous, &c.Tiers.Key} {
		tr.ConnMessagesPerSecond, tr.ConnBurst = 1e6, 1e6
	}
	return &c
}

func keyReq(prefix string) limiter.Request {
	return limiter.Request{Identity: limiter.KeyIdentity(prefix), Tier: limiter.TierKey, IP: netip.MustParseAddr("198.51.100.7")}
}

func anonReq(ip string) limiter.Request {
	a := netip.MustParseAddr(ip)
	return limiter.Request{Identity: limiter.AddrIdentity(a), Tier: limiter.TierAnonymous, IP: a}
}

func mustAdmit(t testing.TB, l *limiter.Limiter, req limiter.Request, now time.Time) *limiter.Conn {
	t.Helper()
	c, err := l.Admit(context.Background(), req, now)
	if err != nil {
		t.Fatalf("admit %s at %v: %v", req.Identity, now.Sub(t0), err)
	}
	return c
}

func refusalOf(t testing.TB, err error, want error) *proto.Refusal {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("err = %v, want %v", err, want)
	}
	var r *proto.Refusal
	if !errors.As(err, &r) {
		t.Fatalf("err %v is not a *Refusal", err)
	}
	return r
}
