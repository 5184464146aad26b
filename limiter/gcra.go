package limiter

// A GCRA cell is one int64: the theoretical arrival time (TAT) in Unix
// nanoseconds. A budget of q units per window has emission interval
// t = ceil(window/q) and tolerance w = q*t (the window, rounded up by at
// most q ns so that the burst is exactly q); the cell is full when
// tat <= now, and a charge of c units is allowed when
// max(tat, now) + c*t - now <= w. The methods are pure; the caller holds
// whatever lock guards the cell. One integer division (remaining) per call
// at most.
type gcra struct {
	q, t, w int64
}

func newGCRA(q, window int64) gcra {
	q = max(q, 1)
	t := max((window+q-1)/q, 1)
	return gcra{q: q, t: t, w: q * t}
}

// inc is the TAT advance for cost units; more than w when cost > q.
func (g gcra) inc(cost int64) int64 {
	if cost <= 0 {
		return 0
	}
	if cost > g.q {
		return g.w + g.t
	}
	return cost * g.t
}

// take charges cost units at now. On success it returns the new TAT; on
// refusal the unchanged TAT and how long until the charge would succeed.
func (g gcra) take(tat, now, cost int64) (newTat int64, ok bool, wait int64) {
	nt := max(tat, now) + g.inc(cost)
	if over := nt - now - g.w; over > 0 {
		return tat, false, over
	}
	return nt, true, 0
}

// force charges cost units at now without refusal; the debt is capped at
// one extra window so a flood of unrefusable frames cannot postpone the
// budget forever.
func (g gcra) force(tat, now, cost int64) int64 {
	return min(max(tat, now)+g.inc(cost), now+2*g.w)
}

// remaining is the number of whole units available at now, in [0, q].
func (g gcra) remaining(tat, now int64) int64 {
	if tat <= now {
		return g.q
	}
	d := now + g.w - tat
	if d <= 0 {
		return 0
	}
	return min(d/g.t, g.q)
}

// wait is how long until cost units are available (0 if now).
func (g gcra) wait(tat, now, cost int64) int64 {
	return max(max(tat, now)+g.inc(cost)-now-g.w, 0)
}

// rescale converts a TAT of g into one of h keeping the units used.
func (g gcra) rescale(tat, now int64, h gcra) int64 {
	if tat <= now || g == h {
		return tat
	}
	used := g.q - g.remaining(tat, now)
	return now + h.inc(used)
}
