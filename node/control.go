package node

import (
	"context"
	"errors"
	"time"

	"floodgate/auth"
	"floodgate/broker"
	"floodgate/internal/proto"
	"floodgate/limiter"

	"github.com/rs/zerolog"
)

// sessions is what key control needs of the broker.
type sessions interface {
	CloseKey(prefix string, reason broker.CloseReason) int
	SetKeyExpiry(prefix string, expiresAt time.Time) int
	SetKeyScopes(prefix string, sc proto.Scopes) int
	KeyPrefixes() []string
}

// control applies key control events (revoke, deactivate, expire, update)
// to this node: the key cache forgets the key, its live sessions close or
// take its new limits, quotas and expiry. Events arrive from this node's
// own API first (notify.go applies them before publishing, and skips their
// echo from NATS), from NATS (other nodes) and from the periodic recheck.
type control struct {
	// Immutable after New.
	store    auth.Store // the guarded store: fails at once while it is known down
	keyring  *auth.Keyring
	limiter  *limiter.Limiter
	sessions sessions // nil in sidecar mode
	timeout  time.Duration
	log      zerolog.Logger
	meter    *meter // delivered_daily of live keys; nil: none
}

// Recheck periods: every interval (Config.RecheckInterval, 30 s by
// default) while control events flow, every recheckDegraded while they may
// be missed (NATS down, or down since the last recheck).
const recheckDegraded = 5 * time.Second

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
		if err := c.refresh(ev.Prefix); err != nil {
			c.log.Warn().Err(err).Str("key_prefix", ev.Prefix).Msg("key refresh failed")
		}
	}
}

// refresh re-reads a key (bounded by timeout) and applies it to live
// sessions and budgets.
func (c *control) refresh(prefix string) error {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	rec, err := c.store.Get(ctx, prefix)
	c.keyring.Invalidate(prefix) // a missed event leaves a stale cache
	if errors.Is(err, auth.ErrNotFound) {
		c.sessions.CloseKey(prefix, broker.ReasonKeyRevoked) // deleted
		return nil
	}
	if err != nil {
		return err
	}
	now := time.Now()
	switch {
	case rec.Status == auth.StatusRevoked:
		c.sessions.CloseKey(prefix, broker.ReasonKeyRevoked)
		return nil
	case rec.Status == auth.StatusInactive:
		c.sessions.CloseKey(prefix, broker.ReasonKeyInactive)
		return nil
	case rec.Expired(now):
		c.sessions.CloseKey(prefix, broker.ReasonKeyExpired)
		return nil
	}
	c.sessions.SetKeyExpiry(prefix, rec.ExpiresAt)
	c.sessions.SetKeyScopes(prefix, rec.Scopes)
	c.limiter.SetOverrides(prefix, rec.Limits, rec.Quotas, now)
	if c.meter != nil {
		c.meter.setLimit(prefix, rec.Quotas.DeliveredDaily)
	}
	return nil
}

// recheck re-reads every key with live sessions until ctx ends, and
// applies what changed as if a control event had arrived: a node that
// missed events while cut off from NATS still closes revoked, deactivated
// and expired keys. It runs every interval, and every recheckDegraded
// (or interval, if shorter) while missed() says events may have been lost.
// A round that cannot read the store logs once and stops: the store is
// down for every key alike.
func (c *control) recheck(ctx context.Context, interval time.Duration, missed func() bool) {
	tick := min(interval, recheckDegraded)
	t := time.NewTicker(tick)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if m := missed(); !m && now.Sub(last) < interval-tick/2 {
				continue
			}
			last = now
			c.recheckAll()
		}
	}
}

// recheckAll refreshes every key with live sessions.
func (c *control) recheckAll() {
	for _, prefix := range c.sessions.KeyPrefixes() {
		if err := c.refresh(prefix); err != nil {
			c.log.Warn().Err(err).Str("key_prefix", prefix).Msg("key recheck stopped: the store does not answer")
			return
		}
	}
}
