package limiter

import (
	"net/http"
	"net/netip"
	"time"

	"floodgate/internal/proto"
)

// API names a group of REST endpoints with its own per-client-IP request
// budget. The budgets are GCRA cells in the identity table, named
// "api:<group>:<ip identity>" (IPv6 by /64), local to the node, and swept
// like any identity once full again.
type API uint8

const (
	// APIAccount is the wallet-signed account endpoints (create, revoke,
	// list: one budget), limits.account_api.
	APIAccount API = iota
	// APIStatus is the key status endpoint, limits.status_api.
	APIStatus
	numAPIs
)

// String is the group's name in the RateLimit fields and metrics:
// "account_api" or "status_api".
func (a API) String() string {
	if a == APIStatus {
		return "status_api"
	}
	return "account_api"
}

// APIDecision is the outcome of AllowAPI.
type APIDecision struct {
	// Refusal is nil when the request may proceed; otherwise the 429
	// RATE_LIMITED to send (Retry-After and the RateLimit fields set).
	Refusal *proto.Refusal
	// Policy and RateLimit are the RateLimit-Policy and RateLimit field
	// values of the budget after this request, for a successful answer.
	Policy, RateLimit string
}

// AllowAPI takes one request of client ip from the per-IP budget of api at
// now: PerIPPerMinute requests per minute, also the burst. The numbers are
// read from the config in force (Reload changes them). An invalid ip
// shares one budget with every other invalid one.
func (l *Limiter) AllowAPI(api API, ip netip.Addr, now time.Time) APIDecision {
	cfg := &l.set.Load().cfg
	per := cfg.AccountAPI.PerIPPerMinute
	if api == APIStatus {
		per = cfg.StatusAPI.PerIPPerMinute
	}
	return l.allowAPI(api, api.String(), per, AddrIdentity(ip), now)
}

// AllowAPIKey takes one request about the key prefix from the per-key
// budget of api at now (status_api.per_key_per_minute, whatever the
// client IP), after AllowAPI passed and the key proved valid. With no
// per-key budget configured it always allows and returns a zero decision.
func (l *Limiter) AllowAPIKey(api API, prefix string, now time.Time) APIDecision {
	per := 0
	if api == APIStatus {
		per = l.set.Load().cfg.StatusAPI.PerKeyPerMinute
	}
	if per <= 0 {
		return APIDecision{}
	}
	return l.allowAPI(api, api.String()+"_key", per, "key:"+prefix, now)
}

// allowAPI takes one request of ident from the budget name (per requests
// per minute, also the burst) at now.
func (l *Limiter) allowAPI(api API, name string, per int, ident string, now time.Time) APIDecision {
	g := newGCRA(int64(per), int64(time.Minute))
	policy := proto.PolicyHeader(name, int64(per), time.Minute)
	id := l.tab.acquire("api:"+name+":"+ident, l.newAPICell)
	defer id.unpin()
	n := now.UnixNano()
	id.mu.Lock()
	nt, ok, wait := g.take(id.tat, n, 1)
	if ok {
		id.tat = nt
	}
	remaining, full := g.remaining(id.tat, n), time.Duration(max(id.tat-n, 0))
	id.mu.Unlock()
	if !ok {
		l.metrics.apiRefused[api].Inc()
		rl := proto.RateLimitHeader(name, 0, time.Duration(wait))
		ref := refusal(ErrAPIRate, http.StatusTooManyRequests, proto.RateLimited, "Rate limit exceeded", time.Duration(wait))
		return APIDecision{Refusal: withHeaders(ref, policy, rl), Policy: policy, RateLimit: rl}
	}
	return APIDecision{Policy: policy, RateLimit: proto.RateLimitHeader(name, remaining, full)}
}

// newAPICell makes the cell of an API budget: only its tat is used; it
// has no cluster state and Reload leaves it alone.
func (l *Limiter) newAPICell(name string) *identity {
	set := l.set.Load()
	return &identity{name: name, api: true, pol: set.tiers[TierAnonymous], local: set.shares[TierAnonymous]}
}
