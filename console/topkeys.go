package console

import (
	"sort"
	"sync"
	"time"

	"floodgate/broker"
)

// Top keys of the last 10 minutes for the operator console
// (GET /admin/v1/top-keys): by traffic (frames in and out, sampled from
// the broker's live sessions plus the sessions that ended) and by refusals
// (refused upgrades and refused frames, counted by the node through
// Backend.Refused).

const (
	// topWindow is how far back the rankings look.
	topWindow = 10 * time.Minute
	// topBucket is the step of the window: the rankings cover the current
	// bucket and the ones before it up to topWindow.
	topBucket = 30 * time.Second
	// topBuckets is the number of buckets kept.
	topBuckets = int(topWindow / topBucket)
	// maxTopLabels is the number of sub-counts (refusal codes, in/out) an
	// entry keeps; further labels count in the total only.
	maxTopLabels = 4
	// refusalCapacity and trafficCapacity bound the keys tracked per
	// bucket (space-saving: a new key replaces the smallest one).
	refusalCapacity = 128
	trafficCapacity = 1024
)

// windowTop counts weights per key over a sliding window of buckets, each
// a space-saving summary of at most capacity entries: when a bucket is
// full, a new key takes the smallest entry's place and inherits its count
// (an overestimate bounded by that count, recorded as err), so the heavy
// hitters are always found and memory is fixed. Safe for concurrent use;
// add allocates nothing once its buckets exist (they are made in
// newWindowTop).
type windowTop struct {
	// Immutable after newWindowTop.
	width time.Duration

	// Guarded by mu.
	mu      sync.Mutex
	buckets []topBucketData
}

type topBucketData struct {
	epoch   int64 // start of the bucket in units of width; -1 unused
	entries []topEntry
}

type topEntry struct {
	key    string
	weight int64
	err    int64
	labels [maxTopLabels]string
	parts  [maxTopLabels]int64
}

func newWindowTop(width time.Duration, buckets, capacity int) *windowTop {
	t := &windowTop{width: width, buckets: make([]topBucketData, buckets)}
	for i := range t.buckets {
		t.buckets[i] = topBucketData{epoch: -1, entries: make([]topEntry, 0, capacity)}
	}
	return t
}

// add counts n under key and label at now. key and label must not be
// mutated afterwards (they are kept, not copied). Nil-safe.
func (t *windowTop) add(key, label string, n int64, now time.Time) {
	if t == nil || n <= 0 || key == "" {
		return
	}
	epoch := now.UnixNano() / int64(t.width)
	t.mu.Lock()
	defer t.mu.Unlock()
	b := &t.buckets[int(epoch%int64(len(t.buckets)))]
	if b.epoch != epoch {
		b.epoch = epoch
		b.entries = b.entries[:0]
	}
	i := -1
	for j := range b.entries {
		if b.entries[j].key == key {
			i = j
			break
		}
	}
	if i < 0 {
		if len(b.entries) < cap(b.entries) {
			b.entries = append(b.entries, topEntry{key: key})
			i = len(b.entries) - 1
		} else {
			i = 0
			for j := range b.entries {
				if b.entries[j].weight < b.entries[i].weight {
					i = j
				}
			}
			min := b.entries[i].weight
			b.entries[i] = topEntry{key: key, weight: min, err: min}
		}
	}
	e := &b.entries[i]
	e.weight += n
	for j := range e.labels {
		if e.labels[j] == label || e.labels[j] == "" {
			e.labels[j] = label
			e.parts[j] += n
			break
		}
	}
}

// topCount is one key's count over the window.
type topCount struct {
	Key    string
	Weight int64
	Parts  map[string]int64
}

// top returns up to n keys with the largest weights over the window
// ending at now, largest first (ties by key).
func (t *windowTop) top(n int, now time.Time) []topCount {
	if t == nil {
		return nil
	}
	epoch := now.UnixNano() / int64(t.width)
	oldest := epoch - int64(len(t.buckets)) + 1
	sum := map[string]*topCount{}
	t.mu.Lock()
	for bi := range t.buckets {
		b := &t.buckets[bi]
		if b.epoch < oldest || b.epoch > epoch {
			continue
		}
		for _, e := range b.entries {
			c := sum[e.key]
			if c == nil {
				c = &topCount{Key: e.key, Parts: map[string]int64{}}
				sum[e.key] = c
			}
			c.Weight += e.weight - e.err
			for j, l := range e.labels {
				if l != "" {
					c.Parts[l] += e.parts[j]
				}
			}
		}
	}
	t.mu.Unlock()
	out := make([]topCount, 0, len(sum))
	for _, c := range sum {
		if c.Weight > 0 {
			out = append(out, *c)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Weight != out[j].Weight {
			return out[i].Weight > out[j].Weight
		}
		return out[i].Key < out[j].Key
	})
	if len(out) > n {
		out = out[:n]
	}
	return out
}

// refusalTop is the refusal ranking: one count per refusal, labelled by
// its code. Nil-safe.
type refusalTop struct{ t *windowTop }

func newRefusalTop() *refusalTop {
	return &refusalTop{t: newWindowTop(topBucket, topBuckets, refusalCapacity)}
}

func (r *refusalTop) refused(prefix, code string, now time.Time) {
	if r != nil {
		r.t.add(prefix, code, 1, now)
	}
}

// keyTraffic turns the broker's per-session counters into per-key traffic
// per sampling interval: for each key, the frames of its live sessions now,
// plus the final counts of its sessions that ended since the last sample,
// minus its live sessions' counts at the last sample. The result feeds a
// windowTop labelled "in" and "out".
type keyTraffic struct {
	// Immutable after newKeyTraffic.
	top *windowTop

	// Guarded by mu.
	mu     sync.Mutex
	ended  map[string]inOut // sessions ended since the last sample
	prev   map[string]inOut // live sessions' counts at the last sample
	maxEnd int
}

type inOut struct{ in, out int64 }

func newKeyTraffic() *keyTraffic {
	return &keyTraffic{top: newWindowTop(topBucket, topBuckets, trafficCapacity),
		ended: map[string]inOut{}, prev: map[string]inOut{}, maxEnd: 1 << 16}
}

// closed adds an ended key session's final counts; the broker's OnClose.
func (k *keyTraffic) closed(info broker.SessionInfo) {
	p := info.Identity.KeyPrefix
	if p == "" {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	c, ok := k.ended[p]
	if !ok && len(k.ended) >= k.maxEnd {
		return // bounded: a burst of more keys than this ending in one interval undercounts
	}
	c.in += info.MsgsIn
	c.out += info.MsgsOut
	k.ended[p] = c
}

// sample takes the live per-key counts (broker.TopKeys of every key) at
// now and records the traffic since the last sample.
func (k *keyTraffic) sample(live []broker.KeyStat, now time.Time) {
	cur := make(map[string]inOut, len(live))
	for _, s := range live {
		cur[s.Prefix] = inOut{s.MsgsIn, s.MsgsOut}
	}
	k.mu.Lock()
	ended, prev := k.ended, k.prev
	k.ended, k.prev = map[string]inOut{}, cur
	k.mu.Unlock()
	delta := func(p string, c inOut) {
		e, pr := ended[p], prev[p]
		k.top.add(p, "in", c.in+e.in-pr.in, now)
		k.top.add(p, "out", c.out+e.out-pr.out, now)
	}
	for p, c := range cur {
		delta(p, c)
	}
	for p := range ended {
		if _, live := cur[p]; !live {
			delta(p, inOut{})
		}
	}
}
