package gate

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"floodgate/auth"
	"floodgate/broker"

	"github.com/nats-io/nats.go"
)

// OnClose records a key session's end as a connection event; it is the
// broker's Options.OnClose. It never blocks: when the queue is full the
// event is dropped.
func (g *Gate) OnClose(info broker.SessionInfo) {
	if info.Identity.KeyPrefix == "" {
		return
	}
	g.enqueue(info.Identity.KeyPrefix, auth.Event{
		Time:        info.End,
		IP:          info.Identity.IP.String(),
		Node:        g.opts.NodeID,
		DurationMS:  info.End.Sub(info.Start).Milliseconds(),
		MsgsIn:      info.MsgsIn,
		MsgsOut:     info.MsgsOut,
		CloseCode:   info.CloseCode,
		CloseReason: info.CloseReason.String(),
	})
}

func (g *Gate) recordRefusal(prefix string, ip netip.Addr, now time.Time, code string) {
	if prefix == "" {
		return
	}
	g.enqueue(prefix, auth.Event{Time: now, IP: ip.String(), Node: g.opts.NodeID, Refusal: code})
}

func (g *Gate) enqueue(prefix string, ev auth.Event) {
	if g.opts.Store == nil {
		return
	}
	select {
	case g.events <- keyEvent{prefix, ev}:
	default:
		g.dropped.Add(1) // reported by Run, once a second at most
	}
}

// Run writes queued connection events to the store until ctx ends, then
// writes what is left (bounded by 5 s).
func (g *Gate) Run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			if n := g.dropped.Swap(0); n > 0 {
				g.log.Warn().Int64("dropped", n).Msg("connection events dropped: queue full")
			}
		case e := <-g.events:
			g.write(context.Background(), e)
		case <-ctx.Done():
			flush, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			for {
				select {
				case e := <-g.events:
					g.write(flush, e)
				default:
					return
				}
			}
		}
	}
}

func (g *Gate) write(ctx context.Context, e keyEvent) {
	if g.opts.Store == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := g.opts.Store.AppendEvent(ctx, e.prefix, e.ev); err != nil {
		g.log.Warn().Err(err).Str("key_prefix", e.prefix).Msg("connection event not recorded")
	}
}

// Sessions is what Apply needs of the broker.
type Sessions interface {
	CloseKey(prefix string, reason broker.CloseReason) int
	SetKeyExpiry(prefix string, expiresAt time.Time) int
}

// Apply handles one key control event on this node: the key cache forgets
// the key; revoked, deactivated and expired keys lose their sessions (1008
// with the reason); an updated key's live sessions get its new limits,
// quotas and expiry.
func (g *Gate) Apply(ev auth.KeyEvent, sessions Sessions) {
	if g.opts.Keyring != nil {
		g.opts.Keyring.HandleEvent(ev)
	}
	switch ev.Type {
	case auth.EventRevoked:
		sessions.CloseKey(ev.Prefix, broker.ReasonKeyRevoked)
	case auth.EventDeactivated:
		sessions.CloseKey(ev.Prefix, broker.ReasonKeyInactive)
	case auth.EventExpired:
		sessions.CloseKey(ev.Prefix, broker.ReasonKeyExpired)
	default:
		g.refresh(ev.Prefix, sessions)
	}
}

// refresh re-reads a key and applies it to live sessions and budgets.
func (g *Gate) refresh(prefix string, sessions Sessions) {
	if g.opts.Store == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rec, err := g.opts.Store.Get(ctx, prefix)
	if g.opts.Keyring != nil {
		g.opts.Keyring.Invalidate(prefix) // a missed event leaves a stale cache
	}
	if errors.Is(err, auth.ErrNotFound) {
		sessions.CloseKey(prefix, broker.ReasonKeyRevoked) // deleted
		return
	}
	if err != nil {
		g.log.Warn().Err(err).Str("key_prefix", prefix).Msg("key refresh failed")
		return
	}
	now := time.Now()
	switch {
	case rec.Status == auth.StatusRevoked:
		sessions.CloseKey(prefix, broker.ReasonKeyRevoked)
		return
	case rec.Status == auth.StatusInactive:
		sessions.CloseKey(prefix, broker.ReasonKeyInactive)
		return
	case !rec.ExpiresAt.IsZero() && !now.Before(rec.ExpiresAt):
		sessions.CloseKey(prefix, broker.ReasonKeyExpired)
		return
	}
	sessions.SetKeyExpiry(prefix, rec.ExpiresAt)
	if g.opts.Limiter != nil {
		l, q := LimiterPolicy(rec.Limits, rec.Quotas)
		g.opts.Limiter.SetOverrides(prefix, l, q, now)
	}
}

// Watch applies the control events published on auth.ControlSubject to
// sessions until the returned stop is called.
func (g *Gate) Watch(nc *nats.Conn, sessions Sessions) (stop func(), err error) {
	return auth.SubscribeEvents(nc, func(ev auth.KeyEvent) { g.Apply(ev, sessions) })
}

// LiveKeys lists the key prefixes with live sessions (broker.Server).
type LiveKeys interface {
	Sessions
	KeyPrefixes() []string
}

// Recheck re-reads every key with live sessions from the store every
// interval until ctx ends, and applies what changed as if a control event
// had arrived: a node that missed events while cut off from NATS still
// closes revoked, deactivated and expired keys within one interval.
func (g *Gate) Recheck(ctx context.Context, live LiveKeys, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			for _, prefix := range live.KeyPrefixes() {
				g.refresh(prefix, live)
			}
		}
	}
}
