package node

import (
	"time"

	"floodgate/auth"
	"floodgate/broker"
	"floodgate/fanout"
	"floodgate/limiter"
)

// budget adapts a limiter connection to broker.Budget: per client frame it
// counts the key's usage and charges the method's cost.
type budget struct {
	// Immutable after Admit.
	conn    *limiter.Conn
	limiter *limiter.Limiter
	usage   *auth.Usage
	costs   *costs // the node's limits.costs by source, swapped on reload
	prefix  string // "" for anonymous connections
	// refusals counts the key's refused frames for the console (nil:
	// not counted).
	refusals refusalRecorder
}

// Charge implements broker.Budget: the cost of op (of src, for a subscribe
// or unsubscribe: one slice index) at now. A cost of 0 charges the
// connection's message rate only. 0 allocations, no I/O.
func (b *budget) Charge(op broker.Op, src *fanout.Source, now time.Time) broker.Decision {
	if b.prefix != "" {
		b.usage.Add(b.prefix, 1, now)
	}
	var d limiter.Decision
	t := b.costs.p.Load() // reloadable
	switch op {
	case broker.OpSubscribe:
		d = b.conn.Charge(cost(t.subscribe, t.subDefault, src), now)
	case broker.OpUnsubscribe: // a real unsubscribe: never refused
		d = b.conn.Count(cost(t.unsubscribe, t.unsubDefault, src), now)
	case broker.OpUnsubscribeNotJoined: // junk: refusable like any frame
		d = b.conn.Charge(cost(t.unsubscribe, t.unsubDefault, src), now)
	default:
		d = b.conn.Charge(b.limiter.Costs().Ping, now)
	}
	return b.decision(d, now)
}

// decision is the broker's view of a limiter decision; a refusal is
// counted for the console.
func (b *budget) decision(d limiter.Decision, now time.Time) broker.Decision {
	out := broker.Decision{
		Allowed:    d.Allowed,
		RetryAfter: d.RetryAfter,
		Close:      d.Close,
		RL:         broker.RateInfo{Remaining: max(d.Remaining, 0), Quota: d.Limit, Reset: d.ResetSeconds()},
		HasRL:      true,
	}
	if !d.Allowed || d.Close {
		out.Code, out.Message, out.CloseReason = d.Code(), d.Message(), d.CloseReason()
		if !d.Allowed && b.refusals != nil && b.prefix != "" {
			b.refusals.refused(b.prefix, out.Code, now)
		}
	}
	return out
}

// ChargeReplay implements broker.Budget: limits.costs.replay credits per
// 100 messages, rounded up, through the same connection (it counts as one
// more message of the connection's rate). 0 allocations, no I/O.
func (b *budget) ChargeReplay(msgs int, now time.Time) broker.Decision {
	cost := int64((msgs+99)/100) * b.limiter.Costs().Replay
	if cost <= 0 {
		return broker.Decision{Allowed: true}
	}
	return b.decision(b.conn.Charge(cost, now), now)
}

// MaxSubscriptions implements broker.Budget.
func (b *budget) MaxSubscriptions() int { return b.conn.MaxSubscriptions() }

// Release implements broker.Budget.
func (b *budget) Release(time.Time) { b.conn.Release() }
