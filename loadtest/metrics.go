package loadtest

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// brokerSample is what the broker's Prometheus /metrics says about its
// process.
type brokerSample struct {
	rssBytes   float64 // process_resident_memory_bytes
	cpuSeconds float64 // process_cpu_seconds_total
	allocBytes float64 // go_memstats_alloc_bytes_total (0 when absent)
}

// sampleBroker reads the process metrics from a Prometheus text endpoint.
func sampleBroker(ctx context.Context, url string) (brokerSample, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return brokerSample{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return brokerSample{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return brokerSample{}, fmt.Errorf("loadtest: metrics: status %d", resp.StatusCode)
	}
	return parseProcessMetrics(bufio.NewScanner(resp.Body))
}

// parseProcessMetrics picks the two process gauges out of Prometheus text
// exposition lines.
func parseProcessMetrics(sc *bufio.Scanner) (brokerSample, error) {
	var s brokerSample
	var seen int
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		var dst *float64
		switch name {
		case "process_resident_memory_bytes":
			dst = &s.rssBytes
		case "process_cpu_seconds_total":
			dst = &s.cpuSeconds
		case "go_memstats_alloc_bytes_total":
			dst = &s.allocBytes
			seen-- // optional
		default:
			continue
		}
		fields := strings.Fields(val)
		if len(fields) == 0 {
			continue
		}
		f, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return s, fmt.Errorf("loadtest: metrics: %s: %w", name, err)
		}
		*dst = f
		seen++
	}
	if err := sc.Err(); err != nil {
		return s, err
	}
	if seen < 2 {
		return s, fmt.Errorf("loadtest: metrics: process_resident_memory_bytes or process_cpu_seconds_total missing")
	}
	return s, nil
}

// selfCPU is the user plus system CPU time this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

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
