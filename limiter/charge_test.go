package limiter_test

import (
	"testing"
	"time"

	"floodgate/limiter"
)

func TestCharge_CreditsBurstRefillRetry(t *testing.T) {
	l := newLimiter(t, fastConns())
	c := mustAdmit(t, l, keyReq("AbCdEfGh"), t0)
	for i := range 300 {
		d := c.Charge(1, t0)
		if !d.Allowed || d.Remaining != int64(299-i) || d.Limit != 300 {
			t.Fatalf("charge %d: %+v", i, d)
		}
	}
	d := c.Charge(1, t0)
	if d.Allowed || d.Budget != limiter.BudgetCredits || d.RetryAfter != 200*time.Millisecond || d.RetryAfterMs() != 200 {
		t.Fatalf("301st: %+v", d)
	}
	if d.Remaining != 0 || d.ResetIn != time.Minute || d.ResetSeconds() != 60 || d.Code() != "RATE_LIMITED" {
		t.Fatalf("rl of refusal: %+v", d)
	}
	if d := c.Charge(1, t0.Add(199*time.Millisecond)); d.Allowed || d.RetryAfter != time.Millisecond {
		t.Fatalf("at 199ms: %+v", d)
	}
	if d := c.Charge(1, t0.Add(200*time.Millisecond)); !d.Allowed || d.Remaining != 0 {
		t.Fatalf("at 200ms: %+v", d)
	}
	// A cost of 3 needs 600 ms of refill.
	if d := c.Charge(3, t0.Add(200*time.Millisecond)); d.Allowed || d.RetryAfter != 600*time.Millisecond {
		t.Fatalf("cost 3: %+v", d)
	}
	// After a full window the burst is back.
	later := t0.Add(200*time.Millisecond + time.Minute)
	if d := c.Charge(1, later); !d.Allowed || d.Remaining != 299 || d.ResetIn != 200*time.Millisecond || d.ResetSeconds() != 1 {
		t.Fatalf("after window: %+v", d)
	}
}

func TestCharge_AnonymousCreditsSharedAcrossConnections(t *testing.T) {
	l := newLimiter(t, fastConns())
	req := anonReq("203.0.113.9")
	a, b := mustAdmit(t, l, req, t0), mustAdmit(t, l, req, t0)
	allowed := 0
	for i := range 200 {
		c := a
		if i%2 == 1 {
			c = b
		}
		if c.Charge(1, t0).Allowed {
			allowed++
		}
	}
	if allowed != 125 {
		t.Fatalf("allowed %d, want 125", allowed)
	}
	// 60 s / 125 = 480 ms per credit.
	if d := b.Charge(1, t0); d.RetryAfter != 480*time.Millisecond {
		t.Fatalf("retry %v", d.RetryAfter)
	}
	// Another identity is untouched.
	o := mustAdmit(t, l, anonReq("203.0.113.10"), t0)
	if d := o.Charge(1, t0); !d.Allowed || d.Remaining != 124 {
		t.Fatalf("other identity: %+v", d)
	}
}

func TestCharge_ConnectionBucket(t *testing.T) {
	for _, tc := range []struct {
		name  string
		req   limiter.Request
		burst int
		every time.Duration
	}{
		{"key", keyReq("AbCdEfGh"), 20, 100 * time.Millisecond},
		{"anonymous", anonReq("192.0.2.1"), 10, 200 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLimiter(t, nil)
			c := mustAdmit(t, l, tc.req, t0)
			for i := range tc.burst {
				if d := c.Charge(1, t0); !d.Allowed {
					t.Fatalf("frame %d refused: %+v", i, d)
				}
			}
			d := c.Charge(1, t0)
			if d.Allowed || d.Budget != limiter.BudgetConn || d.RetryAfter != tc.every {
				t.Fatalf("over burst: %+v", d)
			}
			// The refused frame charged no credits.
			if d.Remaining != int64(l.Tier(tc.req.Tier).Credits)-int64(tc.burst) {
				t.Fatalf("remaining %d", d.Remaining)
			}
			if d := c.Charge(1, t0.Add(tc.every-1)); d.Allowed {
				t.Fatalf("1ns early: %+v", d)
			}
			if d := c.Charge(1, t0.Add(tc.every)); !d.Allowed {
				t.Fatalf("after %v: %+v", tc.every, d)
			}
			// Another connection of the same identity has its own bucket.
			o := mustAdmit(t, l, tc.req, t0)
			if d := o.Charge(1, t0); !d.Allowed {
				t.Fatalf("second connection: %+v", d)
			}
		})
	}
}

func TestCount_NeverRefusedButCounted(t *testing.T) {
	l := newLimiter(t, fastConns())
	c := mustAdmit(t, l, keyReq("AbCdEfGh"), t0)
	for range 300 {
		c.Charge(1, t0)
	}
	for i := range 50 {
		if d := c.Count(1, t0); !d.Allowed {
			t.Fatalf("count %d refused", i)
		}
	}
	// 50 credits of debt: the next frame waits 50*200ms + 200ms.
	d := c.Charge(1, t0)
	if d.Allowed || d.RetryAfter != 51*200*time.Millisecond {
		t.Fatalf("after debt: %+v", d)
	}
	// Counting does not count as violations: only this one refusal so far.
	for range 9 {
		c.Charge(1, t0)
	}
	if d := c.Charge(1, t0); !d.Close {
		t.Fatalf("11th refusal should close: %+v", d)
	}
}

func TestCharge_ZeroAllocs(t *testing.T) {
	l := newLimiter(t, nil)
	c := mustAdmit(t, l, keyReq("AbCdEfGh"), t0)
	now := t0
	if n := testing.AllocsPerRun(1000, func() {
		now = now.Add(200 * time.Millisecond)
		if !c.Charge(1, now).Allowed {
			t.Fatal("refused")
		}
	}); n != 0 {
		t.Fatalf("Charge allocates %v per call", n)
	}
	if n := testing.AllocsPerRun(1000, func() { c.Charge(1, now) }); n != 0 {
		t.Fatalf("refusing Charge allocates %v per call", n)
	}
	if n := testing.AllocsPerRun(1000, func() { c.Count(1, now) }); n != 0 {
		t.Fatalf("Count allocates %v per call", n)
	}
}

func TestDecision_Messages(t *testing.T) {
	d := limiter.Decision{Budget: limiter.BudgetQuota, Quota: limiter.QuotaDaily}
	if d.Message() != "Rate limit exceeded: quota daily" || d.Code() != "QUOTA_EXCEEDED" || d.CloseReason() != "quota exceeded" {
		t.Fatalf("%q %q", d.Message(), d.Code())
	}
	if (limiter.Decision{Allowed: true}).Code() != "" {
		t.Fatal("allowed has a code")
	}
	for b := limiter.BudgetNone; b < limiter.BudgetCount; b++ {
		if b.String() == "unknown" {
			t.Fatalf("budget %d has no label", b)
		}
	}
}

// TestReloadChangesTiersOnLiveConnections: a reload moves every identity
// to the new tier numbers at once, keeps what was spent, and keeps per-key
// overrides.
func TestReloadChangesTiersOnLiveConnections(t *testing.T) {
	l := newLimiter(t, nil)
	anon := mustAdmit(t, l, keyReq("Reload01"), t0)
	if d := anon.Charge(1, t0); !d.Allowed || d.Limit != 300 || d.Remaining != 299 {
		t.Fatalf("before reload: %+v", d)
	}
	cfg := limiter.DefaultConfig()
	cfg.Tiers.Key.Credits = 600
	cfg.Costs.Ping = 2
	if err := l.Reload(cfg, t0); err != nil {
		t.Fatal(err)
	}
	if got := l.Costs().Ping; got != 2 {
		t.Fatalf("costs not reloaded: %d", got)
	}
	d := anon.Charge(1, t0)
	if !d.Allowed || d.Limit != 600 || d.Remaining != 598 {
		t.Fatalf("after reload: %+v (want limit 600, 2 spent)", d)
	}
	bad := limiter.DefaultConfig()
	bad.Tiers.Key.Credits = -1
	if err := l.Reload(bad, t0); err == nil {
		t.Fatal("invalid config accepted")
	}
	if d := anon.Charge(1, t0); d.Limit != 600 {
		t.Fatalf("invalid reload changed the limit: %+v", d)
	}
}

// TestOverride_CreditsPerMinuteWithOtherWindow: a key's credits_per_minute
// is a rate; with a 2-minute credit window it is 2x the per-minute number
// per window, refilling at that rate.
func TestOverride_CreditsPerMinuteWithOtherWindow(t *testing.T) {
	cfg := fastConns()
	cfg.Tiers.Key.CreditWindow = 2 * time.Minute
	l := newLimiter(t, cfg)
	req := keyReq("Window02")
	req.Limits = limiter.Limits{CreditsPerMinute: 120}
	c := mustAdmit(t, l, req, t0)
	for i := range 240 {
		if d := c.Charge(1, t0); !d.Allowed || d.Limit != 240 {
			t.Fatalf("charge %d: %+v", i, d)
		}
	}
	d := c.Charge(1, t0)
	if d.Allowed || d.RetryAfter != 500*time.Millisecond {
		t.Fatalf("241st: %+v, want refused until one credit refills (120/min: 500 ms)", d)
	}
	// 30 s later: 60 credits back.
	at := t0.Add(30 * time.Second)
	n := 0
	for c.Charge(1, at).Allowed {
		n++
	}
	if n != 60 {
		t.Fatalf("after 30 s: %d credits, want 60", n)
	}
}
