package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"floodgate/auth"
	"floodgate/console"
	"floodgate/limiter"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// This file is the node's view of its dependencies: a background check of
// the key store (Redis or bbolt) every healthInterval, what /readyz
// reports (readiness), the NATS liveness metrics, and the store guard that
// keeps a hung Redis off the upgrade path.
//
// Every check is bounded and none runs in a request: /readyz reads what
// the last check found (at most healthInterval old) and the NATS and
// limiter states, which are in memory.

// healthInterval is the period of the dependency check.
const healthInterval = 500 * time.Millisecond

// Readiness reasons: /readyz names each failing dependency with one of
// these words, plus a detail (the raw error) for operators.
const (
	ReasonDraining = "draining" // the node is shutting down
	ReasonNATS     = "nats"     // the NATS connection is down (or was found stale)
	ReasonRedis    = "redis"    // Redis does not answer
	ReasonStore    = "store"    // the bbolt key store is not usable
	ReasonLimiter  = "limiter"  // cluster budgets degraded to local shares
	ReasonHistory  = "history"  // the history stream cannot be reached
)

// NotReady is one reason /readyz answers 503.
type NotReady struct {
	Reason string // one of the Reason constants
	Detail string // the error behind it; shown to operators only
}

// healthOf is the console's view of the readiness reasons at now.
func healthOf(nr []NotReady, now time.Time) console.Health {
	h := console.Health{Status: "ready", Reasons: []string{}, Details: map[string]string{}, CheckedAt: now.UTC()}
	for _, x := range nr {
		h.Status = "not ready"
		h.Reasons = append(h.Reasons, x.Reason)
		if x.Detail != "" {
			h.Details[x.Reason] = x.Detail
		}
	}
	return h
}

// errNotChecked is the store state before the first check.
var errNotChecked = errors.New("not checked yet")

// health checks the node's dependencies in the background and answers
// /readyz from what it found. New allocates it first (the NATS hooks point
// at it) and calls init once the parts exist.
type health struct {
	// Set by init in New, before anything runs; immutable afterwards.
	store   auth.Store            // the key store (for bbolt: Ping)
	rdb     redis.UniversalClient // nil with bbolt
	nc      *nats.Conn            // nil in sidecar mode without NATS
	limiter *limiter.Limiter
	guard   *storeGuard
	timeout time.Duration // bound of one check
	started time.Time

	// Atomic.
	storeErr  atomic.Pointer[error] // nil: the last check passed
	lastMsgAt atomic.Int64          // Unix ns of the last NATS message seen (0: none yet)
	inMsgs    atomic.Uint64         // NATS messages received at the last check
	natsLost  atomic.Bool           // the NATS connection dropped or came back since the last eventsMissed
}

// init wires the parts in and registers the NATS liveness metric.
func (h *health) init(store auth.Store, rdb redis.UniversalClient, nc *nats.Conn, lim *limiter.Limiter, timeout time.Duration, reg prometheus.Registerer) {
	h.store, h.rdb, h.nc, h.limiter, h.timeout, h.started = store, rdb, nc, lim, timeout, time.Now()
	h.guard = &storeGuard{Store: store, onTrip: func(error) {}}
	if rdb != nil {
		h.guard.onTrip = lim.RedisDown
	}
	h.storeErr.Store(&errNotChecked)
	if nc != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "floodgate", Name: "nats_last_message_age_seconds",
			Help: "Seconds since this node last received a message from NATS (since start when none yet); checked every 0.5 s.",
		}, func() float64 {
			at := h.lastMsgAt.Load()
			if at == 0 {
				return time.Since(h.started).Seconds()
			}
			return time.Since(time.Unix(0, at)).Seconds()
		}))
	}
}

// run checks every healthInterval until ctx ends; the first check runs
// before run is called (check), so /readyz is right from the start.
func (h *health) run(ctx context.Context) {
	t := time.NewTicker(healthInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			h.check(ctx, now)
		}
	}
}

// check pings the key store (every master of a Redis Cluster) within
// timeout and notes the NATS traffic. A failed Redis check closes the store
// guard and puts the limiter on local budgets at once; a passing one opens
// the guard again (the limiter resumes cluster budgets on its own probe).
func (h *health) check(ctx context.Context, now time.Time) {
	if h.nc != nil {
		if in := h.nc.Stats().InMsgs; in != h.inMsgs.Load() {
			h.inMsgs.Store(in)
			h.lastMsgAt.Store(now.UnixNano())
		}
	}
	cctx, cancel := context.WithTimeout(ctx, h.timeout)
	var err error
	if h.rdb != nil {
		err = pingRedis(cctx, h.rdb)
	} else {
		err = h.store.Ping(cctx)
	}
	cancel()
	if ctx.Err() != nil {
		return // shutting down: not a verdict on the store
	}
	if err != nil {
		h.storeErr.Store(&err)
		h.guard.close(err)
		h.guard.onTrip(err)
		return
	}
	h.storeErr.Store(nil)
	h.guard.open()
}

// natsChanged is the NATS disconnect and reconnect hook.
func (h *health) natsChanged() { h.natsLost.Store(true) }

// eventsMissed reports whether this node may have missed control events
// since the last call: NATS is not connected now, or it was disconnected
// or reconnected in between (events of the gap are gone for good).
func (h *health) eventsMissed() bool {
	lost := h.natsLost.Swap(false)
	return lost || (h.nc != nil && !h.nc.IsConnected())
}

// readiness lists why the node is not ready (empty: ready). It does no
// I/O: it reads what the background checks found.
func (n *Node) readiness() []NotReady {
	var out []NotReady
	if n.broker != nil && n.broker.Draining() {
		out = append(out, NotReady{ReasonDraining, ""})
	}
	if n.nc != nil && !n.nc.IsConnected() {
		out = append(out, NotReady{ReasonNATS, strings.ToLower(n.nc.Status().String())})
	}
	if p := n.health.storeErr.Load(); p != nil {
		reason := ReasonStore
		if n.rdb != nil {
			reason = ReasonRedis
		}
		out = append(out, NotReady{reason, (*p).Error()})
	}
	if err := n.limiter.Health(); err != nil {
		out = append(out, NotReady{ReasonLimiter, err.Error()})
	}
	if n.history != nil {
		if err := n.history.Err(); err != nil {
			out = append(out, NotReady{ReasonHistory, err.Error()})
		}
	}
	return out
}

// errStoreDown is what the guarded store answers while the key store is
// known to be down.
var errStoreDown = errors.New("key store unreachable")

// storeGuard is the key store as the upgrade path and the key rechecks see
// it: while the last check (or the last lookup) failed, Get fails at once
// instead of waiting for a hung Redis, so an uncached key is refused 503
// at once and a cached one is admitted on its cached record (the keyring
// keeps a record it cannot reload). Every other method passes through.
type storeGuard struct {
	auth.Store
	// Immutable after newHealth.
	onTrip func(error) // a lookup or check failed: the limiter follows (Redis)

	// Atomic.
	down atomic.Pointer[error] // nil: open
}

// Get implements auth.Store.
func (g *storeGuard) Get(ctx context.Context, prefix string) (auth.Record, error) {
	if p := g.down.Load(); p != nil {
		return auth.Record{}, fmt.Errorf("%w: %w", errStoreDown, *p)
	}
	rec, err := g.Store.Get(ctx, prefix)
	var reply redis.Error // the server answered: not an outage
	if err != nil && !errors.Is(err, auth.ErrNotFound) && !errors.As(err, &reply) {
		// Timed out or no connection: Redis is slow, hung or gone. Fail
		// the next lookups fast; the next check decides when to reopen.
		g.close(err)
		g.onTrip(err)
	}
	return rec, err
}

func (g *storeGuard) close(err error) { g.down.Store(&err) }
func (g *storeGuard) open()           { g.down.Store(nil) }
