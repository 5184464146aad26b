package node

import (
	"context"
	"net/netip"
	"sync"
	"time"

	"floodgate/auth"
	"floodgate/broker"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// eventFlushEvery is how often the writer looks for refusal events whose
// second is over (closes wake it at once).
const eventFlushEvery = 250 * time.Millisecond

// maxEventBatch bounds one store write (one bbolt transaction).
const maxEventBatch = 1024

// eventWriter records key connection events (a closed session, a refused
// upgrade) in the store from one goroutine (run), in batches: each store
// write (AppendEvents: one transaction) holds every event pending at the
// time, so the upgrade and close paths never wait for the store and a
// burst costs a few writes. Refusals are coalesced per key, code and
// second: the first of a second makes an event, the others add to its
// Count, and it is written once its second is over. A flood of refusals
// of one key is then one pending event per code and second, and cannot
// crowd out other keys' events. At most `max` events wait; what does not
// fit is dropped and counted (floodgate_key_events_dropped_total).
type eventWriter struct {
	// Immutable after newEventWriter.
	store   auth.Store
	nodeID  string
	log     zerolog.Logger
	max     int
	wake    chan struct{}
	dropped *prometheus.CounterVec // by reason: queue_full, store_error
	writes  prometheus.Counter

	// Guarded by mu.
	mu       sync.Mutex
	closes   []auth.PrefixEvent
	refusals []auth.PrefixEvent // coalesced, in order of their first refusal
	index    map[refusalKey]int // refusal -> its position in refusals
}

// refusalKey is what refusals are coalesced by.
type refusalKey struct {
	prefix, code string
	second       int64
}

func newEventWriter(store auth.Store, nodeID string, size int, log zerolog.Logger, reg prometheus.Registerer) *eventWriter {
	w := &eventWriter{store: store, nodeID: nodeID, log: log, max: size, wake: make(chan struct{}, 1),
		index: make(map[refusalKey]int),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "floodgate", Name: "key_events_dropped_total",
			Help: "Key connection events not recorded: queue_full (more than the event queue waiting), store_error (the write failed).",
		}, []string{"reason"}),
		writes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "floodgate", Name: "key_event_writes_total",
			Help: "Store writes of key connection events (one transaction per batch).",
		}),
	}
	w.dropped.WithLabelValues("queue_full")
	w.dropped.WithLabelValues("store_error")
	reg.MustRegister(w.dropped, w.writes)
	return w
}

// closed records a key session's end; it is the broker's OnClose. It never
// blocks.
func (w *eventWriter) closed(info broker.SessionInfo) {
	if info.Identity.KeyPrefix == "" {
		return
	}
	ev := auth.PrefixEvent{Prefix: info.Identity.KeyPrefix, Event: auth.Event{
		Time:        info.End,
		IP:          info.Identity.IP.String(),
		Node:        w.nodeID,
		DurationMS:  info.End.Sub(info.Start).Milliseconds(),
		MsgsIn:      info.MsgsIn,
		MsgsOut:     info.MsgsOut,
		CloseCode:   info.CloseCode,
		CloseReason: info.CloseReason.String(),
	}}
	w.mu.Lock()
	full := len(w.closes)+len(w.refusals) >= w.max
	if !full {
		w.closes = append(w.closes, ev)
	}
	w.mu.Unlock()
	if full {
		w.dropped.WithLabelValues("queue_full").Inc()
		return
	}
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// refusal records a refused upgrade of a key; anonymous refusals are not
// recorded. It never blocks.
func (w *eventWriter) refusal(prefix string, ip netip.Addr, now time.Time, code string) {
	if prefix == "" {
		return
	}
	k := refusalKey{prefix: prefix, code: code, second: now.Unix()}
	w.mu.Lock()
	defer w.mu.Unlock()
	if i, ok := w.index[k]; ok {
		w.refusals[i].Event.Count++
		return
	}
	if len(w.closes)+len(w.refusals) >= w.max {
		w.dropped.WithLabelValues("queue_full").Inc()
		return
	}
	w.index[k] = len(w.refusals)
	w.refusals = append(w.refusals, auth.PrefixEvent{Prefix: prefix, Event: auth.Event{
		Time: now, IP: ip.String(), Node: w.nodeID, Refusal: code, Count: 1,
	}})
}

// take removes and returns what is due at now: every close, and the
// refusals of the seconds before now's (all of them when final).
func (w *eventWriter) take(now time.Time, final bool) []auth.PrefixEvent {
	w.mu.Lock()
	defer w.mu.Unlock()
	batch := w.closes
	w.closes = nil
	sec := now.Unix()
	keep := w.refusals[:0:0]
	for _, r := range w.refusals {
		if final || r.Event.Time.Unix() < sec {
			batch = append(batch, r)
		} else {
			keep = append(keep, r)
		}
	}
	if len(keep) != len(w.refusals) {
		w.refusals = keep
		clear(w.index)
		for i, r := range keep {
			w.index[refusalKey{prefix: r.Prefix, code: r.Event.Refusal, second: r.Event.Time.Unix()}] = i
		}
	}
	return batch
}

// run writes events until ctx ends, then what is left (bounded by 5 s).
func (w *eventWriter) run(ctx context.Context) {
	tick := time.NewTicker(eventFlushEvery)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case <-w.wake:
		case <-ctx.Done():
			flush, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			w.write(flush, w.take(time.Now(), true))
			return
		}
		w.write(ctx, w.take(time.Now(), false))
	}
}

// write stores a batch, maxEventBatch events per transaction.
func (w *eventWriter) write(ctx context.Context, batch []auth.PrefixEvent) {
	for len(batch) > 0 {
		n := min(len(batch), maxEventBatch)
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		err := w.store.AppendEvents(wctx, batch[:n])
		cancel()
		w.writes.Inc()
		if err != nil {
			w.dropped.WithLabelValues("store_error").Add(float64(n))
			w.log.Warn().Err(err).Int("events", n).Msg("connection events not recorded")
		}
		batch = batch[n:]
	}
}
