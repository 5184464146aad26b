package node

import (
	"context"
	"time"

	"floodgate/auth"
	"floodgate/keyapi"
	"floodgate/limiter"
)

// liveUsage implements keyapi.LiveUsage: a key's live credit budget, quotas
// and connections from the limiter, for the status endpoint and the
// operator API.
type liveUsage struct {
	// Immutable after New.
	store   auth.Store
	limiter *limiter.Limiter
}

// KeyUsage implements keyapi.LiveUsage.
func (u *liveUsage) KeyUsage(prefix string, now time.Time) (keyapi.KeyUsage, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req := limiter.Request{Identity: limiter.KeyIdentity(prefix), Tier: limiter.TierKey}
	if rec, err := u.store.Get(ctx, prefix); err == nil {
		req.Limits, req.Quotas = rec.Limits, rec.Quotas
	}
	lu := u.limiter.Usage(ctx, req, now)
	out := keyapi.KeyUsage{
		Credits:     keyapi.BudgetUsage{Limit: lu.Limit, Remaining: max(lu.Remaining, 0), ResetAt: lu.ResetAt},
		Connections: int(lu.Connections),
	}
	quotaReport(&out, lu.Quotas)
	return out, true
}

// quotaReport adds the limiter's quota use to out as quotas.<window>
// (limit, used, reset_at; total has no reset_at). A quota of another
// kind (another window name) is one more AddQuota.
func quotaReport(out *keyapi.KeyUsage, qs []limiter.QuotaUsage) {
	for _, q := range qs {
		out.AddQuota(q.Window.String(), q.Limit, q.Used, q.ResetAt)
	}
}
