package limiter_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"floodgate/limiter"
)

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

func TestCalendarPeriod(t *testing.T) {
	for _, tc := range []struct {
		w          limiter.QuotaWindow
		now        string
		start, end string
	}{
		{limiter.QuotaDaily, "2030-01-03T22:00:00Z", "2030-01-03T00:00:00Z", "2030-01-04T00:00:00Z"},
		{limiter.QuotaDaily, "2030-01-04T00:00:00Z", "2030-01-04T00:00:00Z", "2030-01-05T00:00:00Z"},
		{limiter.QuotaDaily, "2030-01-03T23:59:59.999999999Z", "2030-01-03T00:00:00Z", "2030-01-04T00:00:00Z"},
		{limiter.QuotaDaily, "1969-12-31T12:00:00Z", "1969-12-31T00:00:00Z", "1970-01-01T00:00:00Z"},
		// 2030-01-03 is a Thursday; its week began on Monday 2029-12-31.
		{limiter.QuotaWeekly, "2030-01-03T10:00:00Z", "2029-12-31T00:00:00Z", "2030-01-07T00:00:00Z"},
		{limiter.QuotaWeekly, "2030-01-06T23:59:59Z", "2029-12-31T00:00:00Z", "2030-01-07T00:00:00Z"}, // Sunday
		{limiter.QuotaWeekly, "2030-01-07T00:00:00Z", "2030-01-07T00:00:00Z", "2030-01-14T00:00:00Z"}, // Monday
		{limiter.QuotaWeekly, "1970-01-01T00:00:00Z", "1969-12-29T00:00:00Z", "1970-01-05T00:00:00Z"},
		{limiter.QuotaMonthly, "2030-01-31T23:00:00Z", "2030-01-01T00:00:00Z", "2030-02-01T00:00:00Z"},
		{limiter.QuotaMonthly, "2028-02-29T12:00:00Z", "2028-02-01T00:00:00Z", "2028-03-01T00:00:00Z"}, // leap year
		{limiter.QuotaMonthly, "2030-04-30T23:59:59Z", "2030-04-01T00:00:00Z", "2030-05-01T00:00:00Z"},
		{limiter.QuotaMonthly, "2030-12-31T23:59:59Z", "2030-12-01T00:00:00Z", "2031-01-01T00:00:00Z"}, // December -> January
		{limiter.QuotaMonthly, "2031-01-01T00:00:00Z", "2031-01-01T00:00:00Z", "2031-02-01T00:00:00Z"},
	} {
		s, e := limiter.CalendarPeriod(tc.w, utc(tc.now))
		if !s.Equal(utc(tc.start)) || !e.Equal(utc(tc.end)) {
			t.Errorf("%s at %s: [%s, %s), want [%s, %s)", tc.w, tc.now, s, e, tc.start, tc.end)
		}
	}
	if s, e := limiter.CalendarPeriod(limiter.QuotaTotal, t0); !s.IsZero() || !e.IsZero() {
		t.Errorf("total: %v %v", s, e)
	}
}

// spend charges n credits at now, each one allowed.
func spend(t *testing.T, c *limiter.Conn, n int, now time.Time) {
	t.Helper()
	for i := range n {
		if d := c.Charge(1, now); !d.Allowed {
			t.Fatalf("charge %d at %s: %+v", i, now, d)
		}
	}
}

func TestQuota_Calendar(t *testing.T) {
	for _, tc := range []struct {
		name   string
		w      limiter.QuotaWindow
		quotas limiter.Quotas
		now    string // when the quota is used up
		reset  string // the next boundary
	}{
		{"daily", limiter.QuotaDaily, limiter.Quotas{Daily: 10, Calendar: true}, "2030-01-03T22:00:00Z", "2030-01-04T00:00:00Z"},
		{"weekly on Monday", limiter.QuotaWeekly, limiter.Quotas{Weekly: 10, Calendar: true}, "2030-01-06T18:30:00Z", "2030-01-07T00:00:00Z"},
		{"monthly on the 1st", limiter.QuotaMonthly, limiter.Quotas{Monthly: 10, Calendar: true}, "2030-02-28T20:00:00Z", "2030-03-01T00:00:00Z"},
		{"monthly December to January", limiter.QuotaMonthly, limiter.Quotas{Monthly: 10, Calendar: true}, "2030-12-31T23:00:00Z", "2031-01-01T00:00:00Z"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLimiter(t, fastConns())
			req := keyReq("Calendr0")
			req.Quotas = tc.quotas
			now, reset := utc(tc.now), utc(tc.reset)
			c := mustAdmit(t, l, req, now)
			spend(t, c, 10, now)
			d := c.Charge(1, now)
			if d.Allowed || d.Budget != limiter.BudgetQuota || d.Quota != tc.w || !d.Close || d.RetryAfter != reset.Sub(now) {
				t.Fatalf("11th: %+v, want a %s refusal with RetryAfter %s", d, tc.w, reset.Sub(now))
			}
			u := l.Usage(context.Background(), req, now)
			if len(u.Quotas) != 1 || u.Quotas[0] != (limiter.QuotaUsage{Window: tc.w, Limit: 10, Used: 10, Calendar: true, ResetAt: reset}) {
				t.Fatalf("usage %+v", u.Quotas)
			}
			c.Release()
			// Refused at the upgrade until the boundary, with the Retry-After to it.
			_, err := l.Admit(context.Background(), req, reset.Add(-time.Second))
			if r := refusalOf(t, err, limiter.ErrQuotaExceeded); r.RetryAfter != time.Second || r.Message != "Rate limit exceeded: quota "+tc.w.String() {
				t.Fatalf("%+v", r)
			}
			// At the boundary the whole quota is back, however recent the use.
			c = mustAdmit(t, l, req, reset)
			spend(t, c, 10, reset)
			if c.Charge(1, reset).Allowed {
				t.Fatal("calendar quota refilled beyond its limit")
			}
		})
	}
}

// A rolling daily quota reports reset_at as when its oldest use leaves the
// window; with nothing used, now.
func TestQuota_RollingResetAt(t *testing.T) {
	l := newLimiter(t, fastConns())
	req := keyReq("Rolling0")
	req.Quotas = limiter.Quotas{Daily: 10, Total: 100}
	if u := l.Usage(context.Background(), req, t0); len(u.Quotas) != 2 || !u.Quotas[0].ResetAt.Equal(t0) || !u.Quotas[1].ResetAt.IsZero() {
		t.Fatalf("unused: %+v", u.Quotas)
	}
	c := mustAdmit(t, l, req, t0)
	spend(t, c, 4, t0)
	spend(t, c, 6, t0.Add(time.Hour))
	now := t0.Add(2 * time.Hour)
	d := c.Charge(1, now)
	if d.Allowed || d.RetryAfter != 22*time.Hour {
		t.Fatalf("%+v", d)
	}
	u := l.Usage(context.Background(), req, now)
	if q := u.Quotas[0]; q.Used != 10 || q.Calendar || !q.ResetAt.Equal(now.Add(d.RetryAfter)) {
		t.Fatalf("daily %+v, refusal %s", q, d.RetryAfter)
	}
	if q := u.Quotas[1]; q.Window != limiter.QuotaTotal || q.Used != 10 || !q.ResetAt.IsZero() {
		t.Fatalf("total %+v", q)
	}
}

// Switching a key's quotas to calendar ones keeps what it used today.
func TestQuota_CalendarSwitchKeepsUse(t *testing.T) {
	l := newLimiter(t, fastConns())
	req := keyReq("Switch00")
	req.Quotas = limiter.Quotas{Daily: 10}
	now := utc("2030-01-03T20:00:00Z")
	c := mustAdmit(t, l, req, now)
	spend(t, c, 3, utc("2030-01-02T23:00:00Z")) // yesterday: in the rolling window, not today
	spend(t, c, 5, now)
	l.SetOverrides("Switch00", limiter.Limits{}, limiter.Quotas{Daily: 10, Calendar: true}, now)
	spend(t, c, 5, now)
	if d := c.Charge(1, now); d.Allowed || d.RetryAfter != 4*time.Hour {
		t.Fatalf("%+v", d)
	}
}

func TestCluster_CalendarQuotaAcrossNodes(t *testing.T) {
	_, rc := newMiniredis(t)
	runCalendarQuota(t, rc, "cal:")
}

// runCalendarQuota spends a calendar daily quota of 200 from two nodes
// sharing rc, ten minutes before midnight UTC, then crosses midnight.
func runCalendarQuota(t *testing.T, rc redis.UniversalClient, prefix string) {
	nodes := clusterNodes(t, rc, prefix, 2, fastConns())
	req := keyReq("CalClust")
	req.Quotas = limiter.Quotas{Daily: 200, Calendar: true}
	ctx := context.Background()
	now := utc("2030-01-03T23:50:00Z")
	midnight := utc("2030-01-04T00:00:00Z")
	conns := make([]*limiter.Conn, 2)
	for i, l := range nodes {
		conns[i] = mustAdmit(t, l, req, now)
	}
	admitted := 0
	var last limiter.Decision
	var lastAt time.Time
	closed := make([]bool, 2)
	for range 200 { // 10 s in 50 ms steps, both nodes spending one window
		for i, l := range nodes {
			_ = l.Sync(ctx, now)
			for range 2 {
				if closed[i] {
					break
				}
				if d := conns[i].Charge(1, now); d.Allowed {
					admitted++
				} else if d.Close { // the broker closes the connection
					last, lastAt, closed[i] = d, now, true
					conns[i].Release()
				}
			}
		}
		now = now.Add(50 * time.Millisecond)
	}
	if admitted > 200 || admitted < 190 {
		t.Fatalf("admitted %d under a cluster calendar daily quota of 200", admitted)
	}
	if last.Quota != limiter.QuotaDaily || last.RetryAfter != midnight.Sub(lastAt) {
		t.Fatalf("last refusal %+v (%s to midnight)", last, midnight.Sub(lastAt))
	}
	// The other node sees the same window: a new connection is refused
	// until midnight.
	_, err := nodes[1].Admit(ctx, req, now)
	if r := refusalOf(t, err, limiter.ErrQuotaExceeded); r.RetryAfter != midnight.Sub(now) {
		t.Fatalf("Retry-After %s, want %s", r.RetryAfter, midnight.Sub(now))
	}
	u := nodes[0].Usage(ctx, req, now)
	if !u.Cluster || len(u.Quotas) != 1 || u.Quotas[0].Used < 190 || u.Quotas[0].Used > 200 || !u.Quotas[0].Calendar || !u.Quotas[0].ResetAt.Equal(midnight) {
		t.Fatalf("usage %+v", u)
	}
	// After midnight the window is new on every node (the new connection's
	// first lease, at most ceil(300/4) credits, counts as used).
	for _, l := range nodes {
		_ = l.Sync(ctx, midnight)
	}
	c, err := nodes[1].Admit(ctx, req, midnight)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Release()
	if u := nodes[0].Usage(ctx, req, midnight); u.Quotas[0].Used > 75 || !u.Quotas[0].ResetAt.Equal(midnight.Add(24*time.Hour)) {
		t.Fatalf("after midnight %+v", u.Quotas)
	}
	allHealthy(t, nodes)
}

// Charging a key with calendar quotas allocates nothing, across period
// boundaries and refusals too.
func TestCharge_CalendarQuotaZeroAllocs(t *testing.T) {
	l := newLimiter(t, fastConns())
	req := keyReq("CalAlloc")
	req.Quotas = limiter.Quotas{Daily: 1 << 30, Weekly: 1 << 30, Monthly: 1 << 30, Calendar: true}
	c := mustAdmit(t, l, req, t0)
	now := t0
	if n := testing.AllocsPerRun(1000, func() {
		now = now.Add(time.Hour) // crosses days, weeks and months
		c.Charge(1, now)
		c.Charge(0, now)
		c.Count(1, now)
	}); n != 0 {
		t.Fatalf("%v allocs per three frames", n)
	}
}

// BenchmarkCharge_Quota_* charge a key with daily, weekly and monthly
// quotas (never reached), rolling or calendar.
func BenchmarkCharge_Quota_Rolling(b *testing.B)  { benchQuota(b, false) }
func BenchmarkCharge_Quota_Calendar(b *testing.B) { benchQuota(b, true) }

func benchQuota(b *testing.B, calendar bool) {
	l := newLimiter(b, fastConns())
	req := keyReq("BenchQta")
	req.Quotas = limiter.Quotas{Daily: 1 << 40, Weekly: 1 << 40, Monthly: 1 << 40, Calendar: calendar}
	c := mustAdmit(b, l, req, t0)
	now := t0
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(200 * time.Millisecond)
		if !c.Charge(1, now).Allowed {
			b.Fatal("refused")
		}
	}
}
