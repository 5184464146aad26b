package limiter

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// identity is the cell of one identity: its credit budget, connect rate,
// live connection count, violation history and, lazily, failed-key history,
// quota usage and cluster lease. Measured size: see BenchmarkTable_Memory
// (about 250 bytes per identity including its map entry and name).
type identity struct {
	// Immutable after creation
	name string
	api  bool // an API budget (AllowAPI): only tat is used

	// Guarded by the shard lock (written), read atomically
	pins atomic.Int32 // Admit in progress; blocks eviction

	mu sync.Mutex
	// Guarded by mu
	pol           *policy // the whole budget
	local         *policy // the budget enforced locally in cluster fallback (pol when share is 1)
	tat           int64   // credits GCRA (local mode and fallback)
	connectTat    int64   // connect-rate GCRA (local mode and fallback)
	conns         int64   // live connections on this node
	cooldownUntil int64
	lastOffence   int64
	offences      int32
	failed        *failedKeys  // nil until the first failed key attempt
	quota         *quotaState  // nil unless the key has quotas
	cl            *clusterCell // nil in local mode
}

// idleLocked reports whether the identity holds no state worth keeping at
// now: evicting it and recreating it later is indistinguishable.
func (id *identity) idleLocked(now int64, forget int64) bool {
	if id.conns > 0 || id.tat > now || id.connectTat > now || id.cooldownUntil > now {
		return false
	}
	if id.offences > 0 && now-id.lastOffence < forget {
		return false
	}
	if id.failed != nil && !id.failed.idle(now) {
		return false
	}
	if id.quota != nil && !id.quota.idle(now) {
		return false
	}
	if id.cl != nil && !id.cl.idle() {
		return false
	}
	return true
}

// table is the keyed set of identity cells: a power-of-two array of shards,
// each a map under its own mutex. Lookups happen at admission and in the
// background, never per message (a Conn keeps its cell pointer).
type table struct {
	// Immutable after newTable
	seed   maphash.Seed
	mask   uint64
	shards []shard
}

type shard struct {
	mu sync.Mutex
	m  map[string]*identity // guarded by mu
	_  [40]byte             // keep shards on separate cache lines
}

func newTable(n int) *table {
	t := &table{seed: maphash.MakeSeed(), mask: uint64(n - 1), shards: make([]shard, n)}
	for i := range t.shards {
		t.shards[i].m = make(map[string]*identity)
	}
	return t
}

func (t *table) shard(name string) *shard {
	return &t.shards[maphash.String(t.seed, name)&t.mask]
}

// acquire returns the cell of name, creating it with mk, pinned against
// eviction; the caller must unpin it.
func (t *table) acquire(name string, mk func(string) *identity) *identity {
	s := t.shard(name)
	s.mu.Lock()
	id := s.m[name]
	if id == nil && mk != nil {
		id = mk(name)
		s.m[id.name] = id
	}
	if id != nil {
		id.pins.Add(1)
	}
	s.mu.Unlock()
	return id
}

func (id *identity) unpin() { id.pins.Add(-1) }

// each calls fn for every cell, shard by shard, without holding the shard
// lock while fn runs. buf is reused between calls.
func (t *table) each(buf []*identity, fn func(*identity)) []*identity {
	for i := range t.shards {
		s := &t.shards[i]
		buf = buf[:0]
		s.mu.Lock()
		for _, id := range s.m {
			buf = append(buf, id)
		}
		s.mu.Unlock()
		for _, id := range buf {
			fn(id)
		}
	}
	clear(buf)
	return buf[:0]
}

// sweep deletes idle, unpinned cells and returns how many remain.
func (t *table) sweep(now, forget int64) (kept int) {
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for name, id := range s.m {
			if id.pins.Load() != 0 {
				continue
			}
			id.mu.Lock()
			idle := id.idleLocked(now, forget)
			id.mu.Unlock()
			if idle {
				delete(s.m, name)
			}
		}
		kept += len(s.m)
		s.mu.Unlock()
	}
	return kept
}

func (t *table) len() (n int) {
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}
