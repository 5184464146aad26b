package node

import (
	"sync/atomic"
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
	// meter and quota: the key's delivered_daily (meter.go); nil: none.
	meter *meter
	quota *keyQuota
}

// refusalRecorder counts refusals of keys (the console's ranking,
// console.Backend.Refused); budget.go and admit.go call it where a key's
// frame or upgrade is refused.
type refusalRecorder interface {
	Refused(prefix, code string, now time.Time)
}

// gatedBudget is the budget of a key with a delivered_daily quota: it
// also implements broker.PublicGate.
type gatedBudget struct{ *budget }

// PublicRefused implements broker.PublicGate.
func (g *gatedBudget) PublicRefused(now time.Time) (time.Duration, bool) {
	return g.quota.PublicRefused(now)
}

// Charge implements broker.Budget: the cost of op (of src, for a subscribe
// or unsubscribe: one slice index) at now. A cost of 0 charges the
// connection's message rate only. 0 allocations, no I/O.
func (b *budget) Charge(op broker.Op, src *fanout.Source, now time.Time) broker.Decision {
	var d limiter.Decision
	var c int64
	t := b.costs.p.Load() // reloadable
	switch op {
	case broker.OpSubscribe:
		c = cost(t.subscribe, t.subDefault, src)
		d = b.conn.Charge(c, now)
	case broker.OpUnsubscribe: // a real unsubscribe: never refused
		c = cost(t.unsubscribe, t.unsubDefault, src)
		d = b.conn.Count(c, now)
	case broker.OpUnsubscribeNotJoined: // junk: refusable like any frame
		c = cost(t.unsubscribe, t.unsubDefault, src)
		d = b.conn.Charge(c, now)
	default:
		c = b.limiter.Costs().Ping
		d = b.conn.Charge(c, now)
	}
	if b.prefix != "" {
		if !d.Allowed {
			c = 0
		}
		b.usage.AddCharged(b.prefix, 1, c, now) // usage_today.credits
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
			b.refusals.Refused(b.prefix, out.Code, now)
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
	d := b.conn.Charge(cost, now)
	if d.Allowed && b.prefix != "" {
		b.usage.AddCharged(b.prefix, 0, cost, now)
	}
	return b.decision(d, now)
}

// MaxSubscriptions implements broker.Budget.
func (b *budget) MaxSubscriptions() int { return b.conn.MaxSubscriptions() }

// Release implements broker.Budget.
func (b *budget) Release(time.Time) {
	b.conn.Release()
	if b.quota != nil {
		b.meter.released(b.prefix, b.quota)
	}
}

// costTable is limits.costs priced by source index (fanout.Source.Index),
// built when the config is loaded or reloaded, so that charging a
// subscribe or unsubscribe indexes a slice: no map lookup, no allocation.
// Immutable; Reload swaps it whole.
type costTable struct {
	subscribe, unsubscribe []int64 // by source index
	// subDefault and unsubDefault price a frame that names no source the
	// table knows (it is refused after being charged).
	subDefault, unsubDefault int64
}

// newCostTable prices every source of t by c. Names of c the table does
// not know are ignored here: checkCosts refuses them first.
func newCostTable(c limiter.Costs, t *fanout.Sources) *costTable {
	ct := &costTable{subDefault: c.Subscribe.Default, unsubDefault: c.Unsubscribe.Default}
	ct.subscribe = bySource(c.Subscribe, t)
	ct.unsubscribe = bySource(c.Unsubscribe, t)
	return ct
}

func bySource(c limiter.SourceCosts, t *fanout.Sources) []int64 {
	out := make([]int64, t.Len())
	for i := range out {
		out[i] = c.Default
	}
	for name, v := range c.BySource {
		if src := t.Lookup([]byte(name)); src != nil {
			out[src.Index] = v
		}
	}
	return out
}

// cost is the price of src in costs (def when src is nil).
func cost(costs []int64, def int64, src *fanout.Source) int64 {
	if src == nil || src.Index >= len(costs) {
		return def
	}
	return costs[src.Index]
}

// checkCosts refuses per-source costs naming a source that t does not
// have: "limiter: invalid config: costs.subscribe.bokk: no such source".
func checkCosts(c *limiter.Costs, t *fanout.Sources) error {
	return c.ValidateSources(func(name string) bool { return t.Lookup([]byte(name)) != nil })
}

// costs holds the cost table in force; shared by the node's budgets.
type costs struct{ p atomic.Pointer[costTable] }
