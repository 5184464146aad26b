package loadtest

import (
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are recorded in microseconds, from 1 µs to one hour, with three
// significant digits: about 180 KiB per histogram.
const (
	latencyMaxMicros = 3_600_000_000
	latencySigFigs   = 3
	// latencyBatch is how many samples a session collects before it takes a
	// shard's lock: one lock per 64 frames, not one per frame.
	latencyBatch = 64
	// latencyFlushAge flushes a partial batch whose first sample is older
	// than this, so progress lines see slow connections too.
	latencyFlushAge = int64(500 * time.Millisecond)
)

func newLatencyHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(1, latencyMaxMicros, latencySigFigs)
}

// latencyShards is a small set of mutex-guarded histograms; sessions flush
// batches of samples into the shard picked by their id, and the report
// merges the shards.
type latencyShards struct {
	// Immutable after newLatencyShards.
	shards []latencyShard
}

type latencyShard struct {
	// Guarded by mu.
	mu sync.Mutex
	h  *hdrhistogram.Histogram
	_  [40]byte // keep neighbouring mutexes off one cache line
}

func newLatencyShards(n int) *latencyShards {
	l := &latencyShards{shards: make([]latencyShard, max(1, n))}
	for i := range l.shards {
		l.shards[i].h = newLatencyHistogram()
	}
	return l
}

// record adds samples (in nanoseconds) to shard i mod n. 0 allocations.
func (l *latencyShards) record(i int, samples []int64) {
	s := &l.shards[i%len(l.shards)]
	s.mu.Lock()
	for _, ns := range samples {
		recordMicros(s.h, ns)
	}
	s.mu.Unlock()
}

// merged returns a new histogram holding every shard's samples.
func (l *latencyShards) merged() *hdrhistogram.Histogram {
	out := newLatencyHistogram()
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		out.Merge(s.h)
		s.mu.Unlock()
	}
	return out
}

// recordMicros records a duration in nanoseconds as microseconds, clamped to
// the histogram's range (a negative latency means clock skew: 0).
func recordMicros(h *hdrhistogram.Histogram, ns int64) {
	us := min(max(ns/1000, 0), latencyMaxMicros)
	_ = h.RecordValue(us)
}

// microsToMs converts a histogram value to milliseconds.
func microsToMs(us int64) float64 { return float64(us) / 1000 }
