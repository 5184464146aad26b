package node

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"floodgate/auth"
	"floodgate/broker"
	"floodgate/fanout"
	"floodgate/limiter"

	dto "github.com/prometheus/client_model/go"
)

// NewTestBudget admits one key connection on lim and returns its budget as
// the node builds it, for hot-path tests.
func NewTestBudget(lim *limiter.Limiter, usage *auth.Usage, prefix string, now time.Time) (broker.Budget, error) {
	conn, err := lim.Admit(context.Background(), limiter.Request{Identity: limiter.KeyIdentity(prefix), Tier: limiter.TierKey}, now)
	if err != nil {
		return nil, err
	}
	srcs, err := fanout.NewSources(fanout.SourcesConfig{})
	if err != nil {
		return nil, err
	}
	cs := &costs{}
	cs.p.Store(newCostTable(lim.Costs(), srcs))
	return &budget{conn: conn, limiter: lim, usage: usage, costs: cs, prefix: prefix}, nil
}

// ClientIP exposes clientIP.
var ClientIP = clientIP

// PresentedKey exposes presentedKey: the key, whether an empty key was
// presented, and the refusal's code ("" when none).
func PresentedKey(r *http.Request, allowQuery bool) (string, bool, string) {
	key, empty, ref := presentedKey(r, allowQuery)
	if ref != nil {
		return key, empty, ref.Code
	}
	return key, empty, ""
}

// SampleView takes one stats and key-traffic sample at now, as the node
// does every 2 s.
func (n *Node) SampleView(now time.Time) { n.sampleView(now) }

// Heartbeat records and publishes the node's heartbeat at now, as the node
// does every 5 s.
func (n *Node) Heartbeat(now time.Time) { n.heartbeat(now) }

// AdminRoutes lists the operator endpoints the node serves itself, as
// "METHOD /path".
func (n *Node) AdminRoutes() []string {
	var out []string
	for _, r := range n.adminRoutes() {
		out = append(out, r.method+" "+r.pattern)
	}
	return out
}

// WindowTop exposes the bounded top-N counter of the console.
type WindowTop struct{ t *windowTop }

// NewWindowTop returns a windowTop of buckets of width, capacity keys each.
func NewWindowTop(width time.Duration, buckets, capacity int) WindowTop {
	return WindowTop{newWindowTop(width, buckets, capacity)}
}

// Add counts n under key and label at now.
func (w WindowTop) Add(key, label string, n int64, now time.Time) { w.t.add(key, label, n, now) }

// Top returns the top n as "key=weight" strings and their labels' parts.
func (w WindowTop) Top(n int, now time.Time) ([]string, []map[string]int64) {
	var keys []string
	var parts []map[string]int64
	for _, c := range w.t.top(n, now) {
		keys = append(keys, c.Key+"="+strconv.FormatInt(c.Weight, 10))
		parts = append(parts, c.Parts)
	}
	return keys, parts
}

// P99Delta exposes p99Delta over classic buckets given as (upper bound,
// cumulative count) pairs.
func P99Delta(prev, cur [][2]float64, n uint64) *float64 {
	conv := func(bs [][2]float64) []*dto.Bucket {
		var out []*dto.Bucket
		for _, b := range bs {
			up, n := b[0], uint64(b[1])
			out = append(out, &dto.Bucket{UpperBound: &up, CumulativeCount: &n})
		}
		return out
	}
	return p99Delta(conv(prev), conv(cur), n)
}

// FlushUsage runs one usage flush at now, as the node does every second:
// the sessions' delivery counts are folded in (and delivery quotas
// checked), then the batch goes to the store.
func (n *Node) FlushUsage(now time.Time) error {
	return n.usage.FlushAt(context.Background(), now)
}
