package limiter

import (
	"time"

	"floodgate/internal/proto"
)

// Budget names what refused a frame. Its String is the metric label.
type Budget uint8

const (
	// BudgetNone: the frame was allowed.
	BudgetNone Budget = iota
	// BudgetConn: the per-connection message rate (token bucket).
	BudgetConn
	// BudgetCredits: the identity's rolling-window credits.
	BudgetCredits
	// BudgetQuota: one of the key's quotas (Decision.Quota says which).
	BudgetQuota
	numBudgets
)

func (b Budget) String() string {
	switch b {
	case BudgetNone:
		return "none"
	case BudgetConn:
		return "connection"
	case BudgetCredits:
		return "credits"
	case BudgetQuota:
		return "quota"
	}
	return "unknown"
}

// Decision is the outcome of charging one client frame. It is a small value
// (40 bytes), returned without allocation.
type Decision struct {
	// RetryAfter is how long until the same frame would be allowed (0 when
	// allowed; 0 for a total quota, which never refills).
	RetryAfter time.Duration
	// Remaining, Limit and ResetIn are the `rl` field of direct replies:
	// r = credits remaining, q = credit quota per window, t = time until the
	// credits are full again (send ResetSeconds).
	Remaining int64
	Limit     int64
	ResetIn   time.Duration
	// Allowed reports whether the frame may run.
	Allowed bool
	// Budget is what refused the frame.
	Budget Budget
	// Quota is the exhausted quota when Budget is BudgetQuota.
	Quota QuotaWindow
	// Close tells the caller to close the connection with 1008: after more
	// than Violations.MaxRefusals refusals within Violations.Window ("rate
	// limit exceeded"), or when a quota is used up (QUOTA_EXCEEDED).
	Close bool
}

// RetryAfterMs is RetryAfter in whole milliseconds, rounded up: the
// `retry_after_ms` of a RATE_LIMITED error.
func (d Decision) RetryAfterMs() int64 {
	return int64((d.RetryAfter + time.Millisecond - 1) / time.Millisecond)
}

// ResetSeconds is ResetIn in whole seconds, rounded up: `rl.t`.
func (d Decision) ResetSeconds() int64 { return proto.CeilSeconds(d.ResetIn) }

// Code is the protocol error code of a refusal: RATE_LIMITED or
// QUOTA_EXCEEDED ("" when allowed).
func (d Decision) Code() string {
	switch d.Budget {
	case BudgetNone:
		return ""
	case BudgetQuota:
		return "QUOTA_EXCEEDED"
	}
	return "RATE_LIMITED"
}

// Message is the human text of a refusal, e.g. "Rate limit exceeded:
// credits" or "Rate limit exceeded: quota daily". It is a constant string
// (no allocation).
func (d Decision) Message() string {
	switch d.Budget {
	case BudgetConn:
		return "Rate limit exceeded: connection message rate"
	case BudgetCredits:
		return "Rate limit exceeded: credits"
	case BudgetQuota:
		switch d.Quota {
		case QuotaDaily:
			return "Rate limit exceeded: quota daily"
		case QuotaWeekly:
			return "Rate limit exceeded: quota weekly"
		case QuotaMonthly:
			return "Rate limit exceeded: quota monthly"
		case QuotaTotal:
			return "Rate limit exceeded: quota total"
		}
	}
	return ""
}

// CloseReason is the websocket close reason when Close is set.
func (d Decision) CloseReason() string {
	if d.Budget == BudgetQuota {
		return "quota exceeded"
	}
	return "rate limit exceeded"
}

// Conn is the per-connection handle returned by Admit. Charge, Count and
// Release may be called from one goroutine at a time (the session's read
// loop); MaxSubscriptions and Identity from any goroutine.
type Conn struct {
	// Immutable after Admit
	l  *Limiter
	id *identity

	// Guarded by id.mu
	tat      int64 // per-connection message bucket (GCRA)
	refusals timeRing
	violated bool
	released bool
}

// Identity is the identity string the connection was admitted under.
func (c *Conn) Identity() string { return c.id.name }

// MaxSubscriptions is the connection's subscription cap: the tier value or
// the key's override, live (SetOverrides applies at once).
func (c *Conn) MaxSubscriptions() int {
	c.id.mu.Lock()
	n := c.id.pol.maxSubs
	c.id.mu.Unlock()
	return n
}

// Charge charges one client frame costing cost credits at now against the
// connection's message rate (1 message), the identity's credits and the
// key's quotas. If any refuses, nothing is charged and the refusal counts
// toward the violation limit. A cost of 0 charges the message rate only:
// credits and quotas are not consulted (a frame exempt from the credit
// budget, limits.costs). 0 allocations; it takes the identity's mutex and
// never blocks on I/O.
func (c *Conn) Charge(cost int64, now time.Time) Decision {
	return c.charge(cost, now.UnixNano(), false)
}

// Count charges like Charge but never refuses (unsubscribe): budgets may go
// into debt (at most one extra window), the frame always runs, nothing counts
// toward violations.
func (c *Conn) Count(cost int64, now time.Time) Decision {
	return c.charge(cost, now.UnixNano(), true)
}

func (c *Conn) charge(cost, now int64, force bool) Decision {
	id := c.id
	id.mu.Lock()
	p := id.pol
	var d Decision
	ctat, ok, wait := p.connG.take(c.tat, now, 1)
	budget, quota := BudgetNone, QuotaNone
	if !ok {
		if force {
			ctat = p.connG.force(c.tat, now, 1)
		} else {
			budget = BudgetConn
		}
	}
	if budget == BudgetNone && cost > 0 {
		budget, quota, wait = id.takeLocked(c.l, cost, now, force)
	}
	if budget == BudgetNone {
		c.tat = ctat
		d.Allowed = true
	} else {
		d.Budget, d.Quota, d.RetryAfter = budget, quota, time.Duration(wait)
		d.Close = budget == BudgetQuota
		viol := &c.l.set.Load().cfg.Violations
		if c.refusals.add(now, int64(viol.Window)) && !c.violated {
			c.violated = true
			d.Close = true
			id.offenceLocked(now, viol)
		}
	}
	d.Remaining, d.Limit, d.ResetIn = id.rlLocked(c.l, now)
	id.mu.Unlock()
	if !d.Allowed {
		c.l.metrics.refused(budget)
	}
	return d
}

// takeLocked charges cost credits at now to the identity: from the cluster
// lease when one is valid, else from the local cells.
func (id *identity) takeLocked(l *Limiter, cost, now int64, force bool) (Budget, QuotaWindow, int64) {
	if cl := id.cl; cl != nil && l.leaseUsable(cl) {
		return cl.takeLocked(l, id.pol, cost, now, force)
	}
	p := id.local
	if p.hasQuotas && !force {
		if w := id.quota.check(&p.quotas, now, cost); w != QuotaNone {
			return BudgetQuota, w, id.quota.retry(&p.quotas, w, now, cost)
		}
	}
	nt, ok, wait := p.creditG.take(id.tat, now, cost)
	if !ok {
		if !force {
			return BudgetCredits, QuotaNone, wait
		}
		nt = p.creditG.force(id.tat, now, cost)
	}
	id.tat = nt
	if p.hasQuotas {
		id.quota.add(now, cost)
	}
	return BudgetNone, QuotaNone, 0
}

// rlLocked returns the `rl` numbers of the identity at now.
func (id *identity) rlLocked(l *Limiter, now int64) (r, q int64, t time.Duration) {
	if cl := id.cl; cl != nil && l.leaseUsable(cl) {
		// Redis counts this node's unspent lease as spent; it is not.
		q = id.pol.credits
		unspent := max(cl.leased, 0) * id.pol.creditG.t
		return min(max(cl.globalAvail+cl.leased, 0), q), q, time.Duration(max(cl.globalTat-unspent-now, 0))
	}
	p := id.local
	return p.creditG.remaining(id.tat, now), p.credits, time.Duration(max(id.tat-now, 0))
}

// Release ends the connection: it frees its slot in the identity's
// concurrent-connection count (in cluster mode, Redis learns it at the next
// sync). Safe to call more than once.
func (c *Conn) Release() {
	id := c.id
	id.mu.Lock()
	if !c.released {
		c.released = true
		id.conns--
		if id.cl != nil {
			id.cl.connsDirty = true
		}
	}
	id.mu.Unlock()
}
