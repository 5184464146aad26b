package loadtest

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/nats-io/nats.go"
	"golang.org/x/time/rate"
)

// Run drives one run of cfg.Scenario. Broadcast and fanout: it opens Config.Conns websocket
// connections to Config.URL, subscribes connection i to channel
// i mod Config.Channels and waits for every ack (or failure), publishes to
// NATS at Config.Rate for Config.Warmup + Config.Duration, waits up to
// Config.Drain for deliveries in flight, closes the connections and reports.
//
// Only messages published after the warm-up are counted, on both sides, by
// the "ts" they carry: expected deliveries are the measured messages
// published on each channel times the connections subscribed to it when
// publishing began; a connection the broker drops shows as loss.
//
// Storm (see storm.go) adds churned connections beside the steady
// population, which alone is counted in the deliveries; throttle (see
// throttle.go) publishes nothing and measures admitted pings.
//
// Run returns an error wrapping ErrConfig for a bad Config, or when NATS is
// unreachable; it returns the report so far and ctx.Err() when ctx ends
// early, and the report and the publish error if publishing failed.
func Run(ctx context.Context, cfg Config) (Report, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return Report{}, err
	}
	if cfg.Scenario == ScenarioThrottle {
		return runThrottle(ctx, cfg)
	}
	if cfg.Scenario == ScenarioHot {
		return runHot(ctx, cfg)
	}
	if cfg.Scenario == ScenarioResume {
		return runResume(ctx, cfg)
	}
	r := newRunner(cfg)
	nc, pub, err := r.connectPublisher()
	if err != nil {
		return Report{}, err
	}
	defer nc.Close()

	began, cpu0 := time.Now(), selfCPU()
	var m metricsSamples
	m.base, m.baseErr = r.sample(ctx)
	stopProgress := r.startProgress()

	sctx, cancelSessions := context.WithCancel(ctx)
	defer cancelSessions()
	r.connectAll(sctx)
	subs := r.subscribersPerChannel()
	m.connected, m.connectedErr = r.sample(ctx)

	measureFrom := time.Now().Add(cfg.Warmup)
	until := measureFrom.Add(cfg.Duration)
	r.measureFrom.Store(measureFrom.UnixNano())
	m.cpuStart, m.cpuStartErr = r.sample(ctx)
	stopChurn := func() {}
	if r.storm != nil {
		stopChurn = r.storm.start(sctx)
	}
	runErr := pub.Run(ctx, measureFrom, until)
	stopChurn()
	measureEnd := time.Now()
	if measureEnd.After(until) {
		measureEnd = until
	}

	var expected uint64
	for k, n := range pub.Measured() {
		expected += n * uint64(subs[k])
	}
	r.waitDelivered(ctx, expected, cfg.Drain)
	m.end, m.endErr = r.sample(ctx)

	r.closeAll()
	cancelSessions()
	r.wg.Wait()
	stopProgress()

	rep := r.report(expected, measureEnd.Sub(measureFrom), m)
	rep.GeneratorCPUS = (selfCPU() - cpu0).Seconds()
	rep.ElapsedS = time.Since(began).Seconds()
	return rep, runErr
}

// runner holds the state of one Run.
type runner struct {
	// Immutable after newRunner.
	cfg        Config
	subjects   []string
	subscribes [][]byte
	sessions   []*session
	dialSem    chan struct{}
	limiter    *rate.Limiter // nil without Config.Ramp
	latency    *latencyShards
	windows    []*latencyWindow // hot: samples by publish time; else nil
	pub        *Publisher
	storm      *storm // nil unless the storm scenario
	wg         sync.WaitGroup

	// Shared.
	measureFrom atomic.Int64 // unix ns; notMeasuring until publishing
	closing     atomic.Bool  // set before the runner closes the connections

	// Guarded by mu.
	mu          sync.Mutex
	connectHist *hdrhistogram.Histogram // µs
	disconnects map[string]int
}

func newRunner(cfg Config) *runner {
	r := &runner{
		cfg:         cfg,
		dialSem:     make(chan struct{}, cfg.DialConcurrency),
		latency:     newLatencyShards(16),
		connectHist: newLatencyHistogram(),
		disconnects: map[string]int{},
	}
	r.measureFrom.Store(notMeasuring)
	if cfg.Ramp > 0 && cfg.Scenario != ScenarioStorm {
		r.limiter = rate.NewLimiter(rate.Limit(cfg.Ramp), 1)
	}
	if cfg.Scenario == ScenarioStorm {
		r.storm = newStorm(r)
	}
	for k := range cfg.Channels {
		r.subjects = append(r.subjects, cfg.channelSubject(k))
		r.subscribes = append(r.subscribes, cfg.subscribeFrame(k))
	}
	for i := range cfg.baseConns() {
		ch := i % cfg.Channels
		r.sessions = append(r.sessions, newSession(r, i, ch, cfg.apiKey(i), r.subscribes[ch]))
	}
	return r
}

// connectPublisher connects to the NATS of r's config and gives r its
// publisher (the config's Rate, Size and Payload over r.subjects), which
// it also returns. The caller closes the connection.
func (r *runner) connectPublisher() (*nats.Conn, *Publisher, error) {
	nc, err := nats.Connect(r.cfg.NATSURL, nats.Name("floodgate-load"))
	if err != nil {
		return nil, nil, fmt.Errorf("loadtest: nats: %w", err)
	}
	pub, err := NewPublisher(PublisherOptions{Conn: nc, Subjects: r.subjects, Rate: r.cfg.Rate, Size: r.cfg.Size, Payload: r.cfg.Payload})
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	r.pub = pub
	return nc, pub, nil
}

// connectAll starts every session and waits until each is subscribed or
// failed (each settles within ConnectTimeout of its dial).
func (r *runner) connectAll(ctx context.Context) {
	for _, s := range r.sessions {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			s.start(ctx)
		}()
	}
	for _, s := range r.sessions {
		<-s.setup
	}
}

// gateDial waits for the ramp and a dial slot; releaseDial frees the slot.
func (r *runner) gateDial(ctx context.Context) error {
	if r.limiter != nil {
		if err := r.limiter.Wait(ctx); err != nil {
			return err
		}
	}
	select {
	case r.dialSem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *runner) releaseDial() { <-r.dialSem }

func (r *runner) sourceAddr(id int) netip.Addr {
	if len(r.cfg.SourceAddrs) == 0 {
		return netip.Addr{}
	}
	return r.cfg.SourceAddrs[id%len(r.cfg.SourceAddrs)]
}

// latencyWindow collects the samples of messages published in [from, to)
// (unix ns; the bounds move while sessions record).
type latencyWindow struct {
	from, to atomic.Int64
	shards   *latencyShards
}

// recordLatency files samples (with their publish times) into the run's
// histogram, or with windows, into the window of each sample's publish
// time (samples outside every window are dropped). 0 allocations.
func (r *runner) recordLatency(id int, sent, lat []int64) {
	if r.windows == nil {
		r.latency.record(id, lat)
		return
	}
	for i, ts := range sent {
		for _, win := range r.windows {
			if ts >= win.from.Load() && ts < win.to.Load() {
				win.shards.record(id, lat[i:i+1])
				break
			}
		}
	}
}

func (r *runner) recordConnect(d time.Duration) {
	r.mu.Lock()
	recordMicros(r.connectHist, d.Nanoseconds())
	r.mu.Unlock()
}

func (r *runner) recordDisconnect(reason string) {
	r.mu.Lock()
	r.disconnects[reason]++
	r.mu.Unlock()
}

// subscribersPerChannel counts the subscribed sessions of each channel.
func (r *runner) subscribersPerChannel() []int {
	subs := make([]int, r.cfg.Channels)
	for _, s := range r.sessions {
		if s.state.Load() == stateSubscribed {
			subs[s.ch]++
		}
	}
	return subs
}

// delivered sums the measured deliveries of subscribed sessions.
func (r *runner) delivered() uint64 {
	var n uint64
	for _, s := range r.sessions {
		if s.state.Load() == stateSubscribed {
			n += s.delivered.Load()
		}
	}
	return n
}

// waitDelivered polls until expected deliveries arrived, drain elapsed or
// ctx ended.
func (r *runner) waitDelivered(ctx context.Context, expected uint64, drain time.Duration) {
	deadline := time.NewTimer(drain)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for r.delivered() < expected {
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			return
		case <-tick.C:
		}
	}
}

// closeAll closes every connection; sessions then see their reads fail and
// return without counting a disconnect.
func (r *runner) closeAll() {
	r.closing.Store(true)
	for _, s := range r.sessions {
		if c := s.conn.Load(); c != nil {
			_ = c.Close()
		}
	}
}

// sample reads the broker's metrics, if Config.MetricsURL is set.
func (r *runner) sample(ctx context.Context) (brokerSample, error) {
	if r.cfg.MetricsURL == "" {
		return brokerSample{}, errNoMetrics
	}
	return sampleBroker(ctx, r.cfg.MetricsURL)
}
