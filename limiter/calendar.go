package limiter

import "time"

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
