package node

import (
	"context"
	"net/http"
	"time"

	"floodgate/auth"
	"floodgate/broker"
	"floodgate/limiter"
)

// NewTestBudget admits one key connection on lim and returns its budget as
// the node builds it, for hot-path tests.
func NewTestBudget(lim *limiter.Limiter, usage *auth.Usage, prefix string, now time.Time) (broker.Budget, error) {
	conn, err := lim.Admit(context.Background(), limiter.Request{Identity: limiter.KeyIdentity(prefix), Tier: limiter.TierKey}, now)
	if err != nil {
		return nil, err
	}
	return &budget{conn: conn, limiter: lim, usage: usage, prefix: prefix}, nil
}

// ClientIP exposes clientIP.
var ClientIP = clientIP

// PresentedKey exposes presentedKey: the key, whether an empty key was
// presented, and the refusal's code ("" when none).
func PresentedKey(r *http.Request, allowQuery bool) (string, bool, string) {
	key, empty, ref := presentedKey(r, allowQuery)
	if ref != nil {
		return key, empty, ref.Code
	}
	return key, empty, ""
}
