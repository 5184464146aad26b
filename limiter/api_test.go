package limiter_test

import (
	"errors"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"floodgate/limiter"
)

// TestAllowAPI: each group has its own per-IP budget of PerIPPerMinute
// requests (the burst), refilled smoothly; an IPv6 /64 is one client; a
// refusal is a 429 with Retry-After and the RateLimit fields; Reload
// changes the numbers; idle budgets are swept.
func TestAllowAPI(t *testing.T) {
	cfg := limiter.DefaultConfig()
	cfg.AccountAPI.PerIPPerMinute = 3
	l := newLimiter(t, &cfg)
	ip := netip.MustParseAddr("198.51.100.1")
	for i := 0; i < 3; i++ {
		d := l.AllowAPI(limiter.APIAccount, ip, t0)
		if d.Refusal != nil {
			t.Fatalf("request %d refused: %v", i, d.Refusal)
		}
		// r requests left; t seconds until the budget is full again.
		if want := []string{`"account_api";r=2;t=20`, `"account_api";r=1;t=40`, `"account_api";r=0;t=60`}[i]; d.RateLimit != want {
			t.Fatalf("request %d: RateLimit %q, want %q", i, d.RateLimit, want)
		}
		if d.Policy != `"account_api";q=3;w=60` {
			t.Fatalf("Policy %q", d.Policy)
		}
	}
	d := l.AllowAPI(limiter.APIAccount, ip, t0)
	if d.Refusal == nil || d.Refusal.Status != http.StatusTooManyRequests || d.Refusal.Code != "RATE_LIMITED" ||
		d.Refusal.Message != "Rate limit exceeded" || !errors.Is(d.Refusal, limiter.ErrAPIRate) {
		t.Fatalf("4th request: %+v", d.Refusal)
	}
	if d.Refusal.RetryAfterSeconds() != 20 || d.Refusal.RateLimit != `"account_api";r=0;t=20` || d.Refusal.Policy != `"account_api";q=3;w=60` {
		t.Fatalf("refusal fields: retry %d, %q, %q", d.Refusal.RetryAfterSeconds(), d.Refusal.RateLimit, d.Refusal.Policy)
	}
	// The status group and other IPs are separate budgets.
	if d := l.AllowAPI(limiter.APIStatus, ip, t0); d.Refusal != nil || d.Policy != `"status_api";q=120;w=60` {
		t.Fatalf("status group: %+v", d)
	}
	if d := l.AllowAPI(limiter.APIAccount, netip.MustParseAddr("198.51.100.2"), t0); d.Refusal != nil {
		t.Fatal("other IP refused")
	}
	// One request refills every 20 s.
	if d := l.AllowAPI(limiter.APIAccount, ip, t0.Add(20*time.Second)); d.Refusal != nil {
		t.Fatal("refilled request refused")
	}
	// An IPv6 /64 is one client.
	a, b := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::ffff:2")
	for i := 0; i < 3; i++ {
		l.AllowAPI(limiter.APIAccount, a, t0)
	}
	if d := l.AllowAPI(limiter.APIAccount, b, t0); d.Refusal == nil {
		t.Fatal("same /64 not refused")
	}
	// Reload changes the budget.
	cfg.AccountAPI.PerIPPerMinute = 600
	if err := l.Reload(cfg, t0); err != nil {
		t.Fatal(err)
	}
	if d := l.AllowAPI(limiter.APIAccount, netip.MustParseAddr("198.51.100.9"), t0); d.Policy != `"account_api";q=600;w=60` {
		t.Fatalf("after reload: %q", d.Policy)
	}
	// Full budgets are swept.
	if n := l.Sweep(t0.Add(time.Hour)); n != 0 {
		t.Fatalf("%d cells left after sweep", n)
	}
}

// TestAllowAPI_FailedKeysShareTheIP: the failed-key block is per IP, and
// the API budgets do not disturb it.
func TestAllowAPI_FailedKeysShareTheIP(t *testing.T) {
	l := newLimiter(t, nil)
	ip := netip.MustParseAddr("198.51.100.3")
	for i := 0; i < 20; i++ {
		l.AllowAPI(limiter.APIStatus, ip, t0)
		if err := l.FailedKey(ip, t0); err != nil {
			t.Fatalf("attempt %d blocked", i+1)
		}
	}
	if err := l.FailedKey(ip, t0); err == nil {
		t.Fatal("21st failed key not blocked")
	}
	if err := l.CheckIP(ip, t0); !errors.Is(err, limiter.ErrIPBlocked) {
		t.Fatalf("CheckIP: %v", err)
	}
}
