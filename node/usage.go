package node

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"floodgate/auth"
	"floodgate/broker"
	"floodgate/fanout"
	"floodgate/internal/proto"
	"floodgate/keyapi"
	"floodgate/limiter"

	"github.com/rs/zerolog"
)

// liveUsage implements keyapi.LiveUsage: a key's live credit budget, quotas
// and connections from the limiter, for the status endpoint and the
// operator API.
type liveUsage struct {
	// Immutable after New.
	limiter *limiter.Limiter
}

// KeyUsage implements keyapi.LiveUsage.
func (u *liveUsage) KeyUsage(rec *auth.Record, now time.Time) (keyapi.KeyUsage, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req := limiter.Request{Identity: limiter.KeyIdentity(rec.Prefix), Tier: limiter.TierKey, Limits: rec.Limits, Quotas: rec.Quotas}
	lu := u.limiter.Usage(ctx, req, now)
	out := keyapi.KeyUsage{
		Credits:     keyapi.BudgetUsage{Limit: lu.Limit, Remaining: max(lu.Remaining, 0), ResetAt: lu.ResetAt},
		Connections: int(lu.Connections),
	}
	quotaReport(&out, lu.Quotas)
	return out, true
}

// quotaReport adds the limiter's quota use to out as quotas.<window>
// (limit, used, reset_at; total has no reset_at). A quota of another
// kind (another window name) is one more AddQuota.
func quotaReport(out *keyapi.KeyUsage, qs []limiter.QuotaUsage) {
	for _, q := range qs {
		out.AddQuota(q.Window.String(), q.Limit, q.Used, q.ResetAt)
	}
}

// meter folds the broker's per-session delivery counts into the keys'
// usage (auth.Usage) when the usage flusher runs, and enforces
// quotas.delivered_daily: it is the Usage's Collect, called once per flush
// (every second) with the flush's time. The per-frame cost stays in the
// broker's writer (two atomic adds per written batch); nothing here runs
// per message.
//
// A key with a delivered_daily quota and live sessions on this node has a
// keyQuota. At each collect its day's count is the store's (the cluster's
// sum, as of the other nodes' last flush: one store read per such key per
// second) plus this node's unflushed count; once it reaches the quota the
// key's public-source subscriptions end with SUBSCRIPTION_ENDED reason
// QUOTA_EXCEEDED and new public subscribes are refused until 00:00 UTC. So
// a key overshoots its quota by at most about one second of its deliveries
// (two, in cluster mode, for another node's share).
type meter struct {
	// Immutable after New (broker is read through a func: it is built
	// after the usage).
	usage   *auth.Usage
	store   auth.Store
	broker  func() *broker.Server
	timeout time.Duration // bound of one quota read
	log     zerolog.Logger

	// mu serialises collects (Run's flush and a test's flush) and guards
	// quotas.
	mu     sync.Mutex
	quotas map[string]*keyQuota // by key prefix: keys with a quota and live sessions here
}

// keyQuota is the delivered_daily state of one key on this node.
type keyQuota struct {
	// Guarded by meter.mu.
	limit int64 // messages per UTC day; 0: none (kept while sessions hold it)
	refs  int   // live sessions holding it
	// until is the unix ns the key's public deliveries are refused until
	// (the next 00:00 UTC); 0 while the quota is not used up. Read by the
	// budgets at subscribe, written by collect.
	until atomic.Int64
}

// PublicRefused is the broker.PublicGate of the key's budgets: refused
// until the next 00:00 UTC once the quota is used up. Nil-safe; no I/O.
func (q *keyQuota) PublicRefused(now time.Time) (time.Duration, bool) {
	if q == nil {
		return 0, false
	}
	u := q.until.Load()
	if u == 0 || now.UnixNano() >= u {
		return 0, false
	}
	return time.Duration(u - now.UnixNano()), true
}

func newMeter(usage *auth.Usage, store auth.Store, log zerolog.Logger) *meter {
	return &meter{usage: usage, store: store, timeout: 2 * time.Second, log: log, quotas: make(map[string]*keyQuota),
		broker: func() *broker.Server { return nil }}
}

// admitted registers a key session with its delivered_daily quota (0:
// none) and returns the state its budget checks at subscribe, nil when the
// key has no quota.
func (m *meter) admitted(prefix string, limit int64) *keyQuota {
	if prefix == "" || limit <= 0 {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	q := m.quotas[prefix]
	if q == nil {
		q = &keyQuota{}
		m.quotas[prefix] = q
	}
	q.limit = limit
	q.refs++
	return q
}

// released drops a session's hold of q.
func (m *meter) released(prefix string, q *keyQuota) {
	if q == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if q.refs--; q.refs <= 0 && m.quotas[prefix] == q {
		delete(m.quotas, prefix)
	}
}

// setLimit applies a changed delivered_daily quota (operator PATCH) to a
// key with a keyQuota here. A key that had none and gets one takes it at
// its sessions' next connect.
func (m *meter) setLimit(prefix string, limit int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if q := m.quotas[prefix]; q != nil {
		q.limit = limit
		if limit <= 0 {
			q.until.Store(0)
		}
	}
}

// collect implements auth.UsageOptions.Collect.
func (m *meter) collect(now time.Time) {
	srv := m.broker()
	if srv == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	srv.TakeDelivered(func(prefix string, d broker.Delivered) {
		m.usage.AddDelivered(prefix, d.Msgs, d.Bytes)
	})
	// One deadline for all the checks, so a hung store delays a flush by
	// m.timeout at most, whatever the number of quota keys; the keys not
	// checked are checked at the next flush.
	ctx, cancel := context.WithTimeout(context.Background(), m.timeout)
	defer cancel()
	for prefix, q := range m.quotas {
		if err := m.checkLocked(ctx, srv, prefix, q, now); err != nil {
			m.log.Warn().Err(err).Str("prefix", prefix).Msg("delivered_daily: usage read failed; the quotas are checked again at the next flush")
			return
		}
	}
}

// checkLocked compares the key's delivered messages of the UTC day of now
// with its quota; mu held. It returns the store's error.
func (m *meter) checkLocked(ctx context.Context, srv *broker.Server, prefix string, q *keyQuota, now time.Time) error {
	if q.limit <= 0 {
		return nil
	}
	rec, err := m.store.Get(ctx, prefix)
	if errors.Is(err, auth.ErrNotFound) {
		return nil // deleted: the key recheck closes its sessions
	}
	if err != nil {
		return err
	}
	used := rec.Today(now).MessagesDelivered + m.usage.PendingMetered(prefix).MessagesDelivered
	if used < q.limit {
		q.until.Store(0) // a new day, or a raised quota: refilled
		return nil
	}
	if q.until.Load() > now.UnixNano() {
		return nil // already ended
	}
	q.until.Store(auth.NextUTCMidnight(now).UnixNano())
	srv.EndSubscriptions(prefix, isPublic, proto.QuotaExceeded)
	return nil
}

// isPublic reports whether ch is a public source's channel (not a private
// account source; the same split as the key's scopes): the channels
// delivered_daily ends.
func isPublic(ch *fanout.Channel) bool { return !ch.Source.Private }
