package console

import (
	"strconv"
	"time"

	dto "github.com/prometheus/client_model/go"
)

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
