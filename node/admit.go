package node

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"time"

	"floodgate/auth"
	"floodgate/broker"
	"floodgate/internal/proto"
	"floodgate/limiter"

	"github.com/rs/zerolog"
)

// Refusals of keys at the upgrade (docs/protocol.md).
var (
	refInvalidKey   = proto.Refusal{Status: http.StatusUnauthorized, Code: proto.InvalidAPIKey, Message: "Invalid API Key"}
	refInactiveKey  = proto.Refusal{Status: http.StatusUnauthorized, Code: proto.InactiveAPIKey, Message: "Inactive API Key"}
	refExpiredKey   = proto.Refusal{Status: http.StatusUnauthorized, Code: proto.ExpiredAPIKey, Message: "Expired API Key"}
	refIPNotAllowed = proto.Refusal{Status: http.StatusForbidden, Code: proto.IPNotAllowed, Message: "IP not allowed for this API key"}
	refStoreDown    = proto.Refusal{Status: http.StatusServiceUnavailable, Code: proto.Unavailable, Message: "key store unavailable, retry", RetryAfter: time.Second}
	refAdmitFailed  = proto.Refusal{Status: http.StatusServiceUnavailable, Code: proto.Unavailable, Message: "admission failed, retry", RetryAfter: time.Second}
)

// admitter is the node's broker.Admitter: identity resolution (identity.go),
// key verification, the limiter's admission, and the connection's budget.
type admitter struct {
	// Immutable after New.
	keyring    *auth.Keyring
	limiter    *limiter.Limiter
	usage      *auth.Usage
	meter      *meter // delivered_daily; nil in tests that build an admitter without it
	costs      *costs
	events     *eventWriter
	trusted    []netip.Prefix
	allowQuery bool
	// storeLog logs store failures at the upgrade at most once a second
	// (a reconnect storm during an outage refuses thousands a second).
	storeLog zerolog.Logger
	refusals refusalRecorder // the console's refusal ranking; nil: none
}

// Admit implements broker.Admitter.
func (a *admitter) Admit(ctx context.Context, r *http.Request, now time.Time) (broker.Identity, broker.Budget, *proto.Refusal) {
	ip := clientIP(r, a.trusted)
	key, empty, ref := presentedKey(r, a.allowQuery)
	if ref != nil {
		if empty {
			ref = a.failed(ip, now, ref)
		}
		return broker.Identity{}, nil, ref
	}
	id := broker.Identity{Kind: broker.Anonymous, ID: limiter.AddrIdentity(ip), IP: ip}
	req := limiter.Request{Identity: id.ID, IP: ip, Tier: limiter.TierAnonymous}
	if key != "" {
		if err := a.limiter.CheckIP(ip, now); err != nil {
			return broker.Identity{}, nil, refusalOf(err)
		}
		info, ref := a.verify(key, ip, now)
		if ref != nil {
			return broker.Identity{}, nil, ref
		}
		if !info.AllowedCIDRs.Allows(ip) {
			// A stolen key tried from elsewhere: a failed attempt of the IP.
			a.refused(info.Prefix, ip, now, refIPNotAllowed.Code)
			return broker.Identity{}, nil, a.failed(ip, now, &refIPNotAllowed)
		}
		id = broker.Identity{Kind: broker.KeyHolder, ID: limiter.KeyIdentity(info.Prefix), IP: ip,
			KeyPrefix: info.Prefix, Account: info.Account, ExpiresAt: info.ExpiresAt, Scopes: info.Scopes}
		req = limiter.Request{Identity: id.ID, IP: ip, Tier: limiter.TierKey, Limits: info.Limits, Quotas: info.Quotas}
	}
	conn, err := a.limiter.Admit(ctx, req, now)
	if err != nil {
		ref := refusalOf(err)
		a.refused(id.KeyPrefix, ip, now, ref.Code)
		return broker.Identity{}, nil, ref
	}
	if id.KeyPrefix != "" {
		a.usage.Add(id.KeyPrefix, 0, now) // last_used_at at connect
	}
	b := &budget{conn: conn, limiter: a.limiter, usage: a.usage, costs: a.costs, prefix: id.KeyPrefix, refusals: a.refusals}
	if a.meter != nil && req.Quotas.DeliveredDaily > 0 {
		b.meter, b.quota = a.meter, a.meter.admitted(id.KeyPrefix, req.Quotas.DeliveredDaily)
		return id, &gatedBudget{b}, nil
	}
	return id, b, nil
}

// verify checks a presented key. Unknown, malformed and revoked keys are
// failed attempts of ip (an inactive or expired key had the right secret:
// not a guess).
func (a *admitter) verify(key string, ip netip.Addr, now time.Time) (auth.KeyInfo, *proto.Refusal) {
	info, err := a.keyring.Verify(key, now)
	switch {
	case err == nil:
		return info, nil
	case errors.Is(err, auth.ErrInvalidKey):
		return info, a.failed(ip, now, &refInvalidKey)
	case errors.Is(err, auth.ErrInactiveKey):
		prefix, _ := auth.ParseKey(key)
		a.refused(prefix, ip, now, refInactiveKey.Code)
		return info, &refInactiveKey
	case errors.Is(err, auth.ErrExpiredKey):
		prefix, _ := auth.ParseKey(key)
		a.refused(prefix, ip, now, refExpiredKey.Code)
		return info, &refExpiredKey
	}
	a.storeLog.Error().Err(err).Msg("key lookup failed (at most one line a second)")
	return info, &refStoreDown
}

// refused records a refused upgrade of a key: its connection event and
// the console's refusal ranking.
func (a *admitter) refused(prefix string, ip netip.Addr, now time.Time, code string) {
	a.events.refusal(prefix, ip, now, code)
	if a.refusals != nil && prefix != "" {
		a.refusals.Refused(prefix, code, now)
	}
}

// failed counts a failed key attempt of ip; once the IP is blocked the
// refusal becomes 403 IP_BLOCKED.
func (a *admitter) failed(ip netip.Addr, now time.Time, ref *proto.Refusal) *proto.Refusal {
	if err := a.limiter.FailedKey(ip, now); err != nil {
		return refusalOf(err)
	}
	return ref
}

// refusalOf is the refusal of a limiter error: its own *proto.Refusal, or
// 503 when admission itself failed.
func refusalOf(err error) *proto.Refusal {
	var r *proto.Refusal
	if errors.As(err, &r) {
		return r
	}
	return &refAdmitFailed
}
