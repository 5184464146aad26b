package node

import (
	"context"
	"sync"
	"time"

	"floodgate/auth"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Publishing of control events made through this node's API.
const (
	// notifyQueue bounds the events waiting to be published (about 100
	// bytes each). A full queue drops the event from NATS only: it is
	// applied here already, and the other nodes' key rechecks find it.
	notifyQueue = 4096
	// publishTimeout bounds one publish attempt (publish and the server's
	// flush acknowledgement).
	publishTimeout = time.Second
	// publishRetryMin and publishRetryMax bound the pause between two
	// attempts (doubling).
	publishRetryMin = 100 * time.Millisecond
	publishRetryMax = time.Second
	// drainTimeout bounds the last attempt, at shutdown, to publish what is
	// still queued.
	drainTimeout = time.Second
	// echoWindow is how long after publishing an event this node takes
	// the same event coming back from NATS for its own echo, and skips it
	// (it applied the event already; applying it again would drop the
	// key's cache entry, which a store outage may keep from coming back).
	echoWindow = 2 * time.Second
)

// notifier is the auth.Notifier of the node's REST API. A revoke,
// deactivation, expiry or limit change made through this node is applied
// to this node's sessions at once (control.apply), before the API answers
// and whether or not NATS works; the control event then goes to the other
// nodes in the background, in order, retried until NATS takes it. So the
// API never waits for NATS. What is not published yet shows in
// floodgate_control_events_unpublished.
type notifier struct {
	// Immutable after newNotifier.
	control   *control
	pub       *auth.NATSNotifier // nil: no NATS, apply locally only
	nc        *nats.Conn
	queue     chan auth.KeyEvent
	log       zerolog.Logger
	published prometheus.Counter
	failures  prometheus.Counter
	dropped   prometheus.Counter
	pending   prometheus.Gauge

	// Guarded by mu.
	mu     sync.Mutex
	echoes map[auth.KeyEvent][]time.Time // publish times of events whose echo has not come back
}

var _ auth.Notifier = (*notifier)(nil)

// newNotifier returns the notifier of c publishing on nc (nil: none) and
// registers its metrics on reg.
func newNotifier(c *control, nc *nats.Conn, log zerolog.Logger, reg prometheus.Registerer) *notifier {
	n := &notifier{
		control: c, nc: nc, queue: make(chan auth.KeyEvent, notifyQueue), log: log, echoes: make(map[auth.KeyEvent][]time.Time),
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "floodgate", Name: "control_events_published_total",
			Help: "Key control events made through this node's API and published on NATS.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "floodgate", Name: "control_publish_failures_total",
			Help: "Failed attempts to publish a key control event on NATS (each is retried).",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "floodgate", Name: "control_events_dropped_total",
			Help: "Key control events never published (queue full, or still queued at shutdown); other nodes apply them at their next key recheck.",
		}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "floodgate", Name: "control_events_unpublished",
			Help: "Key control events applied on this node and not yet published to the others.",
		}),
	}
	if nc != nil {
		n.pub = auth.NewNATSNotifier(nc)
	}
	reg.MustRegister(n.published, n.failures, n.dropped, n.pending)
	return n
}

// Notify applies ev to this node and queues it for NATS; it does not wait
// for NATS and never fails (a publish failure is retried, counted and
// logged).
func (n *notifier) Notify(_ context.Context, ev auth.KeyEvent) error {
	n.control.apply(ev)
	if n.pub == nil {
		return nil
	}
	select {
	case n.queue <- ev:
		n.pending.Inc()
	default:
		n.dropped.Inc()
		n.log.Error().Str("key_prefix", ev.Prefix).Str("event", string(ev.Type)).
			Msg("key event not published: the publish queue is full; other nodes apply it at their next key recheck")
	}
	return nil
}

// run publishes the queued events, one at a time and in order, until ctx
// ends; then it tries once more, within drainTimeout, to publish what is
// left.
func (n *notifier) run(ctx context.Context) {
	if n.pub == nil {
		return
	}
	for {
		select {
		case <-ctx.Done():
			n.drain()
			return
		case ev := <-n.queue:
			n.publish(ctx, ev)
			n.pending.Dec()
		}
	}
}

// publish sends ev, retrying with a doubling pause until NATS takes it or
// ctx ends (the event is then counted as dropped). While the connection is
// down it waits instead of publishing into the client's reconnect buffer.
func (n *notifier) publish(ctx context.Context, ev auth.KeyEvent) {
	wait := publishRetryMin
	for attempt := 1; ; attempt++ {
		var err error
		if !n.nc.IsConnected() {
			err = nats.ErrConnectionReconnecting
		} else {
			n.expectEcho(ev, time.Now()) // before: the echo may beat the flush
			pctx, cancel := context.WithTimeout(ctx, publishTimeout)
			err = n.pub.Notify(pctx, ev)
			cancel()
		}
		if err == nil {
			n.published.Inc()
			if attempt > 1 {
				n.log.Info().Str("key_prefix", ev.Prefix).Str("event", string(ev.Type)).Int("attempts", attempt).
					Msg("key event published after retries")
			}
			return
		}
		n.failures.Inc()
		if attempt == 1 {
			n.log.Warn().Err(err).Str("key_prefix", ev.Prefix).Str("event", string(ev.Type)).
				Msg("key event not published yet; applied on this node, retrying for the others")
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			n.dropped.Inc()
			return
		case <-t.C:
		}
		wait = min(2*wait, publishRetryMax)
	}
}

// expectEcho notes that ev is being published at now.
func (n *notifier) expectEcho(ev auth.KeyEvent, now time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.echoes) >= notifyQueue { // echoes lost (NATS cut us off): forget them
		clear(n.echoes)
	}
	n.echoes[ev] = append(n.echoes[ev], now)
}

// receive handles a control event from NATS at now: this node's own echo
// (the same event, published here within echoWindow) is skipped, anything
// else applied.
func (n *notifier) receive(ev auth.KeyEvent, now time.Time) {
	if n.ownEcho(ev, now) {
		return
	}
	n.control.apply(ev)
}

func (n *notifier) ownEcho(ev auth.KeyEvent, now time.Time) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	ts := n.echoes[ev]
	for len(ts) > 0 && now.Sub(ts[0]) > echoWindow {
		ts = ts[1:] // its echo never came
	}
	if len(ts) == 0 {
		delete(n.echoes, ev)
		return false
	}
	if len(ts) == 1 {
		delete(n.echoes, ev)
	} else {
		n.echoes[ev] = ts[1:]
	}
	return true
}

// drain makes one bounded attempt to publish every event still queued.
func (n *notifier) drain() {
	ctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	for {
		select {
		case ev := <-n.queue:
			n.pending.Dec()
			if ctx.Err() != nil || !n.nc.IsConnected() || n.pub.Notify(ctx, ev) != nil {
				n.dropped.Inc()
				continue
			}
			n.published.Inc()
		default:
			return
		}
	}
}
