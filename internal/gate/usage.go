package gate

import (
	"context"
	"time"

	"floodgate/auth"
	"floodgate/limiter"
)

// KeyUsage implements auth.LiveUsage: the live credit budget, quotas and
// connections of a key, for the status endpoint and the operator API.
func (g *Gate) KeyUsage(prefix string, now time.Time) (auth.KeyUsage, bool) {
	if g.opts.Limiter == nil {
		return auth.KeyUsage{}, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req := limiter.Request{Identity: limiter.KeyIdentity(prefix), Tier: limiter.TierKey}
	if g.opts.Store != nil {
		if rec, err := g.opts.Store.Get(ctx, prefix); err == nil {
			req.Limits, req.Quotas = LimiterPolicy(rec.Limits, rec.Quotas)
		}
	}
	u := g.opts.Limiter.Usage(ctx, req, now)
	out := auth.KeyUsage{
		Credits:     auth.BudgetUsage{Limit: u.Limit, Remaining: max(u.Remaining, 0), ResetAt: u.ResetAt},
		Connections: int(u.Connections),
	}
	for _, q := range u.Quotas {
		out.Quotas = append(out.Quotas, auth.QuotaUsage{Window: q.Window.String(), Limit: q.Limit, Used: q.Used})
	}
	return out, true
}
