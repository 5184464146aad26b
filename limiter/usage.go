package limiter

import (
	"context"
	"time"
)

// Usage is the live budget of an identity, for the key status endpoint
// (`rate_limit`) and the operator API.
type Usage struct {
	// Limit credits per Window; Remaining now; ResetAt when the credits are
	// full again.
	Limit     int64
	Remaining int64
	Window    time.Duration
	ResetAt   time.Time
	// Connections is the live connection count (cluster-wide in cluster
	// mode, else this node's).
	Connections int64
	// Quotas lists the key's configured quotas: daily, weekly, monthly,
	// total.
	Quotas []QuotaUsage
	// Cluster reports whether the numbers are cluster-wide.
	Cluster bool
}

// QuotaUsage is one quota's use.
type QuotaUsage struct {
	Window QuotaWindow
	Limit  int64
	Used   int64
	// Calendar reports a UTC calendar period rather than a rolling window.
	Calendar bool
	// ResetAt is when the quota next frees capacity: the end of the
	// calendar period, or when the oldest use still in the rolling window
	// leaves it (now when nothing is used; for an exhausted quota, the
	// Retry-After of its refusal). Zero for QuotaTotal, which never
	// refills.
	ResetAt time.Time
}

// Usage reports the live budget of req's identity at now; an identity
// without state here reports full budgets of req's tier and overrides. In
// cluster mode it reads Redis (one round trip, bounded by RedisTimeout) and
// falls back to this node's view on error. Not for the per-message path.
func (l *Limiter) Usage(ctx context.Context, req Request, now time.Time) Usage {
	n := now.UnixNano()
	pol, _ := l.policiesFor(req.Tier, req.Limits, req.Quotas)
	u := Usage{Limit: pol.credits, Remaining: pol.credits, Window: time.Duration(pol.creditWindow), ResetAt: now}
	var qs *quotaState
	if id := l.tab.acquire(req.Identity, nil); id != nil {
		id.mu.Lock()
		pol = id.pol
		r, q, t := id.rlLocked(l, n)
		u.Limit, u.Remaining, u.ResetAt, u.Connections = q, r, now.Add(t), id.conns
		u.Window = time.Duration(id.local.creditWindow)
		if id.quota != nil {
			c := *id.quota
			qs = &c
		}
		id.mu.Unlock()
		id.unpin()
	}
	if l.redis != nil && l.healthy.Load() {
		if v, err := l.clusterUsage(ctx, req.Identity, pol, n); err == nil && len(v) >= 7 {
			u.Limit, u.Remaining, u.Window = pol.credits, v[0], time.Duration(pol.creditWindow)
			u.ResetAt = time.Unix(0, max(v[1]*1000, n))
			u.Connections, u.Cluster = v[6], true
			for _, w := range [...]QuotaWindow{QuotaDaily, QuotaWeekly, QuotaMonthly, QuotaTotal} {
				if lim := pol.quotas.limit(w); lim > 0 {
					q := QuotaUsage{Window: w, Limit: lim, Used: v[1+int(w)], Calendar: pol.quotas.Calendar && w != QuotaTotal}
					if w != QuotaTotal && len(v) >= 10 {
						q.ResetAt = now.Add(time.Duration(v[6+int(w)] * 1000))
					}
					u.Quotas = append(u.Quotas, q)
				}
			}
			return u
		}
	}
	if qs == nil {
		qs = &quotaState{}
	}
	for _, w := range [...]QuotaWindow{QuotaDaily, QuotaWeekly, QuotaMonthly, QuotaTotal} {
		if lim := pol.quotas.limit(w); lim > 0 {
			q := QuotaUsage{Window: w, Limit: lim, Used: qs.used(w, pol.quotas.Calendar, n), Calendar: pol.quotas.Calendar && w != QuotaTotal}
			if w != QuotaTotal {
				q.ResetAt = now.Add(time.Duration(qs.resetIn(&pol.quotas, w, n)))
			}
			u.Quotas = append(u.Quotas, q)
		}
	}
	return u
}
