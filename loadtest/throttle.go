package loadtest

import (
	"bytes"
	"context"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"golang.org/x/time/rate"
)

// The throttle scenario's pacing.
const (
	// pingRequest is the frame a throttle connection sends: the cheapest
	// charged request (one credit by default) with a direct reply.
	pingRequest = `{"method":"ping"}`
	// autoSendFactor is how far above its share of the identity's rate a
	// connection sends when Config.SendRate is 0.
	autoSendFactor = 1.5
	// minAutoSendRate and maxAutoSendRate bound the automatic send rate
	// (pings per second per connection).
	minAutoSendRate = 1.0
	maxAutoSendRate = 1000.0
	// redialPause is the least wait before redialling a closed or refused
	// connection.
	redialPause = time.Second
	// throttleReadBuffer is a throttle connection's read buffer: replies
	// are small.
	throttleReadBuffer = 4 << 10
	// minRecentPongs is the least number of an identity's latest pong
	// read times kept to place a new refusal mark among them (twice its
	// connections when more; see identityStats.admittedRate).
	minRecentPongs = 64
	// markSettle is how long after a refusal mark a pong read before it
	// may still be counted (its pinger descheduled between reading and
	// counting it); then the mark joins the fits.
	markSettle = time.Second
	// maxPendingMarks bounds an identity's unsettled marks; beyond it the
	// oldest joins the fits early.
	maxPendingMarks = 256
	// longRetryMs is the least retry_after_ms of a refusal whose mark is
	// clear of the replies' read delays: a pong the broker admitted before
	// the refusal is read after the mark only when its pinger was
	// descheduled for longer than that.
	longRetryMs = 20
)

// outcome is what a reply to a ping says.
type outcome uint8

const (
	outNone        outcome = iota // not a reply (notice, market frame)
	outAdmitted                   // pong
	outRefused                    // RATE_LIMITED: the identity's credits
	outRefusedConn                // RATE_LIMITED: the connection's message rate
	outOther                      // any other error reply (QUOTA_EXCEEDED, ...)
)

// throttle is one run of the throttle scenario: Conns connections, each
// belonging to one of Identities identities, pinging above their share of
// the identity's credit rate. A connection keeps one ping in flight, sends
// at most SendRate per second and pauses RefusalPause (at least the
// reply's retry_after_ms) after a refusal, so it stays under the broker's
// "more than 10 refusals in 10 s" close while its identity's credits are
// spent as soon as they refill; a connection the broker closes anyway is
// redialled.
type throttle struct {
	// Immutable after newThrottle.
	cfg     Config
	idents  []*identityStats
	pingers []*pinger
	dialSem chan struct{}
	limiter *rate.Limiter // nil without Config.Ramp

	// Written before the pingers start, read-only after.
	measureFrom, until time.Time

	// Shared.
	admitted atomic.Uint64 // every pong, measured or not, for progress
	refused  atomic.Uint64 // every refusal, for progress
	closing  atomic.Bool   // set before the run closes the connections

	// Guarded by mu.
	mu              sync.Mutex
	ok, failed      int
	connectFailures map[string]int
	connectHist     *hdrhistogram.Histogram // µs, dial to upgrade
}

// identityStats counts one identity's replies over the measurement.
type identityStats struct {
	// Immutable after newThrottle.
	name  string     // "key:<prefix>" or "ip:<addr>"
	key   string     // API key, "" when anonymous
	addr  netip.Addr // source address, zero for the kernel's choice
	conns int

	// Shared.
	quota atomic.Int64 // the last "q" seen, 0 before

	// Guarded by mu.
	mu                                          sync.Mutex
	admitted, refused, refusedConn, otherErrors uint64
	admittedBySecond, refusedBySecond           []int
	// Refusal marks: when a credit refusal says the next credit comes
	// (ping sent + retry_after_ms), each with the pongs read before it. A
	// pending mark still counts pongs counted late; a settled one is a
	// point x = mark (seconds since measureFrom), y = pongs before it, of
	// marks and, if its retry_after_ms >= longRetryMs, of longMarks.
	// recent is a ring of the last pongs' read times (UnixNano), recentN
	// how many were ever put in it.
	recent           []int64
	recentN          int
	pending          []markSample
	marks, longMarks fit
	// rl samples y = admitted + "r" at reply time x (seconds since
	// measureFrom).
	rl                     fit
	closes, redialFailures map[string]int
	redials                int
	sendPerS               float64
}

// markSample is a refusal mark (UnixNano) and the pongs read before it
// so far.
type markSample struct {
	at     int64
	before uint64
	long   bool // retry_after_ms >= longRetryMs
}

// fit accumulates points for a least-squares line.
type fit struct {
	n                        int
	firstX, lastX            float64
	sumX, sumY, sumXX, sumXY float64
}

func (f *fit) add(x, y float64) {
	if f.n == 0 || x < f.firstX {
		f.firstX = x
	}
	if f.n == 0 || x > f.lastX {
		f.lastX = x
	}
	f.n++
	f.sumX += x
	f.sumY += y
	f.sumXX += x * x
	f.sumXY += x * y
}

// slope is the least-squares slope when there are at least minN points
// spanning at least minSpan in x.
func (f *fit) slope(minN int, minSpan float64) (float64, bool) {
	n := float64(f.n)
	den := n*f.sumXX - f.sumX*f.sumX
	if f.n < minN || f.lastX-f.firstX < minSpan || den <= 0 {
		return 0, false
	}
	return (n*f.sumXY - f.sumX*f.sumY) / den, true
}

// pinger is one throttle connection.
type pinger struct {
	// Immutable after newThrottle.
	t       *throttle
	ident   *identityStats
	ping    []byte
	onFrame func(p []byte)

	// Owned by the pinger's goroutine.
	rp reply

	// Shared.
	conn atomic.Pointer[Conn]
}

// reply is what the pinger read from the last direct reply.
type reply struct {
	outcome      outcome
	retryAfterMs int64
	r, q         int64
	hasRL        bool
}

func newThrottle(cfg Config) *throttle {
	t := &throttle{
		cfg:             cfg,
		dialSem:         make(chan struct{}, cfg.DialConcurrency),
		connectFailures: map[string]int{},
		connectHist:     newLatencyHistogram(),
	}
	if cfg.Ramp > 0 {
		t.limiter = rate.NewLimiter(rate.Limit(cfg.Ramp), 1)
	}
	seconds := int((cfg.Duration + time.Second - 1) / time.Second)
	for k := range cfg.Identities {
		s := &identityStats{
			admittedBySecond: make([]int, seconds),
			refusedBySecond:  make([]int, seconds),
			closes:           map[string]int{},
			redialFailures:   map[string]int{},
		}
		switch {
		case len(cfg.APIKeys) > 0:
			s.key = cfg.APIKeys[k]
			prefix, _, _ := strings.Cut(s.key, "_")
			s.name = "key:" + prefix
		case len(cfg.SourceAddrs) > 0:
			s.addr = cfg.SourceAddrs[k%len(cfg.SourceAddrs)]
			s.name = "ip:" + s.addr.String()
		default:
			s.name = "ip:(default source)"
		}
		t.idents = append(t.idents, s)
	}
	for i := range cfg.Conns {
		s := t.idents[i%cfg.Identities]
		s.conns++
		pg := &pinger{t: t, ident: s, ping: []byte(pingRequest)}
		pg.onFrame = pg.parse
		t.pingers = append(t.pingers, pg)
	}
	for _, s := range t.idents {
		s.recent = make([]int64, max(minRecentPongs, 2*s.conns))
	}
	return t
}

// runThrottle runs the throttle scenario; cfg has its defaults.
func runThrottle(ctx context.Context, cfg Config) (Report, error) {
	began, cpu0 := time.Now(), selfCPU()
	t := newThrottle(cfg)
	stopProgress := t.startProgress()
	t.connectAll(ctx)

	t.measureFrom = time.Now().Add(cfg.Warmup)
	t.until = t.measureFrom.Add(cfg.Duration)
	pctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, pg := range t.pingers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pg.run(pctx)
		}()
	}
	timer := time.NewTimer(time.Until(t.until))
	select {
	case <-ctx.Done():
	case <-timer.C:
	}
	timer.Stop()
	end := time.Now()
	t.closing.Store(true)
	cancel()
	for _, pg := range t.pingers {
		if c := pg.conn.Load(); c != nil {
			_ = c.Close()
		}
	}
	wg.Wait()
	stopProgress()

	measured := min(max(end.Sub(t.measureFrom), 0), cfg.Duration)
	rep := t.report(measured)
	rep.GeneratorCPUS = (selfCPU() - cpu0).Seconds()
	rep.ElapsedS = time.Since(began).Seconds()
	return rep, ctx.Err()
}

// connectAll dials every connection once (Ramp per second at most) and
// waits for them; a failed one is redialled by its pinger.
func (t *throttle) connectAll(ctx context.Context) {
	var wg sync.WaitGroup
	for _, pg := range t.pingers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if t.limiter != nil && t.limiter.Wait(ctx) != nil {
				return
			}
			select {
			case t.dialSem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			t0 := time.Now()
			c, err := pg.dial(ctx)
			<-t.dialSem
			t.mu.Lock()
			defer t.mu.Unlock()
			if err != nil {
				t.failed++
				t.connectFailures[FailReason(err)]++
				return
			}
			t.ok++
			recordMicros(t.connectHist, time.Since(t0).Nanoseconds())
			pg.conn.Store(c)
		}()
	}
	wg.Wait()
}

func (pg *pinger) dial(ctx context.Context) (*Conn, error) {
	cfg := &pg.t.cfg
	dctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	return Dial(dctx, cfg.URL, DialOptions{APIKey: pg.ident.key, LocalAddr: pg.ident.addr, ReadBufferSize: throttleReadBuffer})
}

// run pings until ctx ends: one ping in flight, paced by interval, a pause
// after each refusal, a redial after a close.
func (pg *pinger) run(ctx context.Context) {
	t, s := pg.t, pg.ident
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	next := time.Now()
	for {
		if !sleepUntil(ctx, timer, next) {
			return
		}
		c := pg.conn.Load()
		if c == nil {
			var err error
			if c, err = pg.dial(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				s.count(func() { s.redialFailures[FailReason(err)]++ })
				next = time.Now().Add(redialPause)
				continue
			}
			s.count(func() { s.redials++ })
			pg.conn.Store(c)
			if t.closing.Load() {
				_ = c.Close()
				return
			}
		}
		sent := time.Now()
		err := c.WriteText(pg.ping)
		if err == nil {
			err = pg.readReply(c)
		}
		now := time.Now()
		if err != nil {
			_ = c.Close()
			pg.conn.Store(nil)
			if ctx.Err() != nil || t.closing.Load() {
				return
			}
			s.count(func() { s.closes[FailReason(err)]++ })
			next = now.Add(max(t.cfg.RefusalPause, redialPause))
			continue
		}
		s.record(sent, now, &pg.rp, t)
		if pg.rp.outcome == outAdmitted {
			t.admitted.Add(1)
			next = sent.Add(pg.interval())
			continue
		}
		t.refused.Add(1)
		next = now.Add(max(time.Duration(pg.rp.retryAfterMs)*time.Millisecond, t.cfg.RefusalPause))
	}
}

// sleepUntil waits for at or ctx; it reports false when ctx ended.
func sleepUntil(ctx context.Context, timer *time.Timer, at time.Time) bool {
	if ctx.Err() != nil {
		return false
	}
	d := time.Until(at)
	if d <= 0 {
		return true
	}
	timer.Reset(d)
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// readReply reads frames until the direct reply to the ping.
func (pg *pinger) readReply(c *Conn) error {
	for {
		pg.rp = reply{}
		if err := c.ReadMessage(pg.onFrame); err != nil {
			return err
		}
		if pg.rp.outcome != outNone {
			return nil
		}
	}
}

// parse reads a server frame into pg.rp; p is valid only during the call.
func (pg *pinger) parse(p []byte) {
	rp := &pg.rp
	switch classify(p) {
	case kindPong:
		rp.outcome = outAdmitted
	case kindError:
		switch {
		case !bytes.Contains(p, []byte(`"code":"RATE_LIMITED"`)):
			rp.outcome = outOther
		case bytes.Contains(p, []byte("connection message rate")):
			rp.outcome = outRefusedConn
		default:
			rp.outcome = outRefused
		}
		rp.retryAfterMs, _ = ExtractInt(p, `"retry_after_ms":`)
	default:
		return
	}
	if i := bytes.Index(p, []byte(`"rl":{`)); i >= 0 {
		rl := p[i:]
		rp.r, rp.hasRL = ExtractInt(rl, `"r":`)
		rp.q, _ = ExtractInt(rl, `"q":`)
	}
}

// interval is the pause between a ping and the next, when admitted.
func (pg *pinger) interval() time.Duration {
	r := pg.t.cfg.SendRate
	if r <= 0 {
		share := pg.t.configuredPerS(pg.ident) / float64(pg.ident.conns)
		r = min(max(share*autoSendFactor, minAutoSendRate), maxAutoSendRate)
	}
	pg.ident.count(func() { pg.ident.sendPerS = r })
	return time.Duration(float64(time.Second) / r)
}

// configuredPerS is the identity's configured credit rate per second:
// ExpectRate, else its last "q" over CreditWindow; 0 when unknown.
func (t *throttle) configuredPerS(s *identityStats) float64 {
	if t.cfg.ExpectRate > 0 {
		return t.cfg.ExpectRate / 60
	}
	return float64(s.quota.Load()) / t.cfg.CreditWindow.Seconds()
}

// count runs fn under the identity's lock.
func (s *identityStats) count(fn func()) {
	s.mu.Lock()
	fn()
	s.mu.Unlock()
}

// record counts a reply to a ping sent at sent and read at now, if it
// falls in the measurement.
func (s *identityStats) record(sent, now time.Time, rp *reply, t *throttle) {
	if rp.hasRL && rp.q > 0 {
		s.quota.Store(rp.q)
	}
	if now.Before(t.measureFrom) || !now.Before(t.until) {
		return
	}
	sec := min(int(now.Sub(t.measureFrom)/time.Second), len(s.admittedBySecond)-1)
	ns := now.UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	switch rp.outcome {
	case outAdmitted:
		s.admitted++
		s.admittedBySecond[sec]++
		s.pongAt(ns, t)
	case outRefused:
		s.refused++
		s.refusedBySecond[sec]++
		s.markAt(sent.UnixNano()+rp.retryAfterMs*int64(time.Millisecond), rp.retryAfterMs >= longRetryMs, t)
	case outRefusedConn:
		s.refusedConn++
		s.refusedBySecond[sec]++
	case outOther:
		s.otherErrors++
	}
	if rp.hasRL {
		s.rl.add(now.Sub(t.measureFrom).Seconds(), float64(s.admitted)+float64(rp.r))
	}
}

// pongAt counts a pong read at ns (UnixNano) before every pending mark
// after it, and settles the marks it is markSettle past.
func (s *identityStats) pongAt(ns int64, t *throttle) {
	if len(s.recent) == 0 {
		s.recent = make([]int64, minRecentPongs)
	}
	s.recent[s.recentN%len(s.recent)] = ns
	s.recentN++
	keep := s.pending[:0]
	for _, m := range s.pending {
		if ns < m.at {
			m.before++
		}
		if ns-m.at >= int64(markSettle) {
			s.settle(m, t)
			continue
		}
		keep = append(keep, m)
	}
	s.pending = keep
}

// markAt adds a refusal mark at (UnixNano) with the pongs read before it:
// every pong so far but the recent ones read at or after it. A mark
// outside the measurement is dropped: the pongs before it are not all
// counted, or none is.
func (s *identityStats) markAt(at int64, long bool, t *throttle) {
	if at < t.measureFrom.UnixNano() || at >= t.until.UnixNano() {
		return
	}
	m := markSample{at: at, before: s.admitted, long: long}
	for _, ns := range s.recent[:min(s.recentN, len(s.recent))] {
		if ns >= at {
			m.before--
		}
	}
	if len(s.pending) == maxPendingMarks {
		s.settle(s.pending[0], t)
		s.pending = append(s.pending[:0], s.pending[1:]...)
	}
	s.pending = append(s.pending, m)
}

// settle adds a mark to the fits.
func (s *identityStats) settle(m markSample, t *throttle) {
	addMark(&s.marks, &s.longMarks, m, t.measureFrom)
}

// addMark adds a mark to marks and, if its retry was long, to longMarks.
func addMark(marks, longMarks *fit, m markSample, measureFrom time.Time) {
	x, y := float64(m.at-measureFrom.UnixNano())/1e9, float64(m.before)
	marks.add(x, y)
	if m.long {
		longMarks.add(x, y)
	}
}

// admittedRate estimates the identity's admitted credit rate over a
// measurement of length measured from measureFrom, and names the method:
//
//   - "refusals": from the credit refusals. When a refusal says the next
//     credit comes (its mark: the refused ping's send time +
//     retry_after_ms) the identity has spent every credit it ever had, so
//     the pongs before a mark grow by exactly the credits refilled between
//     marks: the slope of a least-squares line through (mark, pongs read
//     before it), free of the burst the identity started with. A pong is
//     placed by the time its pinger read it, not by the order the pingers
//     count replies in: the replies to one identity's connections arrive
//     together and are counted in whatever order their goroutines run, so
//     "the pongs counted when the refusal is counted" can miss pongs the
//     broker admitted ahead of it (that put identities up to 9 % high).
//     A mark taken from the send time is never after the credit comes, so
//     a pong admitted after it is never read before it; a pong admitted
//     before the refusal is read after the mark only when its pinger was
//     descheduled for longer than retry_after_ms, so the fit uses the
//     marks with retry_after_ms >= longRetryMs when they suffice.
//   - "remaining": from the replies' "rl" fields when there were too few
//     refusals (the identity still spending its initial burst): pongs so
//     far plus "r" grows by exactly the credits refilled, as long as the
//     budget is not full; the slope of a least-squares line through these
//     points over time. (One sample is off by a credit when the replies of
//     two connections cross; the fit averages that out.)
//   - "count": pongs over the measurement, when neither is available.
//
// A span shorter than a quarter of the measurement is not used.
func (s *identityStats) admittedRate(measureFrom time.Time, measured time.Duration) (float64, string) {
	minSpan := max(measured/4, 1).Seconds()
	marks, longMarks := s.marks, s.longMarks
	end := measureFrom.Add(measured).UnixNano()
	for _, m := range s.pending {
		if m.at <= end {
			addMark(&marks, &longMarks, m, measureFrom)
		}
	}
	if r, ok := longMarks.slope(2, minSpan); ok {
		return r, "refusals"
	}
	if r, ok := marks.slope(2, minSpan); ok {
		return r, "refusals"
	}
	if r, ok := s.rl.slope(3, minSpan); ok {
		return r, "remaining"
	}
	if measured <= 0 {
		return 0, "count"
	}
	return float64(s.admitted) / measured.Seconds(), "count"
}
