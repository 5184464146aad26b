package loadtest

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// churnReadBuffer is the read buffer of a churned connection: it lives for
// about Hold and reads a few frames, larger ones are assembled.
const churnReadBuffer = 4 << 10

// StormReport is the churn side of a storm run (Report.Storm). The steady
// population's figures are the Report's own: connections_ok, delivered,
// loss_pct, latency.
type StormReport struct {
	Ramp            float64        `json:"ramp"`             // configured churn, new connections per second
	HoldS           float64        `json:"hold_s"`           // how long each churned connection stayed subscribed
	SteadyConns     int            `json:"steady_conns"`     // the steady population (--conns minus ⌈ramp × hold⌉)
	ChurnAttempts   int            `json:"churn_attempts"`   // churned connections that settled: ok + failed
	ChurnPerS       float64        `json:"churn_per_s"`      // attempts per second achieved
	ConnectsOK      int            `json:"connects_ok"`      // churned connections that got their subscribe ack
	ConnectsFailed  int            `json:"connects_failed"`  // refused upgrades, failed dials, refused subscriptions, timeouts
	ConnectFailures map[string]int `json:"connect_failures"` // by FailReason: "http 429 CONNECT_RATE", "subscribe RATE_LIMITED", ...
	ConnectP50Ms    float64        `json:"connect_p50_ms"`   // dial to completed upgrade
	ConnectP99Ms    float64        `json:"connect_p99_ms"`
	SubscribeP50Ms  float64        `json:"subscribe_p50_ms"` // dial to subscribe ack
	SubscribeP99Ms  float64        `json:"subscribe_p99_ms"`
	Received        uint64         `json:"received"`    // market frames the churned connections received
	Disconnects     map[string]int `json:"disconnects"` // churned connections the broker ended during their hold
}

// storm churns connections beside the runner's steady sessions: Ramp
// dials per second while publishing, each subscribing to a channel,
// receiving for Hold and closing. Churned connections take ids after the
// steady population's (source address, channel, key) and are not counted
// in the deliveries.
type storm struct {
	// Immutable after newStorm.
	run *runner

	// Shared.
	ok, failed atomic.Int64  // settled churned connections, for progress
	received   atomic.Uint64 // market frames received while held

	// Guarded by mu.
	mu            sync.Mutex
	failures      map[string]int
	disconnects   map[string]int
	connectHist   *hdrhistogram.Histogram // µs, dial to upgrade
	subscribeHist *hdrhistogram.Histogram // µs, dial to ack
	began, ended  time.Time
}

func newStorm(r *runner) *storm {
	return &storm{
		run:           r,
		failures:      map[string]int{},
		disconnects:   map[string]int{},
		connectHist:   newLatencyHistogram(),
		subscribeHist: newLatencyHistogram(),
	}
}

// start churns until stop is called (or ctx ends); stop closes the
// churned connections still open and waits for them.
func (s *storm) start(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	loopDone := make(chan struct{})
	began := time.Now()
	s.mu.Lock()
	s.began = began
	s.mu.Unlock()
	go func() {
		defer close(loopDone)
		rate := s.run.cfg.Ramp
		timer := time.NewTimer(0)
		defer timer.Stop()
		var n int64
		for {
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
			due := int64(rate*time.Since(began).Seconds()) + 1
			for ; n < due; n++ {
				wg.Add(1)
				go func(n int) {
					defer wg.Done()
					s.churn(ctx, n)
				}(int(n))
			}
			timer.Reset(time.Until(began.Add(time.Duration(float64(n) / rate * float64(time.Second)))))
		}
	}()
	return func() {
		cancel()
		<-loopDone
		wg.Wait()
		s.mu.Lock()
		s.ended = time.Now()
		s.mu.Unlock()
	}
}

// churn runs churned connection n: dial, subscribe, hold, close. A
// connection cut short by the end of the run is not counted.
func (s *storm) churn(ctx context.Context, n int) {
	r := s.run
	cfg := &r.cfg
	id := cfg.baseConns() + n
	ch := id % cfg.Channels
	t0 := time.Now()
	dctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	c, err := Dial(dctx, cfg.URL, DialOptions{APIKey: cfg.apiKey(id), LocalAddr: r.sourceAddr(id), ReadBufferSize: churnReadBuffer})
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			s.fail(FailReason(err))
		}
		return
	}
	connected := time.Since(t0)
	stopClose := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stopClose()
	defer c.Close()

	if err := c.WriteText(r.subscribes[ch]); err != nil {
		if ctx.Err() == nil {
			s.fail("subscribe " + FailReason(err))
		}
		return
	}
	_ = c.SetReadDeadline(t0.Add(cfg.ConnectTimeout))
	var kind frameKind
	var code string
	for kind != kindSubscribe {
		err = c.ReadMessage(func(p []byte) {
			kind = classify(p)
			if kind == kindError {
				code = extractString(p, `"code":`)
			}
		})
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			s.fail("subscribe " + FailReason(err))
			return
		case kind == kindError:
			s.fail("subscribe " + code)
			return
		}
	}
	s.settleOK(connected, time.Since(t0))

	_ = c.SetReadDeadline(time.Now().Add(cfg.Hold))
	var received uint64
	err = c.ReadLoop(func(p []byte) {
		if classify(p) == kindMarket {
			received++
		}
	})
	s.received.Add(received)
	var ne net.Error
	if ctx.Err() == nil && !(errors.As(err, &ne) && ne.Timeout()) {
		s.mu.Lock()
		s.disconnects[FailReason(err)]++
		s.mu.Unlock()
	}
}

func (s *storm) fail(reason string) {
	s.failed.Add(1)
	s.mu.Lock()
	s.failures[reason]++
	s.mu.Unlock()
}

func (s *storm) settleOK(connect, subscribe time.Duration) {
	s.ok.Add(1)
	s.mu.Lock()
	recordMicros(s.connectHist, connect.Nanoseconds())
	recordMicros(s.subscribeHist, subscribe.Nanoseconds())
	s.mu.Unlock()
}

// report summarises the churn after stop.
func (s *storm) report() *StormReport {
	cfg := s.run.cfg
	s.mu.Lock()
	defer s.mu.Unlock()
	rep := &StormReport{
		Ramp: cfg.Ramp, HoldS: cfg.Hold.Seconds(), SteadyConns: cfg.baseConns(),
		ConnectsOK: int(s.ok.Load()), ConnectsFailed: int(s.failed.Load()),
		ConnectFailures: map[string]int{}, Disconnects: map[string]int{},
		ConnectP50Ms:   microsToMs(s.connectHist.ValueAtQuantile(50)),
		ConnectP99Ms:   microsToMs(s.connectHist.ValueAtQuantile(99)),
		SubscribeP50Ms: microsToMs(s.subscribeHist.ValueAtQuantile(50)),
		SubscribeP99Ms: microsToMs(s.subscribeHist.ValueAtQuantile(99)),
		Received:       s.received.Load(),
	}
	rep.ChurnAttempts = rep.ConnectsOK + rep.ConnectsFailed
	if d := s.ended.Sub(s.began); d > 0 {
		rep.ChurnPerS = float64(rep.ChurnAttempts) / d.Seconds()
	}
	for k, v := range s.failures {
		rep.ConnectFailures[k] = v
	}
	for k, v := range s.disconnects {
		rep.Disconnects[k] = v
	}
	return rep
}
