package limiter

// quotaBuckets is how many buckets divide a rolling quota window. Usage made
// in bucket b (width W/quotaBuckets) is counted while the current bucket is
// at most b+quotaBuckets, so it leaves the window between W and
// W + W/quotaBuckets after it happened: never early, at most 1/60 late
// (24 min for the daily quota).
const quotaBuckets = 60

// ring is a rolling sum over quotaBuckets+1 buckets.
type ring struct {
	head int64 // absolute index of the newest bucket
	sum  int64
	b    [quotaBuckets + 1]int64
}

func (r *ring) advance(cur int64) {
	if cur <= r.head {
		return
	}
	if cur-r.head > quotaBuckets {
		r.b, r.sum = [quotaBuckets + 1]int64{}, 0
	} else {
		for i := r.head + 1; i <= cur; i++ {
			k := i % (quotaBuckets + 1)
			r.sum -= r.b[k]
			r.b[k] = 0
		}
	}
	r.head = cur
}

func (r *ring) add(cur, n int64) {
	r.advance(cur)
	r.b[cur%(quotaBuckets+1)] += n
	r.sum += n
}

// wait is how long from now (ns, bucket width w) until the sum drops to at
// most target.
func (r *ring) wait(now, width, target int64) int64 {
	cur := now / width
	r.advance(cur)
	s := r.sum
	if s <= target {
		return 0
	}
	for i := cur - quotaBuckets; i <= cur; i++ {
		s -= r.b[((i%(quotaBuckets+1))+quotaBuckets+1)%(quotaBuckets+1)]
		if s <= target {
			return max((i+quotaBuckets+1)*width-now, 0)
		}
	}
	return max((cur+quotaBuckets+1)*width-now, 0)
}

// quotaState is the local usage of a key's quotas. It exists only for keys
// with quotas (about 1.5 KiB each).
type quotaState struct {
	total int64
	rings [3]ring // daily, weekly, monthly
}

func bucketWidth(w QuotaWindow) int64 { return int64(w.Duration()) / quotaBuckets }

func (q *quotaState) used(w QuotaWindow, now int64) int64 {
	if w == QuotaTotal {
		return q.total
	}
	r := &q.rings[w-QuotaDaily]
	r.advance(now / bucketWidth(w))
	return r.sum
}

// check returns the first quota that cost would exceed, in quotaCheckOrder.
func (q *quotaState) check(p *Quotas, now, cost int64) QuotaWindow {
	for _, w := range quotaCheckOrder {
		if lim := p.limit(w); lim > 0 && q.used(w, now)+cost > lim {
			return w
		}
	}
	return QuotaNone
}

func (q *quotaState) add(now, cost int64) {
	q.total += cost
	for i := range q.rings {
		w := QuotaDaily + QuotaWindow(i)
		q.rings[i].add(now/bucketWidth(w), cost)
	}
}

// retry is how long until cost fits under quota w (0 for total: never).
func (q *quotaState) retry(p *Quotas, w QuotaWindow, now, cost int64) int64 {
	if w == QuotaTotal || w == QuotaNone {
		return 0
	}
	return q.rings[w-QuotaDaily].wait(now, bucketWidth(w), p.limit(w)-cost)
}

func (q *quotaState) idle(now int64) bool {
	if q.total != 0 {
		return false
	}
	for i := range q.rings {
		w := QuotaDaily + QuotaWindow(i)
		q.rings[i].advance(now / bucketWidth(w))
		if q.rings[i].sum != 0 {
			return false
		}
	}
	return true
}
