package limiter_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"floodgate/limiter"
)

func TestQuota_RollingWindowEdges(t *testing.T) {
	for _, tc := range []struct {
		w      limiter.QuotaWindow
		quotas limiter.Quotas
	}{
		{limiter.QuotaDaily, limiter.Quotas{Daily: 50}},
		{limiter.QuotaWeekly, limiter.Quotas{Weekly: 50}},
		{limiter.QuotaMonthly, limiter.Quotas{Monthly: 50}},
	} {
		t.Run(tc.w.String(), func(t *testing.T) {
			l := newLimiter(t, fastConns())
			req := keyReq("Quota000")
			req.Quotas = tc.quotas
			c := mustAdmit(t, l, req, t0)
			for i := range 50 {
				if d := c.Charge(1, t0); !d.Allowed {
					t.Fatalf("charge %d: %+v", i, d)
				}
			}
			d := c.Charge(1, t0)
			// Every use was at t0: they leave exactly W later, and the
			// Retry-After says so (never longer than the window).
			if d.Allowed || d.Budget != limiter.BudgetQuota || d.Quota != tc.w || !d.Close ||
				d.RetryAfter != tc.w.Duration() {
				t.Fatalf("51st: %+v", d)
			}
			c.Release()
			// Refused at the upgrade with 401 naming the quota.
			edge := t0.Add(tc.w.Duration())
			_, err := l.Admit(context.Background(), req, edge.Add(-1))
			r := refusalOf(t, err, limiter.ErrQuotaExceeded)
			if r.Status != http.StatusUnauthorized || r.Code != "QUOTA_EXCEEDED" || r.Message != "Rate limit exceeded: quota "+tc.w.String() || r.RetryAfter != 1 {
				t.Fatalf("%+v", r)
			}
			// Usage made at t0 leaves the window W after its bucket's last use.
			c = mustAdmit(t, l, req, edge)
			for i := range 50 {
				if d := c.Charge(1, edge); !d.Allowed {
					t.Fatalf("after edge, charge %d: %+v", i, d)
				}
			}
			if d := c.Charge(1, edge); d.Allowed {
				t.Fatal("quota refilled beyond its limit")
			}
		})
	}
}

func TestQuota_RollingNotFixed(t *testing.T) {
	l := newLimiter(t, fastConns())
	req := keyReq("Quota001")
	req.Quotas = limiter.Quotas{Daily: 100}
	c := mustAdmit(t, l, req, t0)
	// 60 at t0, 40 at t0+12h.
	for range 60 {
		c.Charge(1, t0)
	}
	noon := t0.Add(12 * time.Hour)
	for range 40 {
		if !c.Charge(1, noon).Allowed {
			t.Fatal("refused under quota")
		}
	}
	if c.Charge(1, noon).Allowed {
		t.Fatal("over quota")
	}
	// The t0 usage expires at t0+24h (its bucket's last use + W): 60 back,
	// not 100; not a nanosecond earlier.
	if c.Charge(1, t0.Add(24*time.Hour-1)).Allowed {
		t.Fatal("t0 usage left the daily window early")
	}
	at := t0.Add(24 * time.Hour)
	got := 0
	for c.Charge(1, at).Allowed {
		got++
	}
	if got != 60 {
		t.Fatalf("after first expiry got %d, want 60", got)
	}
	u := l.Usage(context.Background(), req, at)
	if len(u.Quotas) != 1 || u.Quotas[0].Window != limiter.QuotaDaily || u.Quotas[0].Used != 100 || u.Quotas[0].Limit != 100 {
		t.Fatalf("usage %+v", u)
	}
}

func TestQuota_TotalNeverRefills(t *testing.T) {
	l := newLimiter(t, fastConns())
	req := keyReq("Quota002")
	req.Quotas = limiter.Quotas{Total: 10, Daily: 1000}
	c := mustAdmit(t, l, req, t0)
	for range 10 {
		c.Charge(1, t0)
	}
	d := c.Charge(1, t0.Add(365*24*time.Hour))
	if d.Allowed || d.Quota != limiter.QuotaTotal || d.RetryAfter != 0 || d.Message() != "Rate limit exceeded: quota total" {
		t.Fatalf("%+v", d)
	}
	_, err := l.Admit(context.Background(), req, t0.Add(400*24*time.Hour))
	r := refusalOf(t, err, limiter.ErrQuotaExceeded)
	h := http.Header{}
	r.SetHeaders(h)
	if h.Get("Retry-After") != "" || h.Get("RateLimit-Policy") != `"quota-total";q=10` {
		t.Fatalf("headers %v", h)
	}
	// Never evicted while it has usage.
	c.Release()
	if n := l.Sweep(t0.Add(400 * 24 * time.Hour)); n != 1 {
		t.Fatalf("identities %d", n)
	}
}

func TestOverrides_AppliedLive(t *testing.T) {
	l := newLimiter(t, nil)
	req := keyReq("Override")
	c := mustAdmit(t, l, req, t0)
	if c.MaxSubscriptions() != 500 {
		t.Fatalf("max subs %d", c.MaxSubscriptions())
	}
	now := t0
	used := 0
	for used < 300 {
		now = now.Add(100 * time.Millisecond)
		if c.Charge(1, now).Allowed {
			used++
		}
		if now.Sub(t0) > time.Hour {
			t.Fatal("never used 300")
		}
	}
	before := c.Charge(1, now)
	// Double the credits, raise the subscription cap, slow the connection.
	l.SetOverrides("Override", limiter.Limits{CreditsPerMinute: 600, MaxSubscriptions: 50, ConnMessagesPerSecond: 1}, limiter.Quotas{}, now)
	if c.MaxSubscriptions() != 50 {
		t.Fatalf("max subs %d after override", c.MaxSubscriptions())
	}
	d := c.Charge(1, now.Add(time.Second))
	if !d.Allowed || d.Limit != 600 || d.Remaining < before.Remaining+300-5 {
		t.Fatalf("before %+v after %+v", before, d)
	}
	// Quotas added live bind at once.
	l.SetOverrides("Override", limiter.Limits{}, limiter.Quotas{Daily: 3}, now)
	at := now.Add(2 * time.Second)
	n := 0
	for c.Charge(1, at).Allowed {
		n++
		at = at.Add(time.Second)
	}
	if n != 3 {
		t.Fatalf("%d allowed under a live daily quota of 3", n)
	}
	// Unknown keys are ignored.
	l.SetOverrides("Nobody00", limiter.Limits{CreditsPerMinute: 1}, limiter.Quotas{}, now)
}

func TestUsage_LocalAndUnknown(t *testing.T) {
	l := newLimiter(t, fastConns())
	req := keyReq("Usage000")
	u := l.Usage(context.Background(), req, t0)
	if u.Limit != 300 || u.Remaining != 300 || !u.ResetAt.Equal(t0) || u.Window != time.Minute || u.Cluster {
		t.Fatalf("unknown: %+v", u)
	}
	c := mustAdmit(t, l, req, t0)
	for range 42 {
		c.Charge(1, t0)
	}
	u = l.Usage(context.Background(), req, t0)
	if u.Remaining != 258 || u.Connections != 1 || !u.ResetAt.Equal(t0.Add(42*200*time.Millisecond)) {
		t.Fatalf("usage %+v", u)
	}
}

// TestQuota_RetryAfterExactAndWithinWindow: uses spread over one bucket
// leave W after the bucket's last use; Retry-After is exactly that and
// never longer than the window, even right after the blocking use.
func TestQuota_RetryAfterExactAndWithinWindow(t *testing.T) {
	l := newLimiter(t, fastConns())
	req := keyReq("Quota003")
	req.Quotas = limiter.Quotas{Daily: 3}
	c := mustAdmit(t, l, req, t0)
	uses := []time.Duration{0, 5 * time.Minute, 10 * time.Minute} // one 24-min bucket
	for _, u := range uses {
		if !c.Charge(1, t0.Add(u)).Allowed {
			t.Fatal("refused under quota")
		}
	}
	now := t0.Add(10*time.Minute + time.Second)
	d := c.Charge(1, now)
	want := t0.Add(10 * time.Minute).Add(24 * time.Hour).Sub(now)
	if d.Allowed || d.RetryAfter != want || d.RetryAfter > 24*time.Hour {
		t.Fatalf("retry %v, want %v: %+v", d.RetryAfter, want, d)
	}
	if c.Charge(1, now.Add(want-1)).Allowed {
		t.Fatal("admitted before Retry-After")
	}
	if !c.Charge(1, now.Add(want)).Allowed {
		t.Fatal("refused at Retry-After")
	}
}
