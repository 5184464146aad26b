package gate

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"floodgate/auth"
	"floodgate/broker"
	"floodgate/limiter"

	"github.com/rs/zerolog"
)

// Options configures a Gate. Zero values mean the documented defaults.
type Options struct {
	// Keyring verifies API keys. Defaults to nil: every client is
	// anonymous and a presented key is refused as invalid.
	Keyring *auth.Keyring
	// Store receives connection events of keys. Defaults to nil: none
	// are recorded.
	Store auth.Store
	// Limiter admits connections and charges frames. Defaults to nil:
	// everyone is admitted with an unlimited budget.
	Limiter *limiter.Limiter
	// Usage counts key messages for last_used_at and request_count.
	// Defaults to nil: not counted.
	Usage *auth.Usage
	// TrustedProxies are the CIDRs whose X-Forwarded-For is believed.
	// Defaults to none: the socket peer is the client.
	TrustedProxies []netip.Prefix
	// AllowQueryKey accepts ?api_key=<key>. Defaults to false: query
	// strings end up in proxy logs.
	AllowQueryKey bool
	// NodeID is recorded in connection events. Defaults to "".
	NodeID string
	// EventQueue bounds the connection events waiting for the store;
	// more are dropped (and logged once per second at most). Defaults to
	// 4096.
	EventQueue int
	// Logger receives store failures. Defaults to a disabled logger.
	Logger *zerolog.Logger
}

// Gate implements broker.Resolver and broker.Admitter.
type Gate struct {
	// Immutable after New.
	opts   Options
	log    zerolog.Logger
	events chan keyEvent

	// Atomics.
	dropped atomic.Int64 // connection events dropped since the last report
}

type keyEvent struct {
	prefix string
	ev     auth.Event
}

// New returns a Gate.
func New(opts Options) *Gate {
	if opts.EventQueue <= 0 {
		opts.EventQueue = 4096
	}
	g := &Gate{opts: opts, events: make(chan keyEvent, opts.EventQueue)}
	if opts.Logger != nil {
		g.log = *opts.Logger
	} else {
		g.log = zerolog.Nop()
	}
	return g
}

// Protocol refusals of protocol.md for keys.
var (
	refInvalidKey  = broker.Refusal{Status: http.StatusUnauthorized, Code: "INVALID_API_KEY", Message: "Invalid API Key"}
	refInactiveKey = broker.Refusal{Status: http.StatusUnauthorized, Code: "INACTIVE_API_KEY", Message: "Inactive API Key"}
	refExpiredKey  = broker.Refusal{Status: http.StatusUnauthorized, Code: "EXPIRED_API_KEY", Message: "Expired API Key"}
	refStoreDown   = broker.Refusal{Status: http.StatusServiceUnavailable, Code: "UNAVAILABLE", Message: "key store unavailable, retry", RetryAfter: time.Second}
)

// keyOf returns the key the request presents, or "".
func (g *Gate) keyOf(r *http.Request) string {
	if k := strings.TrimSpace(r.Header.Get("PF-API-KEY")); k != "" {
		return k
	}
	if k := strings.TrimSpace(r.Header.Get("X-API-Key")); k != "" {
		return k
	}
	for _, v := range r.Header.Values("Sec-WebSocket-Protocol") {
		for _, p := range strings.Split(v, ",") {
			if k, ok := strings.CutPrefix(strings.TrimSpace(p), "key."); ok && k != "" {
				return k
			}
		}
	}
	if g.opts.AllowQueryKey {
		return r.URL.Query().Get("api_key")
	}
	return ""
}

// Resolve implements broker.Resolver.
func (g *Gate) Resolve(r *http.Request, now time.Time) (broker.Identity, *broker.Refusal) {
	ip := limiter.ClientIP(r, g.opts.TrustedProxies)
	key := g.keyOf(r)
	if key == "" {
		return broker.Identity{Kind: broker.Anonymous, ID: limiter.AddrIdentity(ip), IP: ip}, nil
	}
	lim := g.opts.Limiter
	if lim != nil {
		if err := lim.CheckIP(ip, now); err != nil {
			return broker.Identity{}, refusalOf(err)
		}
	}
	if g.opts.Keyring == nil {
		return broker.Identity{}, g.failed(ip, now, &refInvalidKey)
	}
	info, err := g.opts.Keyring.Verify(key, now)
	switch {
	case err == nil:
	case errors.Is(err, auth.ErrInvalidKey):
		return broker.Identity{}, g.failed(ip, now, &refInvalidKey)
	case errors.Is(err, auth.ErrInactiveKey):
		// The secret matched: not a guess, so not a failed attempt.
		prefix, _ := auth.ParseKey(key)
		g.recordRefusal(prefix, ip, now, refInactiveKey.Code)
		return broker.Identity{}, &refInactiveKey
	case errors.Is(err, auth.ErrExpiredKey):
		prefix, _ := auth.ParseKey(key)
		g.recordRefusal(prefix, ip, now, refExpiredKey.Code)
		return broker.Identity{}, &refExpiredKey
	default:
		g.log.Error().Err(err).Msg("key lookup failed")
		return broker.Identity{}, &refStoreDown
	}
	return broker.Identity{
		Kind:      broker.KeyHolder,
		ID:        limiter.KeyIdentity(info.Prefix),
		IP:        ip,
		KeyPrefix: info.Prefix,
		Account:   info.Account,
		ExpiresAt: info.ExpiresAt,
		Policy:    &info,
	}, nil
}

// failed counts a failed key attempt of ip; once the IP is blocked the
// refusal becomes 403 IP_BLOCKED.
func (g *Gate) failed(ip netip.Addr, now time.Time, ref *broker.Refusal) *broker.Refusal {
	if g.opts.Limiter != nil {
		if err := g.opts.Limiter.FailedKey(ip, now); err != nil {
			return refusalOf(err)
		}
	}
	return ref
}

// refusalOf converts a limiter refusal.
func refusalOf(err error) *broker.Refusal {
	var lr *limiter.Refusal
	if !errors.As(err, &lr) {
		return &broker.Refusal{Status: http.StatusServiceUnavailable, Code: "UNAVAILABLE", Message: "admission failed, retry", RetryAfter: time.Second}
	}
	h := http.Header{}
	lr.SetHeaders(h)
	h.Del("Retry-After") // the broker sets it from RetryAfter
	return &broker.Refusal{Status: lr.Status, Code: lr.Code, Message: lr.Message, RetryAfter: lr.RetryAfter, Header: h}
}

// Admit implements broker.Admitter.
func (g *Gate) Admit(id broker.Identity, now time.Time) (broker.Budget, *broker.Refusal) {
	b := &budget{g: g, prefix: id.KeyPrefix}
	if lim := g.opts.Limiter; lim != nil {
		conn, err := lim.Admit(context.Background(), requestOf(id), now)
		if err != nil {
			g.recordRefusal(id.KeyPrefix, id.IP, now, refusalOf(err).Code)
			return nil, refusalOf(err)
		}
		b.conn = conn
	}
	if g.opts.Usage != nil && id.KeyPrefix != "" {
		g.opts.Usage.Add(id.KeyPrefix, 0, now) // last_used_at at connect
	}
	return b, nil
}

// requestOf is the limiter request of an identity.
func requestOf(id broker.Identity) limiter.Request {
	req := limiter.Request{Identity: id.ID, IP: id.IP, Tier: limiter.TierAnonymous}
	if id.Kind == broker.KeyHolder {
		req.Tier = limiter.TierKey
		if info, ok := id.Policy.(*auth.KeyInfo); ok {
			req.Limits, req.Quotas = LimiterPolicy(info.Limits, info.Quotas)
		}
	}
	return req
}

// LimiterPolicy converts a key record's overrides to the limiter's.
func LimiterPolicy(l auth.Limits, q auth.Quotas) (limiter.Limits, limiter.Quotas) {
	return limiter.Limits{
			CreditsPerMinute:      int64(l.CreditsPerMinute),
			MaxConnections:        int64(l.MaxConnections),
			MaxSubscriptions:      l.MaxSubscriptions,
			ConnMessagesPerSecond: float64(l.ConnMessagesPerSecond),
		}, limiter.Quotas{
			Total: q.Total, Daily: q.Daily, Weekly: q.Weekly, Monthly: q.Monthly,
		}
}

// budget adapts a limiter connection to broker.Budget.
type budget struct {
	// Immutable after Admit.
	g      *Gate
	conn   *limiter.Conn // nil: unlimited
	prefix string
}

// Charge implements broker.Budget.
func (b *budget) Charge(op broker.Op, now time.Time) broker.Decision {
	if b.prefix != "" && b.g.opts.Usage != nil {
		b.g.opts.Usage.Add(b.prefix, 1, now)
	}
	if b.conn == nil {
		return broker.Decision{Allowed: true}
	}
	var d limiter.Decision
	costs := b.g.opts.Limiter.Costs() // reloadable
	switch op {
	case broker.OpSubscribe:
		d = b.conn.Charge(costs.Subscribe, now)
	case broker.OpUnsubscribe:
		d = b.conn.Count(costs.Unsubscribe, now)
	default:
		d = b.conn.Charge(costs.Ping, now)
	}
	out := broker.Decision{
		Allowed:    d.Allowed,
		RetryAfter: d.RetryAfter,
		Close:      d.Close,
		RL:         broker.RateInfo{Remaining: max(d.Remaining, 0), Quota: d.Limit, Reset: d.ResetSeconds()},
		HasRL:      true,
	}
	if !d.Allowed || d.Close {
		out.Code, out.Message, out.CloseReason = d.Code(), d.Message(), d.CloseReason()
	}
	return out
}

// MaxSubscriptions implements broker.Budget.
func (b *budget) MaxSubscriptions() int {
	if b.conn == nil {
		return 0
	}
	return b.conn.MaxSubscriptions()
}

// Release implements broker.Budget.
func (b *budget) Release(time.Time) {
	if b.conn != nil {
		b.conn.Release()
	}
}
