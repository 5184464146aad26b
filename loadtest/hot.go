package loadtest

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// HotReport is the hot scenario's outcome (Report.Hot): Conns joiners
// join one streaming channel as fast as DialConcurrency allows, hold it for
// Hold, then all leave it, while SteadyConns connections on a second
// channel measure delivery latency before and during the storm.
type HotReport struct {
	Joiners      int            `json:"joiners"`
	SteadyConns  int            `json:"steady_conns"`
	JoinedOK     int            `json:"joined_ok"`
	JoinFailed   int            `json:"join_failed"`
	JoinFailures map[string]int `json:"join_failures"`
	// JoinS is the first dial to the last subscribe ack; LeaveS the first
	// unsubscribe sent to the last unsubscribe ack.
	JoinS   float64 `json:"join_s"`
	LeftOK  int     `json:"left_ok"`
	LeaveS  float64 `json:"leave_s"`
	JoinsPS float64 `json:"joins_per_s"`
	// Broker CPU seconds and heap bytes allocated during the join storm
	// and during the leave (from process_cpu_seconds_total and
	// go_memstats_alloc_bytes_total; 0 without Config.MetricsURL).
	StormCPUS       float64 `json:"storm_cpu_s"`
	StormAllocBytes float64 `json:"storm_alloc_bytes"`
	LeaveCPUS       float64 `json:"leave_cpu_s"`
	LeaveAllocBytes float64 `json:"leave_alloc_bytes"`
	HotReceived     uint64  `json:"hot_received"` // market frames the joiners received
	// With Config.Snapshot: joiners whose first frame after the ack was a
	// snapshot, and the time from the ack to it.
	Snapshots        int            `json:"snapshots"`
	SnapshotAfterAck LatencySummary `json:"snapshot_after_ack"`
	// Steady channel delivery latency of messages published before the
	// storm (a Duration-long window after the warm-up) and during it.
	SteadyBefore LatencySummary `json:"steady_before"`
	SteadyDuring LatencySummary `json:"steady_during"`
}

// LatencySummary is a few percentiles of a latency window.
type LatencySummary struct {
	Samples int64   `json:"samples"`
	P50Ms   float64 `json:"p50_ms"`
	P99Ms   float64 `json:"p99_ms"`
	MaxMs   float64 `json:"max_ms"`
}

func summarize(l *latencyShards) LatencySummary {
	h := l.merged()
	return LatencySummary{Samples: h.TotalCount(), P50Ms: microsToMs(h.ValueAtQuantile(50)),
		P99Ms: microsToMs(h.ValueAtQuantile(99)), MaxMs: microsToMs(h.Max())}
}

// hotDefaults fills in and checks a hot config: Conns joiners, two
// channels (0 the hot one, 1 the steady one), Rate over both.
func (c Config) hotDefaults() (Config, error) {
	c.commonDefaults()
	c.publishingDefaults()
	if c.SteadyConns <= 0 {
		c.SteadyConns = 100
	}
	c.Channels = 2
	if c.Rate <= 0 {
		c.Rate = 20
	}
	if c.Duration <= 0 {
		c.Duration = 5 * time.Second
	}
	if c.Hold <= 0 {
		c.Hold = time.Second
	}
	c.Warmup = max(c.Warmup, 0)
	if err := c.checkPublishing(); err != nil {
		return c, err
	}
	if c.Protocol != ProtocolFloodgate && c.Protocol != ProtocolCentrifugo {
		return c, fmt.Errorf("%w: unknown protocol %q", ErrConfig, c.Protocol)
	}
	if len(c.SourceAddrs) == 0 {
		c.SourceAddrs = autoSourceAddrs(c.URL, c.Conns+c.SteadyConns)
	}
	return c, nil
}

// joiner is one connection of the hot storm.
type joiner struct {
	c        *Conn
	joined   atomic.Bool // its subscribe ack arrived
	received atomic.Uint64
	// Written by its reading goroutine, read after it ended.
	ackAt    time.Time
	snapshot time.Duration // ack to the snapshot frame; 0: none came first
}

// runHot runs the hot scenario.
func runHot(ctx context.Context, cfg Config) (Report, error) {
	steadyCfg := cfg
	steadyCfg.Conns = cfg.SteadyConns
	r := newRunner(steadyCfg)
	for i, s := range r.sessions { // every steady connection on channel 1
		r.sessions[i] = newSession(r, s.id, 1, s.apiKey, r.subscribes[1])
	}
	before, during := &latencyWindow{shards: newLatencyShards(16)}, &latencyWindow{shards: newLatencyShards(16)}
	r.windows = []*latencyWindow{before, during}
	nc, pub, err := r.connectPublisher()
	if err != nil {
		return Report{}, err
	}
	defer nc.Close()
	began, cpu0 := time.Now(), selfCPU()
	stopProgress := r.startProgress()
	sctx, cancelSessions := context.WithCancel(ctx)
	defer cancelSessions()
	r.connectAll(sctx)

	pctx, stopPub := context.WithCancel(ctx)
	pubDone := make(chan error, 1)
	start := time.Now()
	r.measureFrom.Store(start.UnixNano())
	go func() { pubDone <- pub.Run(pctx, start, start.Add(24*time.Hour)) }()
	stopPublisher := func() error {
		stopPub()
		if err := <-pubDone; err != nil && err != context.Canceled {
			return err
		}
		return nil
	}
	sleep := func(d time.Duration) bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(d):
			return true
		}
	}
	hot := &HotReport{Joiners: cfg.Conns, SteadyConns: cfg.SteadyConns, JoinFailures: map[string]int{}}
	rep := Report{Scenario: cfg.Scenario, URL: cfg.URL, Conns: cfg.Conns, Channels: 2, Rate: cfg.Rate, Size: cfg.Size,
		DurationS: cfg.Duration.Seconds(), WarmupS: cfg.Warmup.Seconds(), Hot: hot,
		ConnectFailures: map[string]int{}, Disconnects: map[string]int{}}
	finish := func(runErr error) (Report, error) {
		if err := stopPublisher(); err != nil && runErr == nil {
			runErr = err
		}
		r.closeAll()
		cancelSessions()
		r.wg.Wait()
		stopProgress()
		hot.SteadyBefore, hot.SteadyDuring = summarize(before.shards), summarize(during.shards)
		for _, s := range r.sessions {
			if s.state.Load() == stateSubscribed {
				rep.ConnectionsOK++
				rep.Delivered += s.delivered.Load()
			} else {
				rep.ConnectionsFailed++
				rep.ConnectFailures[s.failReason]++
			}
		}
		r.mu.Lock()
		for k, v := range r.disconnects {
			rep.Disconnects[k] = v
		}
		r.mu.Unlock()
		rep.GeneratorCPUS = (selfCPU() - cpu0).Seconds()
		rep.ElapsedS = time.Since(began).Seconds()
		return rep, runErr
	}

	// Warm-up, then the steady channel's baseline window.
	if !sleep(cfg.Warmup) {
		return finish(ctx.Err())
	}
	t := time.Now().UnixNano()
	before.from.Store(t)
	before.to.Store(t + int64(cfg.Duration))
	if !sleep(cfg.Duration) {
		return finish(ctx.Err())
	}

	// The join storm.
	m0, m0err := r.sample(ctx)
	stormStart := time.Now()
	during.from.Store(stormStart.UnixNano())
	during.to.Store(1<<63 - 1)
	joiners := make([]*joiner, cfg.Conns)
	var (
		joinWG, leaveWG, readWG sync.WaitGroup
		mu                      sync.Mutex
		lastJoin, lastLeave     time.Time
		left                    atomic.Int64
	)
	unsub := cfg.unsubscribeFrame(0)
	joinWG.Add(cfg.Conns)
	for i := range joiners {
		readWG.Add(1)
		go func() {
			defer readWG.Done()
			if reason := r.join(sctx, cfg.SteadyConns+i, &joiners[i], &joinWG, &leaveWG, &mu, &lastJoin, &lastLeave, &left); reason != "" {
				mu.Lock()
				hot.JoinFailed++
				hot.JoinFailures[reason]++
				mu.Unlock()
			}
		}()
	}
	joinWG.Wait()
	mu.Lock()
	joinEnd := lastJoin
	mu.Unlock()
	if joinEnd.IsZero() {
		joinEnd = time.Now()
	}
	during.to.Store(joinEnd.UnixNano())
	hot.JoinS = joinEnd.Sub(stormStart).Seconds()
	hot.JoinedOK = cfg.Conns - hot.JoinFailed
	if hot.JoinS > 0 {
		hot.JoinsPS = float64(hot.JoinedOK) / hot.JoinS
	}
	m1, m1err := r.sample(ctx)
	if m0err == nil && m1err == nil {
		hot.StormCPUS = m1.cpuSeconds - m0.cpuSeconds
		hot.StormAllocBytes = m1.allocBytes - m0.allocBytes
	}
	sleep(cfg.Hold)

	// Everyone leaves.
	m2, m2err := r.sample(ctx)
	leaveStart := time.Now()
	var conns []*Conn
	mu.Lock()
	for _, j := range joiners {
		if j != nil && j.joined.Load() {
			conns = append(conns, j.c)
		}
	}
	mu.Unlock()
	leaveWG.Add(len(conns))
	for _, c := range conns {
		if c.WriteText(unsub) != nil {
			leaveWG.Done()
		}
	}
	waitTimeout(&leaveWG, cfg.ConnectTimeout)
	mu.Lock()
	if !lastLeave.IsZero() {
		hot.LeaveS = lastLeave.Sub(leaveStart).Seconds()
	}
	mu.Unlock()
	hot.LeftOK = int(left.Load())
	m3, m3err := r.sample(ctx)
	if m2err == nil && m3err == nil {
		hot.LeaveCPUS = m3.cpuSeconds - m2.cpuSeconds
		hot.LeaveAllocBytes = m3.allocBytes - m2.allocBytes
	}
	mu.Lock()
	for _, j := range joiners {
		if j != nil {
			_ = j.c.Close()
		}
	}
	mu.Unlock()
	readWG.Wait()
	snaps := newLatencyShards(1)
	var lat []int64
	for _, j := range joiners {
		if j != nil {
			hot.HotReceived += j.received.Load()
			if j.snapshot > 0 {
				hot.Snapshots++
				lat = append(lat, j.snapshot.Nanoseconds())
			}
		}
	}
	if len(lat) > 0 {
		snaps.record(0, lat)
		hot.SnapshotAfterAck = summarize(snaps)
	}
	return finish(nil)
}

// join dials joiner id (stored in *slot under mu once dialed), subscribes
// it to the hot channel and reads until the connection closes: joinWG is
// done at its ack (or failure), leaveWG at its unsubscribe ack. It returns
// the failure reason, "" once joined.
func (r *runner) join(ctx context.Context, id int, slot **joiner, joinWG, leaveWG *sync.WaitGroup, mu *sync.Mutex,
	lastJoin, lastLeave *time.Time, left *atomic.Int64) string {
	cfg := &r.cfg
	var settled atomic.Bool
	fail := func(reason string) string {
		if settled.CompareAndSwap(false, true) {
			joinWG.Done()
		}
		return reason
	}
	if err := r.gateDial(ctx); err != nil {
		return fail(FailReason(err))
	}
	dctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	c, err := Dial(dctx, cfg.URL, DialOptions{APIKey: cfg.apiKey(id), LocalAddr: r.sourceAddr(id),
		ReadBufferSize: churnReadBuffer, Deflate: cfg.deflate(id)})
	cancel()
	r.releaseDial()
	if err != nil {
		return fail(FailReason(err))
	}
	j := &joiner{c: c}
	mu.Lock()
	*slot = j
	mu.Unlock()
	sub := r.subscribes[0]
	if cfg.Snapshot {
		sub = append(bytes.TrimSuffix(bytes.TrimSuffix(sub, []byte("}")), []byte("}")), `,"snapshot":true}}`...)
	}
	if err := c.WriteText(sub); err != nil {
		_ = c.Close()
		return fail("subscribe " + FailReason(err))
	}
	_ = c.SetReadDeadline(time.Now().Add(cfg.ConnectTimeout))
	var code string
	handle := func(p []byte) {
		switch classifyFor(cfg.Protocol, p) {
		case kindMarket:
			if j.received.Add(1) == 1 && cfg.Snapshot && bytes.HasSuffix(p, []byte(`"snapshot":true}`)) {
				j.snapshot = max(time.Since(j.ackAt), time.Microsecond)
			}
		case kindPing:
			_ = c.WriteText(pong)
		case kindSubscribe:
			if settled.CompareAndSwap(false, true) {
				j.ackAt = time.Now()
				_ = c.SetReadDeadline(time.Time{})
				j.joined.Store(true)
				mu.Lock()
				*lastJoin = time.Now()
				mu.Unlock()
				joinWG.Done()
			}
		case kindUnsubscribe:
			mu.Lock()
			*lastLeave = time.Now()
			mu.Unlock()
			left.Add(1)
			leaveWG.Done()
		case kindError:
			if !settled.Load() {
				code = extractString(p, `"code":`)
				_ = c.Close()
			}
		}
	}
	err = c.ReadLoop(func(frame []byte) {
		for len(frame) > 0 {
			p := frame
			frame = nil
			if cfg.Protocol == ProtocolCentrifugo { // one message per line
				if i := bytes.IndexByte(p, '\n'); i >= 0 {
					p, frame = p[:i], p[i+1:]
				}
			}
			handle(p)
		}
	})
	if !j.joined.Load() {
		_ = c.Close()
		if code != "" {
			return fail("subscribe " + code)
		}
		return fail("subscribe " + FailReason(err))
	}
	return ""
}

// waitTimeout waits for wg at most d.
func waitTimeout(wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
}
