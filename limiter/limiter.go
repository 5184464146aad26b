package limiter

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/bits"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"floodgate/internal/proto"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
)

// Options configures a Limiter. The zero value is a local-only limiter with
// the defaults of docs/configuration.md "Limits".
type Options struct {
	// Config holds tiers, costs and policies. Defaults to DefaultConfig().
	Config *Config
	// Redis enables cluster mode. Defaults to nil: local budgets only.
	Redis redis.UniversalClient
	// KeyPrefix prefixes every Redis key. It must not contain braces: the
	// keys of an identity share the hash tag {identity}, so that each Lua
	// script touches one slot of a Redis Cluster, and a tag in the prefix
	// would put every identity in one slot. Defaults to "floodgate:lim:".
	KeyPrefix string
	// NodeID names this node in the cluster connection counts. Defaults to a
	// random 16-hex-digit id.
	NodeID string
	// ExpectedNodes is the number of nodes sharing the budgets. When Redis
	// is unreachable each node enforces 1/ExpectedNodes of every identity
	// budget (credits, connections, connect rate, quotas). Defaults to 1.
	ExpectedNodes int
	// SyncInterval is the period of the background lease refill (it also
	// runs at once when a lease runs low). Defaults to 50 ms.
	SyncInterval time.Duration
	// RedisTimeout bounds every Redis exchange (admission and sync; the
	// client must honour context deadlines, go-redis's
	// ContextTimeoutEnabled). Defaults to 250 ms.
	RedisTimeout time.Duration
	// IdleReturn returns an unused lease to Redis after this long without a
	// frame. Defaults to 1 s.
	IdleReturn time.Duration
	// Heartbeat is how often a node rewrites its connection counts in Redis;
	// counts of a node silent for 3 heartbeats are ignored. Defaults to 5 s.
	Heartbeat time.Duration
	// ProbeInterval is how often Run retries Redis while it is down.
	// Defaults to 1 s.
	ProbeInterval time.Duration
	// SweepInterval is how often Run evicts idle identities. Defaults to 30 s.
	SweepInterval time.Duration
	// Shards is the number of table shards, rounded up to a power of two.
	// Defaults to 64.
	Shards int
	// Logger receives the Redis outage and recovery lines (each once).
	// Defaults to no logging.
	Logger zerolog.Logger
	// Registerer, when set, receives the limiter's metrics. Defaults to nil.
	Registerer prometheus.Registerer
	// Clock is the time source of Run. Defaults to time.Now.
	Clock func() time.Time
}

// Request describes a connection asking to be admitted.
type Request struct {
	// Identity is KeyIdentity(prefix) or AddrIdentity(addr).
	Identity string
	// IP is the client address (ClientIP); checked against the failed-key
	// block. The zero Addr skips that check.
	IP netip.Addr
	// Tier is the identity's tier.
	Tier TierKind
	// Limits and Quotas are the key's overrides and quotas (zero: none).
	Limits Limits
	Quotas Quotas
}

// Limiter enforces the budgets of docs/configuration.md "Limits". All methods are safe for
// concurrent use.
type Limiter struct {
	// Immutable after New
	set     atomic.Pointer[settings] // config and tier policies; Reload swaps it
	opts    Options
	share   float64
	tab     *table
	metrics *metrics
	redis   redis.UniversalClient
	log     zerolog.Logger
	wakeCh  chan struct{}
	done    chan struct{}
	runMu   sync.Mutex // serialises Run, Sync and Close
	closeMu sync.Once
	syncBuf []*identity // owned by sync (under runMu)
	syncOps []syncOp    // owned by sync (under runMu)

	// Atomic
	healthy atomic.Bool   // cluster mode and Redis reachable
	epoch   atomic.Uint64 // increments when Redis comes back; older leases are stale
	downErr atomic.Pointer[error]

	// Owned by sync (under runMu)
	lastProbe int64
}

// New builds a Limiter. It returns an error wrapping ErrInvalidConfig when
// the config does not validate. Call Run to start the background work
// (lease refill, eviction) and Close to stop it.
func New(opts Options) (*Limiter, error) {
	cfg := DefaultConfig()
	if opts.Config != nil {
		cfg = *opts.Config
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Violations.Cooldowns = append([]time.Duration(nil), cfg.Violations.Cooldowns...)
	if opts.KeyPrefix == "" {
		opts.KeyPrefix = "floodgate:lim:"
	}
	if strings.ContainsAny(opts.KeyPrefix, "{}") {
		return nil, fmt.Errorf("limiter: KeyPrefix %q must not contain { or }: the identity is the hash tag", opts.KeyPrefix)
	}
	if opts.NodeID == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		opts.NodeID = hex.EncodeToString(b[:])
	}
	if opts.ExpectedNodes <= 0 {
		opts.ExpectedNodes = 1
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&opts.SyncInterval, 50*time.Millisecond)
	def(&opts.RedisTimeout, 250*time.Millisecond)
	def(&opts.IdleReturn, time.Second)
	def(&opts.Heartbeat, 5*time.Second)
	def(&opts.ProbeInterval, time.Second)
	def(&opts.SweepInterval, 30*time.Second)
	if opts.Shards <= 0 {
		opts.Shards = 64
	}
	opts.Shards = 1 << bits.Len(uint(opts.Shards-1))
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	l := &Limiter{
		opts: opts, share: 1, tab: newTable(opts.Shards),
		redis: opts.Redis, log: opts.Logger,
		wakeCh: make(chan struct{}, 1), done: make(chan struct{}),
	}
	if l.redis != nil {
		l.share = 1 / float64(opts.ExpectedNodes)
		l.healthy.Store(true)
		l.epoch.Store(1)
	}
	l.set.Store(l.newSettings(cfg))
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	l.metrics = m
	return l, nil
}

// settings is the reloadable part of the limiter: the config and the tier
// default policies built from it. Immutable; Reload replaces it whole.
type settings struct {
	cfg    Config
	tiers  [2]*policy // whole budgets of the tier defaults
	shares [2]*policy // fallback shares of the tier defaults
}

func (l *Limiter) newSettings(cfg Config) *settings {
	cfg.Violations.Cooldowns = append([]time.Duration(nil), cfg.Violations.Cooldowns...)
	cfg.Costs = cfg.Costs.clone()
	set := &settings{cfg: cfg}
	for k, t := range []Tier{cfg.Tiers.Anonymous, cfg.Tiers.Key} {
		set.tiers[k] = makePolicy(TierKind(k), t, Limits{}, Quotas{}, 1)
		set.shares[k] = set.tiers[k]
		if l.share < 1 {
			set.shares[k] = makePolicy(TierKind(k), t, Limits{}, Quotas{}, l.share)
		}
	}
	return set
}

// Reload replaces the tiers, costs and every other number of the config at
// now, without dropping connections: each identity keeps what it has spent
// (converted to the new rates, as SetOverrides does) and its per-key
// overrides. The refusal history of connections opened before keeps its
// old length. An invalid config changes nothing and is returned.
func (l *Limiter) Reload(cfg Config, now time.Time) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	l.set.Store(l.newSettings(cfg))
	ns := now.UnixNano()
	l.tab.each(nil, func(id *identity) {
		if id.api {
			return // priced per call from the config
		}
		id.mu.Lock()
		pol, local := l.policiesFor(id.pol.tier, id.pol.limits, id.pol.quotas)
		id.setPolicyLocked(pol, local, ns)
		id.mu.Unlock()
	})
	return nil
}

// Config returns the configuration in force (a copy).
func (l *Limiter) Config() Config {
	c := l.set.Load().cfg
	c.Violations.Cooldowns = append([]time.Duration(nil), c.Violations.Cooldowns...)
	c.Costs = c.Costs.clone()
	return c
}

// Costs returns the credits per client method. Its per-source maps are
// the limiter's own: read them, do not change them.
func (l *Limiter) Costs() Costs { return l.set.Load().cfg.Costs }

// Tier returns the tier numbers of kind.
func (l *Limiter) Tier(kind TierKind) Tier {
	if kind == TierKey {
		return l.set.Load().cfg.Tiers.Key
	}
	return l.set.Load().cfg.Tiers.Anonymous
}

func (l *Limiter) tierOf(kind TierKind) Tier { return l.Tier(kind) }

// policiesFor returns the whole and the local policy of a request.
func (l *Limiter) policiesFor(kind TierKind, lim Limits, q Quotas) (*policy, *policy) {
	if kind > TierKey {
		kind = TierKey
	}
	q = q.credit()
	if lim == (Limits{}) && q == (Quotas{}) {
		set := l.set.Load()
		return set.tiers[kind], set.shares[kind]
	}
	p := makePolicy(kind, l.tierOf(kind), lim, q, 1)
	if l.share >= 1 {
		return p, p
	}
	return p, makePolicy(kind, l.tierOf(kind), lim, q, l.share)
}

func (l *Limiter) newIdentity(name string) *identity {
	set := l.set.Load()
	id := &identity{name: name, pol: set.tiers[TierAnonymous], local: set.shares[TierAnonymous]}
	if l.redis != nil {
		id.cl = &clusterCell{}
	}
	return id
}

// setPolicyLocked switches the identity to new policies at now, keeping the
// credits already used (the debt is converted to the new rate).
func (id *identity) setPolicyLocked(pol, local *policy, now int64) {
	old := id.local
	if old == local && id.pol == pol {
		return
	}
	id.tat = old.creditG.rescale(id.tat, now, local.creditG)
	id.connectTat = old.connectG.rescale(id.connectTat, now, local.connectG)
	if c := id.cl; c != nil && id.pol.credits != pol.credits && c.leased > 0 {
		// A lease was priced at the old rate; returning it at the new one
		// would hand back more (or fewer) credits than were taken. Forfeit
		// it: at most one lease is under-admitted, never over. The Redis
		// cell keeps the fraction of the window spent.
		c.leased, c.lastGrant = 0, 0
	}
	id.pol, id.local = pol, local
	if pol.hasQuotas && id.quota == nil {
		id.quota = &quotaState{}
	}
}

func (id *identity) applyLocked(l *Limiter, kind TierKind, lim Limits, q Quotas, now int64) {
	p := id.pol
	q = q.credit()
	if p.tier == kind && p.limits == lim && p.quotas == q {
		return
	}
	pol, local := l.policiesFor(kind, lim, q)
	id.setPolicyLocked(pol, local, now)
}

// KeyIdentity is the identity of an API key: "key:<prefix>".
func KeyIdentity(prefix string) string { return "key:" + prefix }

// AddrIdentity is the identity of an anonymous client address: "ip:<addr>"
// for IPv4, "ip:<addr>/64" (the /64 network) for IPv6.
func AddrIdentity(a netip.Addr) string {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return "ip:" + p.String()
	}
	return "ip:" + a.String()
}

// Admit decides whether a connection of req may open at now, checking in
// order: failed-key IP block (403 IP_BLOCKED), violation cooldown (429
// RATE_LIMITED), connect rate (429 CONNECT_RATE), concurrent connections
// (429 TOO_MANY_CONNECTIONS), key quotas (401 QUOTA_EXCEEDED). A refusal is a
// *proto.Refusal. On success the Conn must be released with Release when the
// connection ends. In cluster mode Admit makes one Redis round trip (bounded
// by RedisTimeout; on failure it falls back to local budgets at once).
func (l *Limiter) Admit(ctx context.Context, req Request, now time.Time) (*Conn, error) {
	if req.Identity == "" {
		return nil, ErrInvalidRequest
	}
	n := now.UnixNano()
	if err := l.CheckIP(req.IP, now); err != nil {
		l.metrics.admitRefused(err)
		return nil, err
	}
	id := l.tab.acquire(req.Identity, l.newIdentity)
	defer id.unpin()
	id.mu.Lock()
	id.applyLocked(l, req.Tier, req.Limits, req.Quotas, n)
	if id.cooldownUntil > n {
		err := l.cooldownRefusal(id, n)
		id.mu.Unlock()
		l.metrics.admitRefused(err)
		return nil, err
	}
	var err error
	if id.cl != nil && l.healthy.Load() {
		pol := id.pol
		want := min(pol.connQ, pol.credits)
		id.mu.Unlock()
		res, rerr := l.redisAdmit(ctx, id.name, pol, want, n)
		if rerr != nil && ctx.Err() != nil {
			return nil, ctx.Err() // the client went away; Redis is not to blame
		}
		id.mu.Lock()
		if rerr == nil {
			err = l.applyAdmitLocked(id, res, n)
		} else {
			l.setDown(rerr)
			err = l.admitLocalLocked(id, n)
		}
	} else {
		err = l.admitLocalLocked(id, n)
	}
	id.mu.Unlock()
	if err != nil {
		l.metrics.admitRefused(err)
		return nil, err
	}
	c := &Conn{l: l, id: id, refusals: timeRing{t: make([]int64, l.set.Load().cfg.Violations.MaxRefusals+1)}}
	return c, nil
}

func (l *Limiter) admitLocalLocked(id *identity, n int64) error {
	p := id.local
	nt, ok, wait := p.connectG.take(id.connectTat, n, 1)
	if !ok {
		return l.connectRateRefusal(id, p.connects, p.connectWin, wait, n)
	}
	id.connectTat = nt
	if id.conns >= p.maxConns {
		return l.connsRefusal(id, p.maxConns, n)
	}
	if p.hasQuotas {
		if w := id.quota.check(&p.quotas, n, 1); w != QuotaNone {
			return newQuotaRefusal(w, p.quotas.limit(w), id.quota.used(w, p.quotas.Calendar, n), time.Duration(id.quota.retry(&p.quotas, w, n, 1)))
		}
	}
	id.conns++
	return nil
}

func (l *Limiter) creditHeaders(id *identity, n int64) (string, string) {
	r, q, t := id.rlLocked(l, n)
	return proto.PolicyHeader("credits", q, time.Duration(id.local.creditWindow)), proto.RateLimitHeader("credits", r, t)
}

// cooldownRefusal is the 429 of an identity cooling down; its RateLimit
// fields name the cooldown policy with the length of the current cooldown.
// The identity's mutex is held.
func (l *Limiter) cooldownRefusal(id *identity, n int64) *proto.Refusal {
	v := &l.set.Load().cfg.Violations
	length := v.Cooldowns[min(max(int(id.offences), 1), len(v.Cooldowns))-1]
	wait := time.Duration(id.cooldownUntil - n)
	return withHeaders(refusal(ErrCooldown, http.StatusTooManyRequests, proto.RateLimited, "Rate limit exceeded: cooldown", wait),
		proto.PolicyHeader("cooldown", 0, length), proto.RateLimitHeader("cooldown", 0, wait))
}

func (l *Limiter) connectRateRefusal(id *identity, q, w, wait, n int64) *proto.Refusal {
	cp, cr := l.creditHeaders(id, n)
	return withHeaders(refusal(ErrConnectRate, http.StatusTooManyRequests, proto.ConnectRate, "Too many new connections", time.Duration(wait)),
		proto.PolicyHeader("connects", q, time.Duration(w))+", "+cp, proto.RateLimitHeader("connects", 0, time.Duration(wait))+", "+cr)
}

func (l *Limiter) connsRefusal(id *identity, max, n int64) *proto.Refusal {
	cp, cr := l.creditHeaders(id, n)
	wait := l.set.Load().cfg.ConnectionsRetryAfter
	return withHeaders(refusal(ErrTooManyConnections, http.StatusTooManyRequests, proto.TooManyConnections, "Too many connections", wait),
		proto.PolicyHeader("connections", max, 0)+", "+cp, proto.RateLimitHeader("connections", 0, wait)+", "+cr)
}

// CheckIP returns a *proto.Refusal (403 IP_BLOCKED) while addr is blocked for
// failed key attempts; call it before resolving a key. The zero Addr is never
// blocked.
func (l *Limiter) CheckIP(addr netip.Addr, now time.Time) error {
	if !addr.IsValid() {
		return nil
	}
	id := l.tab.acquire(AddrIdentity(addr), nil)
	if id == nil {
		return nil
	}
	defer id.unpin()
	n := now.UnixNano()
	id.mu.Lock()
	defer id.mu.Unlock()
	if f := id.failed; f != nil && f.blockedUntil > n {
		return newIPBlocked(&l.set.Load().cfg.FailedKeys, time.Duration(f.blockedUntil-n))
	}
	return nil
}

// FailedKey records a failed key attempt (unknown, malformed or revoked key)
// from addr at now. The attempt that makes more than FailedKeys.MaxAttempts
// within FailedKeys.Window blocks addr (its /64 for IPv6) for
// FailedKeys.Block; FailedKey then, and while the block lasts, returns the
// 403 *proto.Refusal to send instead of 401.
func (l *Limiter) FailedKey(addr netip.Addr, now time.Time) error {
	if !addr.IsValid() {
		return nil
	}
	fk := &l.set.Load().cfg.FailedKeys
	n := now.UnixNano()
	id := l.tab.acquire(AddrIdentity(addr), l.newIdentity)
	defer id.unpin()
	id.mu.Lock()
	defer id.mu.Unlock()
	f := id.failed
	if f == nil {
		f = &failedKeys{ring: timeRing{t: make([]int64, fk.MaxAttempts+1)}, window: int64(fk.Window)}
		id.failed = f
	}
	if f.blockedUntil > n {
		return newIPBlocked(fk, time.Duration(f.blockedUntil-n))
	}
	f.last = n
	if f.ring.add(n, int64(fk.Window)) {
		f.ring.reset()
		f.blockedUntil = n + int64(fk.Block)
		l.metrics.ipBlocks.Inc()
		return newIPBlocked(fk, fk.Block)
	}
	return nil
}

// SetOverrides changes the limits and quotas of key prefix on this node's
// live connections at now (operator PATCH). A key without live state here
// is not stored: its next Admit carries the new values.
func (l *Limiter) SetOverrides(prefix string, lim Limits, q Quotas, now time.Time) {
	id := l.tab.acquire(KeyIdentity(prefix), nil)
	if id == nil {
		return
	}
	defer id.unpin()
	id.mu.Lock()
	id.applyLocked(l, TierKey, lim, q, now.UnixNano())
	id.mu.Unlock()
}

// Sweep evicts identities whose state is back to idle (full budgets, no
// connection, no cooldown, block or quota usage) and returns how many remain.
// Run calls it every SweepInterval.
func (l *Limiter) Sweep(now time.Time) int {
	return l.tab.sweep(now.UnixNano(), int64(l.set.Load().cfg.Violations.ForgetAfter))
}

// Identities is the number of identities held in memory.
func (l *Limiter) Identities() int { return l.tab.len() }

// Health is nil in local mode and while Redis answers; during an outage it
// returns an error wrapping ErrClusterDegraded with the cause, for /readyz.
func (l *Limiter) Health() error {
	if l.redis == nil || l.healthy.Load() {
		return nil
	}
	cause := "unknown"
	if e := l.downErr.Load(); e != nil {
		cause = (*e).Error()
	}
	return fmt.Errorf("%w: redis unreachable (%s); enforcing local share 1/%d", ErrClusterDegraded, cause, l.opts.ExpectedNodes)
}

// Run does the background work until ctx is done or Close is called: lease
// refill and return, connection-count heartbeats and Redis probing (cluster
// mode, every SyncInterval and when a lease runs low), and eviction (every
// SweepInterval). It returns nil after Close, else ctx.Err().
func (l *Limiter) Run(ctx context.Context) error {
	sync := time.NewTicker(l.opts.SyncInterval)
	defer sync.Stop()
	sweep := time.NewTicker(l.opts.SweepInterval)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-l.done:
			return nil
		case <-sweep.C:
			l.Sweep(l.opts.Clock())
			continue
		case <-sync.C:
		case <-l.wakeCh:
		}
		if l.redis != nil {
			_ = l.Sync(ctx, l.opts.Clock())
		}
	}
}

// Close stops Run and, in cluster mode, returns unused leases to Redis
// (bounded by RedisTimeout). The Limiter must not be used afterwards.
func (l *Limiter) Close() error {
	l.closeMu.Do(func() { close(l.done) })
	if l.redis == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.opts.RedisTimeout)
	defer cancel()
	return l.returnAll(ctx, l.opts.Clock())
}

func (l *Limiter) wake() {
	select {
	case l.wakeCh <- struct{}{}:
	default:
	}
}
