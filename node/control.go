package node

import (
	"context"
	"errors"
	"time"

	"floodgate/auth"
	"floodgate/broker"
	"floodgate/limiter"

	"github.com/rs/zerolog"
)

// sessions is what key control needs of the broker.
type sessions interface {
	CloseKey(prefix string, reason broker.CloseReason) int
	SetKeyExpiry(prefix string, expiresAt time.Time) int
	KeyPrefixes() []string
}

// control applies key control events (revoke, deactivate, expire, update)
// to this node: the key cache forgets the key, its live sessions close or
// take its new limits, quotas and expiry. Events arrive from NATS (other
// nodes and this one) and from the periodic recheck.
type control struct {
	// Immutable after New.
	store    auth.Store
	keyring  *auth.Keyring
	limiter  *limiter.Limiter
	sessions sessions // nil in sidecar mode
	log      zerolog.Logger
}

// apply handles one control event.
func (c *control) apply(ev auth.KeyEvent) {
	c.keyring.HandleEvent(ev)
	if c.sessions == nil {
		return
	}
	switch ev.Type {
	case auth.EventRevoked:
		c.sessions.CloseKey(ev.Prefix, broker.ReasonKeyRevoked)
	case auth.EventDeactivated:
		c.sessions.CloseKey(ev.Prefix, broker.ReasonKeyInactive)
	case auth.EventExpired:
		c.sessions.CloseKey(ev.Prefix, broker.ReasonKeyExpired)
	default:
		c.refresh(ev.Prefix)
	}
}

// refresh re-reads a key and applies it to live sessions and budgets.
func (c *control) refresh(prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rec, err := c.store.Get(ctx, prefix)
	c.keyring.Invalidate(prefix) // a missed event leaves a stale cache
	if errors.Is(err, auth.ErrNotFound) {
		c.sessions.CloseKey(prefix, broker.ReasonKeyRevoked) // deleted
		return
	}
	if err != nil {
		c.log.Warn().Err(err).Str("key_prefix", prefix).Msg("key refresh failed")
		return
	}
	now := time.Now()
	switch {
	case rec.Status == auth.StatusRevoked:
		c.sessions.CloseKey(prefix, broker.ReasonKeyRevoked)
		return
	case rec.Status == auth.StatusInactive:
		c.sessions.CloseKey(prefix, broker.ReasonKeyInactive)
		return
	case rec.Expired(now):
		c.sessions.CloseKey(prefix, broker.ReasonKeyExpired)
		return
	}
	c.sessions.SetKeyExpiry(prefix, rec.ExpiresAt)
	c.limiter.SetOverrides(prefix, rec.Limits, rec.Quotas, now)
}

// recheck re-reads every key with live sessions every interval until ctx
// ends, and applies what changed as if a control event had arrived: a node
// that missed events while cut off from NATS still closes revoked,
// deactivated and expired keys within one interval.
func (c *control) recheck(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			for _, prefix := range c.sessions.KeyPrefixes() {
				c.refresh(prefix)
			}
		}
	}
}
