package console

import (
	"math"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// The node's own stats for the operator console: every statsInterval the
// Backend gathers the node's Prometheus registry (what /metrics serves, so no
// Prometheus server is needed), turns counters into rates and the fan-out
// latency histogram's bucket deltas into a p99, and keeps the last
// statsWindow of samples in a ring (GET /admin/v1/stats).

const (
	// statsInterval is the resolution of the ring.
	statsInterval = 2 * time.Second
	// statsWindow is how much history the ring keeps.
	statsWindow = 10 * time.Minute
	// statsRingSize is the number of samples kept.
	statsRingSize = int(statsWindow / statsInterval)
)

// Sample is one step of the node's stats. Rates are per second over the
// step; gauges are the values at its end.
type Sample struct {
	// T is the end of the step, Unix milliseconds.
	T int64 `json:"t"`
	// ConnsAnonymous and ConnsKey are the live websocket connections by
	// identity kind.
	ConnsAnonymous int64 `json:"conns_anonymous"`
	ConnsKey       int64 `json:"conns_key"`
	// Channels with a local subscriber; NATSSubscriptions the hub's NATS
	// subscriptions; Subscriptions the (connection, channel) pairs.
	Channels          int64 `json:"channels"`
	NATSSubscriptions int64 `json:"nats_subscriptions"`
	Subscriptions     int64 `json:"subscriptions"`
	// Deliveries: market frames accepted by subscriber queues.
	Deliveries float64 `json:"deliveries_per_s"`
	// ClientFrames: text frames received from clients.
	ClientFrames float64 `json:"client_frames_per_s"`
	// FramesWritten: frames written to sockets (market and replies).
	FramesWritten float64 `json:"frames_written_per_s"`
	// Refusals: upgrades refused plus requests answered with an error
	// frame; RefusalsByCode splits them by code (codes with none left out).
	Refusals       float64            `json:"refusals_per_s"`
	RefusalsByCode map[string]float64 `json:"refusals_by_code"`
	// SlowConsumerCloses in this step; SlowConsumerTotal since start.
	SlowConsumerCloses int64 `json:"slow_consumer_closes"`
	SlowConsumerTotal  int64 `json:"slow_consumer_total"`
	// Dropped frames per second by reason (queue_full, slow_consumer_close,
	// closing, conflated; reasons with none left out); ConflatedTotal
	// since start.
	Dropped        map[string]float64 `json:"dropped_per_s"`
	ConflatedTotal int64              `json:"conflated_total"`
	// FanoutP99MS is the 99th percentile of NATS receive to socket write
	// over the step, from the histogram's bucket deltas (linear within a
	// bucket); nil when nothing was delivered.
	FanoutP99MS *float64 `json:"fanout_p99_ms"`
	// NATSConnected and LimiterUp (cluster budgets in force, or local
	// mode).
	NATSConnected bool `json:"nats_connected"`
	LimiterUp     bool `json:"limiter_up"`
	// CPUCores used by the process over the step, its resident memory and
	// goroutines.
	CPUCores   float64 `json:"cpu_cores"`
	RSSBytes   int64   `json:"rss_bytes"`
	Goroutines int64   `json:"goroutines"`
}

// Health is the node's readiness as the operator sees it: the /readyz
// reasons with their details.
type Health struct {
	// Status is "ready" or "not ready".
	Status string `json:"status"`
	// Reasons are the /readyz reasons (draining, nats, redis, store,
	// limiter, history); empty when ready.
	Reasons []string `json:"reasons"`
	// Details are the errors behind the reasons.
	Details map[string]string `json:"details"`
	// CheckedAt is when the checks ran.
	CheckedAt time.Time `json:"checked_at"`
}

// counters are the cumulative values of one gather.
type counters struct {
	at                              time.Time
	deliveries, clientFrames, wrote float64
	refusals                        map[string]float64
	slow                            float64
	dropped                         map[string]float64
	latency                         []*dto.Bucket
	latencyCount                    uint64
	cpu                             float64
}

// statsRing samples a registry and keeps the ring. Safe for concurrent
// use: sample runs on Run's goroutine, the handlers read.
type statsRing struct {
	// Immutable after newStatsRing.
	gather prometheus.Gatherer

	// Guarded by mu.
	mu      sync.Mutex
	prev    *counters
	samples []Sample // ring of statsRingSize
	head    int      // next write position
	n       int      // samples held
	health  Health
}

func newStatsRing(g prometheus.Gatherer) *statsRing {
	return &statsRing{gather: g, samples: make([]Sample, statsRingSize),
		health: Health{Status: "ready", Reasons: []string{}, Details: map[string]string{}}}
}

// sample gathers the registry at now and appends a sample (the first call
// only sets the base of the rates). It reports whether it appended one.
func (r *statsRing) sample(now time.Time, h Health) (Sample, bool) {
	mfs, err := r.gather.Gather()
	if err != nil && len(mfs) == 0 {
		return Sample{}, false
	}
	s, cur := parseFamilies(mfs, now)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.health = h
	prev := r.prev
	r.prev = cur
	if prev == nil {
		return Sample{}, false
	}
	dt := now.Sub(prev.at).Seconds()
	if dt <= 0 {
		return Sample{}, false
	}
	rate := func(a, b float64) float64 { return math.Max(0, b-a) / dt }
	s.Deliveries = rate(prev.deliveries, cur.deliveries)
	s.ClientFrames = rate(prev.clientFrames, cur.clientFrames)
	s.FramesWritten = rate(prev.wrote, cur.wrote)
	s.CPUCores = rate(prev.cpu, cur.cpu)
	s.SlowConsumerCloses = int64(math.Max(0, cur.slow-prev.slow))
	s.RefusalsByCode = map[string]float64{}
	for code, v := range cur.refusals {
		if d := rate(prev.refusals[code], v); d > 0 {
			s.RefusalsByCode[code] = d
			s.Refusals += d
		}
	}
	s.Dropped = map[string]float64{}
	for reason, v := range cur.dropped {
		if d := rate(prev.dropped[reason], v); d > 0 {
			s.Dropped[reason] = d
		}
	}
	s.FanoutP99MS = p99Delta(prev.latency, cur.latency, cur.latencyCount-min(prev.latencyCount, cur.latencyCount))
	r.samples[r.head] = s
	r.head = (r.head + 1) % len(r.samples)
	r.n = min(r.n+1, len(r.samples))
	return s, true
}

// since returns the samples with T > sinceMS, oldest first, and the last
// health.
func (r *statsRing) since(sinceMS int64) ([]Sample, Health) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Sample, 0, r.n)
	for i := 0; i < r.n; i++ {
		s := r.samples[(r.head-r.n+i+len(r.samples))%len(r.samples)]
		if s.T > sinceMS {
			out = append(out, s)
		}
	}
	return out, r.health
}

// latest returns the newest sample (false when there is none yet).
func (r *statsRing) latest() (Sample, Health, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n == 0 {
		return Sample{}, r.health, false
	}
	return r.samples[(r.head-1+len(r.samples))%len(r.samples)], r.health, true
}

// parseFamilies reads the gauges of a sample and the cumulative counters.
func parseFamilies(mfs []*dto.MetricFamily, now time.Time) (Sample, *counters) {
	s := Sample{T: now.UnixMilli(), LimiterUp: true}
	c := &counters{at: now, refusals: map[string]float64{}, dropped: map[string]float64{}}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			g := m.GetGauge().GetValue()
			ctr := m.GetCounter().GetValue()
			switch mf.GetName() {
			case "floodgate_connections":
				switch label(m, "kind") {
				case "anonymous":
					s.ConnsAnonymous = int64(g)
				case "key":
					s.ConnsKey = int64(g)
				}
			case "floodgate_fanout_channels":
				s.Channels = int64(g)
			case "floodgate_fanout_nats_subscriptions":
				s.NATSSubscriptions = int64(g)
			case "floodgate_subscriptions":
				s.Subscriptions = int64(g)
			case "floodgate_nats_connected":
				s.NATSConnected = g == 1
			case "floodgate_limiter_cluster_up":
				s.LimiterUp = g == 1
			case "process_resident_memory_bytes":
				s.RSSBytes = int64(g)
			case "go_goroutines":
				s.Goroutines = int64(g)
			case "floodgate_fanout_messages_out_total":
				c.deliveries += ctr
			case "floodgate_client_frames_total":
				c.clientFrames += ctr
			case "floodgate_frames_written_total":
				c.wrote += ctr
			case "process_cpu_seconds_total":
				c.cpu += ctr
			case "floodgate_upgrade_refusals_total", "floodgate_error_replies_total":
				c.refusals[label(m, "code")] += ctr
			case "floodgate_slow_consumer_closes_total":
				c.slow += ctr
				s.SlowConsumerTotal = int64(c.slow)
			case "floodgate_frames_dropped_total":
				reason := label(m, "reason")
				c.dropped[reason] += ctr
				if reason == "conflated" {
					s.ConflatedTotal = int64(c.dropped[reason])
				}
			case "floodgate_fanout_latency_seconds":
				c.latency = m.GetHistogram().GetBucket()
				c.latencyCount = m.GetHistogram().GetSampleCount()
			}
		}
	}
	return s, c
}

func label(m *dto.Metric, name string) string {
	for _, lp := range m.GetLabel() {
		if lp.GetName() == name {
			return lp.GetValue()
		}
	}
	return ""
}

// p99Delta is the 99th percentile, in milliseconds, of the observations
// between two cumulative histograms (count of them n), interpolated
// linearly within the bucket as Prometheus' histogram_quantile does; the
// +Inf bucket answers its lower bound. Nil when n is 0.
func p99Delta(prev, cur []*dto.Bucket, n uint64) *float64 {
	if n == 0 || len(cur) == 0 {
		return nil
	}
	prevAt := make(map[float64]uint64, len(prev))
	for _, b := range prev {
		prevAt[b.GetUpperBound()] = b.GetCumulativeCount()
	}
	bs := make([]*dto.Bucket, len(cur))
	copy(bs, cur)
	sort.Slice(bs, func(i, j int) bool { return bs[i].GetUpperBound() < bs[j].GetUpperBound() })
	rank := 0.99 * float64(n)
	lower, lowerCount := 0.0, 0.0
	for _, b := range bs {
		c := float64(b.GetCumulativeCount() - min(prevAt[b.GetUpperBound()], b.GetCumulativeCount()))
		up := b.GetUpperBound()
		if c >= rank {
			v := up
			if c > lowerCount {
				v = lower + (up-lower)*(rank-lowerCount)/(c-lowerCount)
			}
			v *= 1000
			return &v
		}
		lower, lowerCount = up, c
	}
	v := lower * 1000 // above the last finite bucket
	return &v
}
