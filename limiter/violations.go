package limiter

// timeRing remembers the last len(t) event times to answer "more than
// len(t)-1 events within a window".
type timeRing struct {
	t   []int64
	pos int
	n   int
}

// add records an event at now and reports whether the last len(t) events,
// this one included, all happened within window.
func (r *timeRing) add(now, window int64) bool {
	r.t[r.pos] = now
	r.pos = (r.pos + 1) % len(r.t)
	if r.n < len(r.t) {
		r.n++
	}
	return r.n == len(r.t) && now-r.t[r.pos] < window
}

func (r *timeRing) reset() { r.n, r.pos = 0, 0 }

// failedKeys is the failed-key history of one IP identity.
type failedKeys struct {
	ring         timeRing
	last         int64
	window       int64
	blockedUntil int64
}

func (f *failedKeys) idle(now int64) bool {
	return f.blockedUntil <= now && now-f.last >= f.window
}

// offenceLocked records a repeated-violation close at now and starts the
// identity's cooldown, escalating through cfg.Cooldowns.
func (id *identity) offenceLocked(now int64, v *Violations) {
	if id.offences > 0 && now-id.lastOffence >= int64(v.ForgetAfter) {
		id.offences = 0
	}
	id.offences++
	d := v.Cooldowns[min(int(id.offences), len(v.Cooldowns))-1]
	id.cooldownUntil = max(id.cooldownUntil, now+int64(d))
	id.lastOffence = now
}
