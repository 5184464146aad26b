package loadtest

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// ResumeReport is the resume scenario's outcome (Report.Resume): Conns
// clients read one busy channel, all disconnect, stay away for Away while
// it goes on publishing, then all reconnect at once with "since" (the seq
// of the last frame each received) and must get exactly what they missed,
// then live frames.
type ResumeReport struct {
	Conns int     `json:"conns"`
	AwayS float64 `json:"away_s"`
	// Missed is how many messages were published while the clients were
	// away (from the first close to the last reconnect's ack).
	Missed uint64 `json:"missed"`
	// Resumed counts the resubscribes acked; Failures the others, by
	// reason ("subscribe RATE_LIMITED", "timeout", ...). Retries counts
	// resubscribes refused with RATE_LIMITED and sent again after their
	// retry_after_ms (the node runs at most 64 replays at a time).
	Resumed  int            `json:"resumed"`
	Retries  int            `json:"retries"`
	Failed   int            `json:"failed"`
	Failures map[string]int `json:"failures"`
	// Recovered and NotRecovered count the acks' "recovered".
	Recovered    int `json:"recovered"`
	NotRecovered int `json:"not_recovered"`
	// Replayed is the frames received after a resume up to the ack's seq
	// (the replay); LiveFrames those after it.
	Replayed   uint64 `json:"replayed"`
	LiveFrames uint64 `json:"live_frames"`
	// Gaps counts frames whose prev was not the seq of the frame the
	// client received before (across the disconnect: since); Duplicates
	// frames whose seq was not above it. Both must be 0.
	Gaps       uint64 `json:"gaps"`
	Duplicates uint64 `json:"duplicates"`
	// Lost is the messages a resumed client never received: the ones
	// published after its since, up to the last, that it lacks at the end.
	Lost uint64 `json:"lost"`
	// Time from the reconnect storm's start until a client is live (it
	// received a frame past its ack's seq: the replay is behind it), over
	// the resumed clients; LastLiveS is the slowest.
	LiveP50Ms float64 `json:"live_p50_ms"`
	LiveP99Ms float64 `json:"live_p99_ms"`
	LastLiveS float64 `json:"last_live_s"`
	// Broker CPU seconds and heap bytes allocated from the storm's start
	// until the last client was live (0 without Config.MetricsURL).
	StormCPUS       float64 `json:"storm_cpu_s"`
	StormAllocBytes float64 `json:"storm_alloc_bytes"`
}

// resumeDefaults fills in and checks a resume config: one channel, Rate
// 100 msgs/s, Away 2 s.
func (c Config) resumeDefaults() (Config, error) {
	c.commonDefaults()
	c.publishingDefaults()
	c.Channels = 1
	if c.Rate <= 0 {
		c.Rate = 100
	}
	if c.Duration <= 0 {
		c.Duration = 3 * time.Second
	}
	if c.Warmup <= 0 {
		c.Warmup = 2 * time.Second
	}
	if c.Away <= 0 {
		c.Away = 2 * time.Second
	}
	if err := c.checkPublishing(); err != nil {
		return c, err
	}
	if c.Protocol != ProtocolFloodgate {
		return c, fmt.Errorf("%w: the resume scenario speaks the floodgate protocol only", ErrConfig)
	}
	if len(c.SourceAddrs) == 0 {
		c.SourceAddrs = autoSourceAddrs(c.URL, 2*c.Conns) // the first connections' ports wait in TIME_WAIT
	}
	return c, nil
}

// resumer is one client of the resume scenario. Its fields are written by
// its reading goroutine and read once that goroutine is done.
type resumer struct {
	id       int
	last     uint64       // seq of the last market frame received
	lastData atomic.Int64 // the publisher's seq in it (read by caughtUp)
	gaps     uint64
	dups     uint64
	// The resume.
	retries   int
	ackSeq    uint64
	recovered bool
	live      time.Time // first frame past ackSeq
	replayed  uint64
	liveN     uint64
	fail      string
}

// frame checks one market frame against the client's chain.
func (c *resumer) frame(p []byte) {
	seq, prev, ok := seqPrevOf(p)
	if !ok {
		c.gaps++ // a frame without seq: the history was unavailable
		return
	}
	switch {
	case c.last != 0 && seq <= c.last:
		c.dups++
		return
	case c.last != 0 && prev != c.last:
		c.gaps++
	}
	c.last = seq
	if v, ok := ExtractInt(p, `"seq":`); ok { // the first "seq" is the publisher's, in data
		c.lastData.Store(v)
	}
}

// seqPrevOf reads the history fields a broker appends after a market
// frame's data: `,"seq":<n>,"prev":<m>}`.
func seqPrevOf(p []byte) (seq, prev uint64, ok bool) {
	i := bytes.LastIndex(p, []byte(`,"seq":`))
	if i < 0 {
		return 0, 0, false
	}
	s, ok1 := ExtractInt(p[i:], `"seq":`)
	v, ok2 := ExtractInt(p[i:], `"prev":`)
	if !ok1 || !ok2 {
		return 0, 0, false
	}
	return uint64(s), uint64(v), true
}

// runResume runs the resume scenario.
func runResume(ctx context.Context, cfg Config) (Report, error) {
	r := newRunner(cfg)
	nc, pub, err := r.connectPublisher()
	if err != nil {
		return Report{}, err
	}
	defer nc.Close()
	began, cpu0 := time.Now(), selfCPU()
	res := &ResumeReport{Conns: cfg.Conns, AwayS: cfg.Away.Seconds(), Failures: map[string]int{}}
	rep := Report{Scenario: cfg.Scenario, URL: cfg.URL, Conns: cfg.Conns, Channels: 1, Rate: cfg.Rate, Size: cfg.Size,
		DurationS: cfg.Duration.Seconds(), WarmupS: cfg.Warmup.Seconds(), Resume: res,
		ConnectFailures: map[string]int{}, Disconnects: map[string]int{}}

	pctx, stopPub := context.WithCancel(ctx)
	defer stopPub()
	pubDone := make(chan error, 1)
	start := time.Now()
	go func() { pubDone <- pub.Run(pctx, start, start.Add(24*time.Hour)) }()
	stopPublisher := sync.OnceValue(func() error {
		stopPub()
		if err := <-pubDone; err != nil && err != context.Canceled {
			return err
		}
		return nil
	})
	finish := func(runErr error) (Report, error) {
		if err := stopPublisher(); err != nil && runErr == nil {
			runErr = err
		}
		rep.Published = pub.Total()
		rep.GeneratorCPUS = (selfCPU() - cpu0).Seconds()
		rep.ElapsedS = time.Since(began).Seconds()
		return rep, runErr
	}
	sleep := func(d time.Duration) bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(d):
			return true
		}
	}

	// 1. Everyone subscribes and reads the channel for the warm-up.
	clients := make([]*resumer, cfg.Conns)
	conns := make([]atomic.Pointer[Conn], cfg.Conns)
	var wg sync.WaitGroup
	var acked sync.WaitGroup
	acked.Add(cfg.Conns)
	for i := range clients {
		clients[i] = &resumer{id: i}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.resumeSession(ctx, clients[i], r.subscribes[0], &conns[i], &acked, nil)
		}()
	}
	acked.Wait()
	for _, c := range clients {
		if c.fail != "" {
			rep.ConnectionsFailed++
			rep.ConnectFailures[c.fail]++
		} else {
			rep.ConnectionsOK++
		}
	}
	if !sleep(cfg.Warmup) {
		return finish(ctx.Err())
	}

	// 2. Everyone disconnects and stays away.
	totalAtClose := pub.Total()
	closeAll := func() {
		for i := range conns {
			if c := conns[i].Swap(nil); c != nil {
				_ = c.Close()
			}
		}
	}
	closeAll()
	wg.Wait()
	if !sleep(cfg.Away) {
		return finish(ctx.Err())
	}

	// 3. The reconnect storm: everyone at once, with since.
	m0, m0err := r.sample(ctx)
	storm := time.Now()
	var liveWG sync.WaitGroup
	acked.Add(cfg.Conns)
	liveWG.Add(cfg.Conns)
	for i, c := range clients {
		wasFailed := c.fail != ""
		c.fail = ""
		if wasFailed || c.last == 0 {
			c.fail = "nothing received before the disconnect"
			acked.Done()
			liveWG.Done()
			continue
		}
		sub := fmt.Appendf(nil, `{"method":"subscribe","params":{"source":%q,"symbol":%q,"since":%d}}`, cfg.Source, channelSymbol(0), c.last)
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.resumeSession(ctx, c, sub, &conns[i], &acked, &liveWG)
		}()
	}
	acked.Wait()
	res.Missed = pub.Total() - totalAtClose
	waitTimeout(&liveWG, cfg.ConnectTimeout)
	m1, m1err := r.sample(ctx)
	if m0err == nil && m1err == nil {
		res.StormCPUS = m1.cpuSeconds - m0.cpuSeconds
		res.StormAllocBytes = m1.allocBytes - m0.allocBytes
	}

	// 4. Live for Duration, then the publisher stops and the clients
	// drain what is in flight.
	if !sleep(cfg.Duration) {
		return finish(ctx.Err())
	}
	if err := stopPublisher(); err != nil {
		return finish(err)
	}
	final := int64(pub.Total())
	deadline := time.Now().Add(cfg.Drain)
	for time.Now().Before(deadline) && !caughtUp(clients, final) {
		time.Sleep(10 * time.Millisecond)
	}
	closeAll()
	wg.Wait()

	var lives []time.Duration
	for _, c := range clients {
		if c.fail != "" {
			res.Failed++
			res.Failures[c.fail]++
			continue
		}
		res.Resumed++
		res.Retries += c.retries
		if c.recovered {
			res.Recovered++
		} else {
			res.NotRecovered++
		}
		res.Replayed += c.replayed
		res.LiveFrames += c.liveN
		res.Gaps += c.gaps
		res.Duplicates += c.dups
		if got := c.lastData.Load(); got < final {
			res.Lost += uint64(final - got)
		}
		if !c.live.IsZero() {
			lives = append(lives, c.live.Sub(storm))
		}
	}
	if len(lives) > 0 {
		slices.Sort(lives)
		res.LiveP50Ms = float64(lives[len(lives)/2]) / float64(time.Millisecond)
		res.LiveP99Ms = float64(lives[min(len(lives)*99/100, len(lives)-1)]) / float64(time.Millisecond)
		res.LastLiveS = lives[len(lives)-1].Seconds()
	}
	rep.Delivered = res.Replayed + res.LiveFrames
	return finish(nil)
}

// caughtUp reports whether every resumed client has the publisher's last
// message (the channel's only one).
func caughtUp(clients []*resumer, final int64) bool {
	for _, c := range clients {
		if c.fail == "" && c.lastData.Load() < final {
			return false
		}
	}
	return true
}

// resumeSession dials one client (stored in slot), sends sub and reads
// until the connection ends, checking every market frame's seq/prev
// against what the client received before (c.last). A subscribe refused
// with RATE_LIMITED is sent again after its retry_after_ms, as a client
// should, until ConnectTimeout. acked is done at the subscribe's answer;
// live, when set (a resume), once a frame past the ack's seq came.
func (r *runner) resumeSession(ctx context.Context, c *resumer, sub []byte, slot *atomic.Pointer[Conn], acked, live *sync.WaitGroup) {
	cfg := &r.cfg
	var once, liveOnce sync.Once
	settle := func(reason string) {
		once.Do(func() {
			if reason != "" {
				c.fail = reason
				if live != nil {
					liveOnce.Do(live.Done)
				}
			}
			acked.Done()
		})
	}
	if err := r.gateDial(ctx); err != nil {
		settle(FailReason(err))
		return
	}
	dctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	conn, err := Dial(dctx, cfg.URL, DialOptions{APIKey: cfg.apiKey(c.id), LocalAddr: r.sourceAddr(c.id),
		ReadBufferSize: churnReadBuffer, Deflate: cfg.deflate(c.id)})
	cancel()
	r.releaseDial()
	if err != nil {
		settle(FailReason(err))
		return
	}
	slot.Store(conn)
	if err := conn.WriteText(sub); err != nil {
		settle("subscribe " + FailReason(err))
		_ = conn.Close()
		return
	}
	giveUp := time.Now().Add(cfg.ConnectTimeout)
	_ = conn.SetReadDeadline(giveUp)
	acking := true
	err = conn.ReadLoop(func(p []byte) {
		switch classify(p) {
		case kindSubscribe:
			if v, ok := ExtractInt(p, `"seq":`); ok {
				c.ackSeq = uint64(v)
			}
			c.recovered = bytes.Contains(p, []byte(`"recovered":true`))
			acking = false
			_ = conn.SetReadDeadline(time.Time{})
			settle("")
		case kindError:
			if !acking {
				return
			}
			code := extractString(p, `"code":`)
			retry, _ := ExtractInt(p, `"retry_after_ms":`)
			if code == "RATE_LIMITED" && time.Now().Add(time.Duration(retry)*time.Millisecond).Before(giveUp) {
				c.retries++
				time.AfterFunc(time.Duration(retry)*time.Millisecond, func() { _ = conn.WriteText(sub) })
				return
			}
			settle("subscribe " + code)
			_ = conn.Close()
		case kindPing:
			_ = conn.WriteText(pong)
		case kindMarket:
			c.frame(p)
			if live == nil {
				return
			}
			if c.last <= c.ackSeq {
				c.replayed++
				return
			}
			c.liveN++
			liveOnce.Do(func() {
				c.live = time.Now()
				live.Done()
			})
		}
	})
	if acking {
		settle("subscribe " + FailReason(err))
	}
}
