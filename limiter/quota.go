package limiter

import "time"

// quotaBuckets is how many buckets divide a rolling quota window. Each
// bucket (width W/quotaBuckets) keeps the sum of the uses made in it and the
// time of the latest one; the whole bucket leaves the window exactly W after
// that latest use. So a use leaves between W and W + W/quotaBuckets after it
// happened (never early, at most one bucket late: 24 min for the daily
// quota), and a refusal's Retry-After, the time until enough buckets have
// left, is exact to the bucket and never longer than W.
const quotaBuckets = 60

// ringSlots is quotaBuckets+1: the current bucket and the quotaBuckets
// before it (the oldest one is still counted until W after its last use).
const ringSlots = quotaBuckets + 1

// ring is a rolling sum over ringSlots buckets.
type ring struct {
	head int64 // absolute index of the newest bucket
	sum  int64
	b    [ringSlots]int64
	last [ringSlots]int64 // unix ns of the latest use in the bucket
}

func slot(i int64) int64 { return ((i % ringSlots) + ringSlots) % ringSlots }

func (r *ring) advance(cur int64) {
	if cur <= r.head {
		return
	}
	if cur-r.head > quotaBuckets {
		r.b, r.last, r.sum = [ringSlots]int64{}, [ringSlots]int64{}, 0
	} else {
		for i := r.head + 1; i <= cur; i++ {
			k := slot(i)
			r.sum -= r.b[k]
			r.b[k], r.last[k] = 0, 0
		}
	}
	r.head = cur
}

func (r *ring) add(now, width, n int64) {
	cur := now / width
	r.advance(cur)
	k := slot(cur)
	r.b[k] += n
	r.sum += n
	r.last[k] = max(r.last[k], now)
}

// usedAt is the sum at now (window W): every bucket but an oldest one
// whose last use is W old.
func (r *ring) usedAt(now, width, window int64) int64 {
	cur := now / width
	r.advance(cur)
	if k := slot(cur - quotaBuckets); r.b[k] != 0 && r.last[k]+window <= now {
		return r.sum - r.b[k]
	}
	return r.sum
}

// wait is how long from now until the sum drops to at most target: the
// time the last bucket that must go leaves (its last use + W). At most W.
func (r *ring) wait(now, width, window, target int64) int64 {
	cur := now / width
	r.advance(cur)
	s := r.sum
	for i := cur - quotaBuckets; i <= cur; i++ {
		k := slot(i)
		if r.b[k] == 0 {
			continue
		}
		rel := r.last[k] + window
		if rel <= now { // already left
			s -= r.b[k]
			continue
		}
		if s <= target {
			return 0
		}
		s -= r.b[k]
		if s <= target {
			return rel - now
		}
	}
	if s <= target {
		return 0
	}
	return window
}

// quotaState is the local usage of a key's quotas. It exists only for keys
// with quotas (about 3 KiB each). Both the rolling rings and the calendar
// buckets are always kept, so a key switched between the two kinds
// reports (and is held to) what it used.
type quotaState struct {
	total int64
	rings [3]ring      // daily, weekly, monthly
	cal   [3]calBucket // daily, weekly, monthly: the current UTC period
}

func bucketWidth(w QuotaWindow) int64 { return int64(w.Duration()) / quotaBuckets }

// used is the use of window w at now; cal selects the calendar period
// rather than the rolling window.
func (q *quotaState) used(w QuotaWindow, cal bool, now int64) int64 {
	switch {
	case w == QuotaTotal:
		return q.total
	case cal:
		return q.cal[w-QuotaDaily].usedAt(now)
	}
	return q.rings[w-QuotaDaily].usedAt(now, bucketWidth(w), int64(w.Duration()))
}

// check returns the first quota that cost would exceed, in quotaCheckOrder.
func (q *quotaState) check(p *Quotas, now, cost int64) QuotaWindow {
	for _, w := range quotaCheckOrder {
		if lim := p.limit(w); lim > 0 && q.used(w, p.Calendar, now)+cost > lim {
			return w
		}
	}
	return QuotaNone
}

func (q *quotaState) add(now, cost int64) {
	q.total += cost
	for i := range q.rings {
		w := QuotaDaily + QuotaWindow(i)
		q.rings[i].add(now, bucketWidth(w), cost)
		q.cal[i].add(w, now, cost)
	}
}

// retry is how long until cost fits under quota w (0 for total: never):
// for a calendar quota, until the period ends.
func (q *quotaState) retry(p *Quotas, w QuotaWindow, now, cost int64) int64 {
	if w == QuotaTotal || w == QuotaNone {
		return 0
	}
	if p.Calendar {
		_, _, end := calendarPeriod(w, now)
		return end - now
	}
	return q.rings[w-QuotaDaily].wait(now, bucketWidth(w), int64(w.Duration()), p.limit(w)-cost)
}

// resetIn is how long from now until quota w next frees capacity: the end
// of the calendar period, or when the oldest use still in the rolling
// window leaves it (0 with nothing used; for an exhausted quota this is
// the Retry-After of a cost of 1). 0 for total.
func (q *quotaState) resetIn(p *Quotas, w QuotaWindow, now int64) int64 {
	if w == QuotaTotal || w == QuotaNone {
		return 0
	}
	if p.Calendar {
		_, _, end := calendarPeriod(w, now)
		return end - now
	}
	used := q.used(w, false, now)
	if used <= 0 {
		return 0
	}
	return q.rings[w-QuotaDaily].wait(now, bucketWidth(w), int64(w.Duration()), used-1)
}

func (q *quotaState) idle(now int64) bool {
	if q.total != 0 {
		return false
	}
	for i := range q.rings {
		w := QuotaDaily + QuotaWindow(i)
		if q.rings[i].usedAt(now, bucketWidth(w), int64(w.Duration())) != 0 || q.cal[i].usedAt(now) != 0 {
			return false
		}
	}
	return true
}

const dayNs = int64(24 * time.Hour)

// floorDiv is a/b rounded toward minus infinity (b > 0).
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// calendarPeriod returns the UTC calendar period of w (daily, weekly or
// monthly) that contains now (Unix ns): a number that names it (day, week
// or month count since the Unix epoch), its start and its end (the next
// period's start). 0 allocations.
func calendarPeriod(w QuotaWindow, now int64) (idx, start, end int64) {
	switch w {
	case QuotaDaily:
		idx = floorDiv(now, dayNs)
		return idx, idx * dayNs, (idx + 1) * dayNs
	case QuotaWeekly:
		// 1970-01-01 was a Thursday: day d is in week (d+3)/7, and week k
		// starts on the Monday that is day 7k-3.
		idx = floorDiv(floorDiv(now, dayNs)+3, 7)
		start = (idx*7 - 3) * dayNs
		return idx, start, start + 7*dayNs
	case QuotaMonthly:
		y, m, _ := time.Unix(0, now).UTC().Date()
		s := time.Date(y, m, 1, 0, 0, 0, 0, time.UTC)
		e := time.Date(y, m+1, 1, 0, 0, 0, 0, time.UTC) // December + 1 is January of the next year
		return int64(y)*12 + int64(m) - 1, s.UnixNano(), e.UnixNano()
	}
	return 0, 0, 0
}

// CalendarPeriod returns the UTC calendar period of w that contains now:
// the day (from 00:00), the week (from Monday 00:00) or the month (from
// the 1st 00:00). A calendar quota resets at end. For QuotaTotal and
// QuotaNone both are the zero Time.
func CalendarPeriod(w QuotaWindow, now time.Time) (start, end time.Time) {
	if w < QuotaDaily || w > QuotaMonthly {
		return time.Time{}, time.Time{}
	}
	_, s, e := calendarPeriod(w, now.UnixNano())
	return time.Unix(0, s).UTC(), time.Unix(0, e).UTC()
}

// calBucket is the use of one calendar period [start, end) (Unix ns; the
// zero value is no period). The bounds are kept so that the hot path
// computes a period only when one ends.
type calBucket struct {
	start, end int64
	used       int64
}

func (b *calBucket) usedAt(now int64) int64 {
	if now >= b.start && now < b.end {
		return b.used
	}
	return 0
}

func (b *calBucket) add(w QuotaWindow, now, n int64) {
	if now < b.start || now >= b.end {
		_, b.start, b.end = calendarPeriod(w, now)
		b.used = 0
	}
	b.used = max(b.used+n, 0)
}
