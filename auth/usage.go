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
	count atomic.Int64 // messages since the last flush
	last  atomic.Int64 // latest use, unix ns; 0 = none since the last flush
}

// NewUsage returns a Usage writing to opts.Store.
func NewUsage(opts UsageOptions) *Usage {
	if opts.Interval < time.Second {
		opts.Interval = time.Second
	}
	if opts.FlushTimeout <= 0 {
		opts.FlushTimeout = 5 * time.Second
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
	u.mu.RLock()
	c := u.cells[prefix]
	u.mu.RUnlock()
	if c == nil {
		c = u.cell(prefix)
	}
	if n != 0 {
		c.count.Add(n)
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

// Flush writes the pending usage to the store in one batch. On failure the
// counts are put back and the error returned.
func (u *Usage) Flush(ctx context.Context) error {
	batch := make(map[string]UsageDelta)
	u.mu.RLock()
	for p, c := range u.cells {
		n := c.count.Swap(0)
		ns := c.last.Swap(0)
		if n == 0 && ns == 0 {
			continue
		}
		d := UsageDelta{Count: n}
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
	if d.LastUsed.IsZero() {
		u.cell(prefix).count.Add(d.Count)
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
			if err := u.Flush(fctx); err != nil {
				u.log.Error().Err(err).Msg("auth: final usage flush failed")
			}
			return
		case <-t.C:
			fctx, cancel := context.WithTimeout(ctx, u.opts.FlushTimeout)
			if err := u.Flush(fctx); err != nil {
				u.log.Warn().Err(err).Msg("auth: usage flush failed; will retry")
			}
			cancel()
		}
	}
}
