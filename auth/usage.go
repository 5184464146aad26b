package auth

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// UsageOptions configure NewUsage.
type UsageOptions struct {
	// Store receives the batches. Required.
	Store Store
	// Interval between flushes. Defaults to 1 s; shorter values are raised
	// to 1 s so the store sees at most one write per second.
	Interval time.Duration
	// FlushTimeout bounds one flush, including the final one. Defaults to 5 s.
	FlushTimeout time.Duration
	// Logger receives flush failures. Defaults to a no-op logger.
	Logger *zerolog.Logger
	// Collect, when set, runs at the start of every flush with the flush's
	// time, on the flushing goroutine: the node folds its sessions'
	// delivery counters in (AddDelivered) and checks delivery quotas.
	// Defaults to nil (nothing to collect).
	Collect func(now time.Time)
	// Now is the clock of Run's flushes. Defaults to time.Now.
	Now func() time.Time
}

// UsageCounters are a key's metered usage over one UTC day or in total.
type UsageCounters struct {
	// MessagesDelivered counts the frames of subscribed channels written
	// to the key's connections (live, replayed and snapshot frames;
	// replies, notices and pings are not counted).
	MessagesDelivered int64 `json:"messages_delivered"`
	// BytesDelivered is their size as written to the socket: a
	// permessage-deflate connection counts the compressed frames.
	BytesDelivered int64 `json:"bytes_delivered"`
	// Credits counts the credits charged to the key's client frames.
	Credits int64 `json:"credits"`
}

// Add adds d to c.
func (c *UsageCounters) Add(d UsageCounters) {
	c.MessagesDelivered += d.MessagesDelivered
	c.BytesDelivered += d.BytesDelivered
	c.Credits += d.Credits
}

// UTCDay is the UTC day of t: days since 1970-01-01.
func UTCDay(t time.Time) int64 {
	s := t.Unix()
	d := s / 86400
	if s < 0 && s%86400 != 0 {
		d--
	}
	return d
}

// NextUTCMidnight is the first 00:00 UTC after t.
func NextUTCMidnight(t time.Time) time.Time {
	return time.Unix((UTCDay(t)+1)*86400, 0).UTC()
}

// Usage counts each key's client messages and last use in memory and
// flushes them to the Store in one batch per interval (Run). A failed
// flush keeps the counts for the next one.
type Usage struct {
	// Immutable after NewUsage
	opts UsageOptions
	log  zerolog.Logger

	// Guarded by mu (the map; the cells are atomic)
	mu    sync.RWMutex
	cells map[string]*usageCell
}

// usageCell is the pending usage of one key: about 80 bytes with its map
// entry.
type usageCell struct {
	count   atomic.Int64 // messages since the last flush
	last    atomic.Int64 // latest use, unix ns; 0 = none since the last flush
	credits atomic.Int64 // credits charged since the last flush
	msgs    atomic.Int64 // messages delivered since the last flush
	bytes   atomic.Int64 // bytes delivered since the last flush
}

// NewUsage returns a Usage writing to opts.Store.
func NewUsage(opts UsageOptions) *Usage {
	if opts.Interval < time.Second {
		opts.Interval = time.Second
	}
	if opts.FlushTimeout <= 0 {
		opts.FlushTimeout = 5 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := zerolog.Nop()
	if opts.Logger != nil {
		log = *opts.Logger
	}
	return &Usage{opts: opts, log: log, cells: make(map[string]*usageCell)}
}

// Add counts n messages of prefix at now; n == 0 records a use without a
// message (a connection). It never blocks on I/O and does not allocate once
// prefix has been seen; safe for concurrent use.
func (u *Usage) Add(prefix string, n int64, now time.Time) {
	u.AddCharged(prefix, n, 0, now)
}

// AddCharged is Add that also counts credits charged to the key's frames
// (UsageCounters.Credits): one map lookup and up to three atomic adds, no
// allocation once prefix has been seen.
func (u *Usage) AddCharged(prefix string, n, credits int64, now time.Time) {
	u.mu.RLock()
	c := u.cells[prefix]
	u.mu.RUnlock()
	if c == nil {
		c = u.cell(prefix)
	}
	if n != 0 {
		c.count.Add(n)
	}
	if credits != 0 {
		c.credits.Add(credits)
	}
	ns := now.UnixNano()
	for {
		old := c.last.Load()
		if old >= ns || c.last.CompareAndSwap(old, ns) {
			return
		}
	}
}

func (u *Usage) cell(prefix string) *usageCell {
	u.mu.Lock()
	defer u.mu.Unlock()
	c := u.cells[prefix]
	if c == nil {
		c = &usageCell{}
		// Clone: prefix is often a substring of the full key, which must
		// not stay reachable from this map.
		u.cells[strings.Clone(prefix)] = c
	}
	return c
}

// AddDelivered counts msgs messages of bytes bytes delivered to prefix's
// connections. The node calls it from Collect with the sessions' counters
// (not per frame); it does not allocate once prefix has been seen.
func (u *Usage) AddDelivered(prefix string, msgs, bytes int64) {
	if msgs == 0 && bytes == 0 {
		return
	}
	u.mu.RLock()
	c := u.cells[prefix]
	u.mu.RUnlock()
	if c == nil {
		c = u.cell(prefix)
	}
	c.msgs.Add(msgs)
	c.bytes.Add(bytes)
}

// PendingMetered returns the metered usage of prefix not yet flushed.
func (u *Usage) PendingMetered(prefix string) UsageCounters {
	u.mu.RLock()
	c := u.cells[prefix]
	u.mu.RUnlock()
	if c == nil {
		return UsageCounters{}
	}
	return UsageCounters{MessagesDelivered: c.msgs.Load(), BytesDelivered: c.bytes.Load(), Credits: c.credits.Load()}
}

// Pending returns the usage of prefix not yet flushed.
func (u *Usage) Pending(prefix string) (count int64, last time.Time) {
	u.mu.RLock()
	c := u.cells[prefix]
	u.mu.RUnlock()
	if c == nil {
		return 0, time.Time{}
	}
	if ns := c.last.Load(); ns != 0 {
		last = time.Unix(0, ns).UTC()
	}
	return c.count.Load(), last
}

// Flush is FlushAt(ctx, time.Now()).
func (u *Usage) Flush(ctx context.Context) error { return u.FlushAt(ctx, time.Now()) }

// FlushAt runs Collect, then writes the pending usage to the store in one
// batch; the metered counters count toward the UTC day of now (so up to one
// interval of usage before 00:00 UTC counts on the next day). On failure
// the counts are put back and the error returned.
func (u *Usage) FlushAt(ctx context.Context, now time.Time) error {
	if u.opts.Collect != nil {
		u.opts.Collect(now)
	}
	day := UTCDay(now)
	batch := make(map[string]UsageDelta)
	u.mu.RLock()
	for p, c := range u.cells {
		n := c.count.Swap(0)
		ns := c.last.Swap(0)
		m := UsageCounters{MessagesDelivered: c.msgs.Swap(0), BytesDelivered: c.bytes.Swap(0), Credits: c.credits.Swap(0)}
		if n == 0 && ns == 0 && m == (UsageCounters{}) {
			continue
		}
		d := UsageDelta{Count: n, Metered: m, Day: day}
		if ns != 0 {
			d.LastUsed = time.Unix(0, ns).UTC()
		}
		batch[p] = d
	}
	u.mu.RUnlock()
	if len(batch) == 0 {
		return nil
	}
	if err := u.opts.Store.AddUsage(ctx, batch); err != nil {
		for p, d := range batch {
			u.restore(p, d)
		}
		return err
	}
	return nil
}

func (u *Usage) restore(prefix string, d UsageDelta) {
	c := u.cell(prefix)
	c.msgs.Add(d.Metered.MessagesDelivered)
	c.bytes.Add(d.Metered.BytesDelivered)
	c.credits.Add(d.Metered.Credits)
	if d.LastUsed.IsZero() {
		c.count.Add(d.Count)
		return
	}
	u.Add(prefix, d.Count, d.LastUsed)
}

// Run flushes every Interval until ctx is done, then flushes once more
// (bounded by FlushTimeout) and returns.
func (u *Usage) Run(ctx context.Context) {
	t := time.NewTicker(u.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), u.opts.FlushTimeout)
			defer cancel()
			if err := u.FlushAt(fctx, u.opts.Now()); err != nil {
				u.log.Error().Err(err).Msg("auth: final usage flush failed")
			}
			return
		case <-t.C:
			fctx, cancel := context.WithTimeout(ctx, u.opts.FlushTimeout)
			if err := u.FlushAt(fctx, u.opts.Now()); err != nil {
				u.log.Warn().Err(err).Msg("auth: usage flush failed; will retry")
			}
			cancel()
		}
	}
}
