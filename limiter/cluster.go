package limiter

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// clusterCell is the cluster-mode state of one identity on this node.
type clusterCell struct {
	// Guarded by identity.mu
	leased       int64  // credits granted to this node, not yet spent (< 0: debt from Count)
	used         int64  // spent from the lease since the last sync
	refused      int64  // refused for want of lease since the last sync
	lastGrant    int64  // size of the last grant; a refill starts below half of it
	lastUse      int64  // last charge, for IdleReturn
	epoch        uint64 // Limiter epoch of the lease; another epoch means stale
	inflight     bool   // a sync op for this cell is on the wire
	quotaBlocked QuotaWindow
	quotaUntil   int64
	globalAvail  int64 // credits left in Redis after the last grant
	globalTat    int64 // Redis TAT after the last grant, Unix ns
	connsDirty   bool  // the live count changed since the last heartbeat
	lastBeat     int64
}

func (c *clusterCell) idle() bool { return c.leased == 0 && !c.inflight && !c.connsDirty }

// leaseUsable reports whether the hot path spends the cluster lease (true)
// or the local share cells (Redis down, or no lease granted yet).
func (l *Limiter) leaseUsable(c *clusterCell) bool {
	return c.epoch == l.epoch.Load() && l.healthy.Load()
}

func (c *clusterCell) takeLocked(l *Limiter, p *policy, cost, now int64, force bool) (Budget, QuotaWindow, int64) {
	c.lastUse = now
	if c.leased >= cost || force {
		c.leased -= cost
		c.used += cost
		if c.leased <= c.lastGrant/2 && !c.inflight {
			l.wake()
		}
		return BudgetNone, QuotaNone, 0
	}
	c.refused += cost
	if !c.inflight {
		l.wake()
	}
	if c.quotaBlocked != QuotaNone && (c.quotaBlocked == QuotaTotal || c.quotaUntil > now) {
		return BudgetQuota, c.quotaBlocked, max(c.quotaUntil-now, 0)
	}
	wait := int64(l.opts.SyncInterval)
	if c.globalAvail < cost {
		wait = max(wait, p.creditG.wait(c.globalTat, now, cost))
	}
	return BudgetCredits, QuotaNone, wait
}

// idleLease is how many credits a node keeps of an idle lease while the
// identity has live connections on it.
const idleLease = 2

func idleKeep(l *Limiter, id *identity) int64 {
	if id.conns == 0 {
		return 0
	}
	c := l.Costs()
	return max(idleLease, c.Subscribe.Max(), c.Unsubscribe.Max(), c.Ping)
}

// Redis keys of an identity; the hash tag keeps them in one slot.
func (l *Limiter) key(name, suffix string) string {
	return l.opts.KeyPrefix + "{" + name + "}:" + suffix
}

// quotaArgs are the quota arguments of the scripts at now (Unix ns): the
// limits daily, weekly, monthly, total; the calendar flag; the current
// calendar periods of the three windows and their ends (Unix us).
func quotaArgs(q *Quotas, now int64) []any {
	cal := 0
	if q.Calendar {
		cal = 1
	}
	pd, _, ed := calendarPeriod(QuotaDaily, now)
	pw, _, ew := calendarPeriod(QuotaWeekly, now)
	pm, _, em := calendarPeriod(QuotaMonthly, now)
	return []any{q.Daily, q.Weekly, q.Monthly, q.Total, cal, pd, pw, pm, us(ed), us(ew), us(em)}
}

func us(ns int64) int64 { return ns / 1000 }

// setDown switches to local fallback after a Redis error; logs once.
func (l *Limiter) setDown(err error) {
	l.downErr.Store(&err)
	if l.healthy.CompareAndSwap(true, false) {
		l.metrics.clusterUp.Set(0)
		l.log.Warn().Err(err).Int("share_of_nodes", l.opts.ExpectedNodes).
			Msg("limiter: redis unreachable; enforcing local budget shares until it returns")
	}
}

// RedisDown puts the limiter on local budgets at once, as if its own
// Redis call had failed with err: the caller (the node's dependency check,
// a key lookup that timed out) found Redis unreachable. Run's next round
// probes Redis and resumes cluster budgets when it answers. A no-op in
// local mode or when already down.
func (l *Limiter) RedisDown(err error) {
	if l.redis == nil || !l.healthy.Load() {
		return
	}
	l.setDown(err)
}

type admitResult struct {
	code  int64
	vals  []int64
	epoch uint64
}

// redisAdmit runs the admission script: connect rate, connection count,
// quotas and the first lease, in one round trip.
func (l *Limiter) redisAdmit(ctx context.Context, name string, p *policy, want, n int64) (admitResult, error) {
	ep := l.epoch.Load()
	ctx, cancel := context.WithTimeout(ctx, l.opts.RedisTimeout)
	defer cancel()
	keys := []string{l.key(name, "conns"), l.key(name, "connect"), l.key(name, "credits"), l.key(name, "quota"), l.key(name, "total")}
	args := append([]any{us(n), l.opts.NodeID, us(3 * int64(l.opts.Heartbeat)), p.maxConns, p.connects, us(p.connectWin),
		p.credits, us(p.creditWindow), want, l.opts.ExpectedNodes}, quotaArgs(&p.quotas, n)...)
	v, err := admitScript.Run(ctx, l.redis, keys, args...).Int64Slice()
	if err != nil {
		return admitResult{}, err
	}
	if len(v) == 0 {
		return admitResult{}, errors.New("limiter: bad admit script reply")
	}
	return admitResult{code: v[0], vals: v[1:], epoch: ep}, nil
}

func (l *Limiter) applyAdmitLocked(id *identity, r admitResult, n int64) error {
	p := id.pol
	switch r.code {
	case 1:
		return l.connectRateRefusal(id, p.connects, p.connectWin, r.vals[0]*1000, n)
	case 2:
		return l.connsRefusal(id, p.maxConns, n)
	case 3:
		w := QuotaWindow(r.vals[0])
		return newQuotaRefusal(w, p.quotas.limit(w), p.quotas.limit(w), time.Duration(r.vals[1]*1000))
	}
	id.conns++
	id.cl.applyLeaseLocked(l, r.vals, r.epoch, n)
	return nil
}

// applyLeaseLocked applies a lease script reply {grant, tat, avail, quota
// window, quota wait}.
func (c *clusterCell) applyLeaseLocked(l *Limiter, v []int64, ep uint64, now int64) {
	if len(v) < 5 || ep != l.epoch.Load() {
		return
	}
	if c.epoch != ep {
		c.leased, c.used, c.refused = 0, 0, 0
		c.epoch = ep
	}
	grant := v[0]
	c.leased += grant
	if grant > 0 {
		c.lastGrant = grant
		c.lastUse = max(c.lastUse, now) // idle counts from the grant
	}
	c.globalTat, c.globalAvail = v[1]*1000, v[2]
	c.quotaBlocked = QuotaWindow(v[3])
	c.quotaUntil = 0
	if c.quotaBlocked != QuotaNone {
		c.quotaUntil = now + v[4]*1000
	}
}

// syncOp is one identity's exchange in a sync round.
type syncOp struct {
	id         *identity
	pol        *policy
	want, ret  int64
	debt       int64
	beat       bool
	conns      int64
	epoch      uint64
	now        int64
	lease, bop *redis.Cmd
}

// planLocked decides what a sync round does for the identity at now.
func (c *clusterCell) planLocked(l *Limiter, id *identity, now int64, ep uint64) (syncOp, bool) {
	op := syncOp{id: id, pol: id.pol, epoch: ep, now: now}
	if c.inflight {
		return op, false
	}
	if c.epoch != ep {
		// Lease of an earlier epoch (before an outage) or none yet.
		if c.leased > 0 && c.epoch != 0 {
			op.ret = c.leased
		}
		c.leased, c.used, c.refused = 0, 0, 0
		if id.conns > 0 {
			op.want = min(id.pol.connQ, id.pol.credits)
			op.beat = true
		}
	} else {
		if c.leased < 0 {
			op.debt = -c.leased
			c.leased = 0
		}
		if demand := c.used + c.refused; demand > 0 && c.leased <= c.lastGrant/2 {
			op.want = min(max(2*c.used+c.refused, 1), id.pol.credits)
		} else if c.leased > idleKeep(l, id) && now-c.lastUse >= int64(l.opts.IdleReturn) {
			// Return an idle lease, but keep a couple of credits while the
			// identity has live connections here: otherwise the first
			// frame after a quiet second finds no lease and is refused
			// with the budget full. At most idleLease credits per node stay
			// parked.
			keep := idleKeep(l, id)
			op.ret = c.leased - keep
			c.leased, c.lastGrant = keep, keep
		}
		c.used, c.refused = 0, 0
	}
	if c.connsDirty || (id.conns > 0 && now-c.lastBeat >= int64(l.opts.Heartbeat)) {
		op.beat = true
	}
	if op.beat {
		op.conns = id.conns
		c.connsDirty = false
		c.lastBeat = now
	}
	if op.want == 0 && op.ret == 0 && op.debt == 0 && !op.beat {
		return op, false
	}
	c.inflight = op.want > 0 || op.ret > 0 || op.debt > 0
	return op, true
}

// Sync runs one cluster round at now: while Redis is down it probes it
// (at most every ProbeInterval) and resumes cluster budgets when it answers;
// otherwise it refills low leases, returns idle ones and writes connection
// heartbeats, all in one pipelined round trip. Run calls it every
// SyncInterval and when a lease runs low; tests call it with a fake clock.
// It returns Health() after the round.
func (l *Limiter) Sync(ctx context.Context, now time.Time) error {
	if l.redis == nil {
		return nil
	}
	l.runMu.Lock()
	defer l.runMu.Unlock()
	n := now.UnixNano()
	if !l.healthy.Load() {
		if last := l.lastProbe; last != 0 && n-last < int64(l.opts.ProbeInterval) && n >= last {
			return l.Health()
		}
		l.lastProbe = n
		pctx, cancel := context.WithTimeout(ctx, l.opts.RedisTimeout)
		err := l.ping(pctx)
		cancel()
		if err != nil {
			l.setDown(err)
			return l.Health()
		}
		l.epoch.Add(1)
		l.healthy.Store(true)
		l.metrics.clusterUp.Set(1)
		l.log.Info().Msg("limiter: redis reachable again; cluster budgets resumed")
	}
	ep := l.epoch.Load()
	ops := l.syncOps[:0]
	l.syncBuf = l.tab.each(l.syncBuf, func(id *identity) {
		id.mu.Lock()
		if id.cl != nil {
			if op, ok := id.cl.planLocked(l, id, n, ep); ok {
				ops = append(ops, op)
			}
		}
		id.mu.Unlock()
	})
	err := l.exec(ctx, ops)
	for i := range ops {
		op := &ops[i]
		op.id.mu.Lock()
		c := op.id.cl
		c.inflight = false
		if op.lease != nil {
			if v, lerr := op.lease.Int64Slice(); lerr == nil {
				c.applyLeaseLocked(l, v, op.epoch, op.now)
			}
		}
		if op.beat && (op.bop == nil || op.bop.Err() != nil) {
			c.connsDirty = true
		}
		op.id.mu.Unlock()
		*op = syncOp{}
	}
	l.syncOps = ops[:0]
	if err != nil {
		l.setDown(err)
		l.lastProbe = n
	}
	return l.Health()
}

// ping checks that Redis answers: the server, or every master of a Redis
// Cluster (the identities of one hung shard are as stuck as all of them).
func (l *Limiter) ping(ctx context.Context) error {
	if c, ok := l.redis.(*redis.ClusterClient); ok {
		return c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			return m.Ping(ctx).Err()
		})
	}
	return l.redis.Ping(ctx).Err()
}

// exec sends ops in one pipeline. Scripts missing from the server cache are
// loaded and the round is retried once.
func (l *Limiter) exec(ctx context.Context, ops []syncOp) error {
	if len(ops) == 0 {
		return nil
	}
	for attempt := 0; ; attempt++ {
		pctx, cancel := context.WithTimeout(ctx, l.opts.RedisTimeout)
		pipe := l.redis.Pipeline()
		for i := range ops {
			op := &ops[i]
			name, p := op.id.name, op.pol
			op.lease, op.bop = nil, nil
			if op.want > 0 || op.ret > 0 || op.debt > 0 {
				args := append([]any{us(op.now), p.credits, us(p.creditWindow), op.want, l.opts.ExpectedNodes, op.ret, op.debt}, quotaArgs(&p.quotas, op.now)...)
				op.lease = leaseScript.EvalSha(pctx, pipe, []string{l.key(name, "credits"), l.key(name, "quota"), l.key(name, "total")}, args...)
			}
			if op.beat {
				op.bop = beatScript.EvalSha(pctx, pipe, []string{l.key(name, "conns")},
					l.opts.NodeID, op.conns, us(op.now+3*int64(l.opts.Heartbeat)), (6 * l.opts.Heartbeat).Milliseconds())
			}
		}
		_, err := pipe.Exec(pctx)
		cancel()
		switch {
		case err == nil:
			return nil
		case attempt == 0 && redis.HasErrorPrefix(err, "NOSCRIPT"):
			// load below and retry
		case isScriptErr(err):
			return nil // the server answered; those cells get nothing this round
		default:
			return err
		}
		lctx, cancel := context.WithTimeout(ctx, l.opts.RedisTimeout)
		for _, s := range []*redis.Script{leaseScript, beatScript} {
			if lerr := s.Load(lctx, l.redis).Err(); lerr != nil {
				cancel()
				return lerr
			}
		}
		cancel()
	}
}

// isScriptErr reports a Redis error reply (the server answered), as opposed
// to a transport failure.
func isScriptErr(err error) bool {
	var re redis.Error
	return errors.As(err, &re)
}

// returnAll gives every current lease back (Close).
func (l *Limiter) returnAll(ctx context.Context, now time.Time) error {
	if !l.healthy.Load() {
		return nil
	}
	l.runMu.Lock()
	defer l.runMu.Unlock()
	n := now.UnixNano()
	ep := l.epoch.Load()
	var ops []syncOp
	l.syncBuf = l.tab.each(l.syncBuf, func(id *identity) {
		id.mu.Lock()
		if c := id.cl; c != nil && c.epoch == ep && !c.inflight && c.leased > 0 {
			ops = append(ops, syncOp{id: id, pol: id.pol, ret: c.leased, epoch: ep, now: n})
			c.leased = 0
		}
		id.mu.Unlock()
	})
	return l.exec(ctx, ops)
}

// clusterUsage reads the identity's cluster-wide credits, quotas and
// connections.
func (l *Limiter) clusterUsage(ctx context.Context, name string, p *policy, n int64) ([]int64, error) {
	ctx, cancel := context.WithTimeout(ctx, l.opts.RedisTimeout)
	defer cancel()
	keys := []string{l.key(name, "credits"), l.key(name, "quota"), l.key(name, "total"), l.key(name, "conns")}
	args := append([]any{us(n), p.credits, us(p.creditWindow)}, quotaArgs(&p.quotas, n)...)
	return peekScript.Run(ctx, l.redis, keys, args...).Int64Slice()
}
