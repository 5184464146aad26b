package node

import (
	"context"
	"net/netip"
	"sync/atomic"
	"time"

	"floodgate/auth"
	"floodgate/broker"

	"github.com/rs/zerolog"
)

// eventWriter records key connection events (a closed session, a refused
// upgrade) in the store from one goroutine (run), so the upgrade and close
// paths never wait for the store. The queue is bounded; what does not fit
// is dropped and logged.
type eventWriter struct {
	// Immutable after newEventWriter.
	store  auth.Store
	nodeID string
	log    zerolog.Logger
	queue  chan keyEvent

	// Atomics.
	dropped atomic.Int64 // dropped since the last report
}

type keyEvent struct {
	prefix string
	ev     auth.Event
}

func newEventWriter(store auth.Store, nodeID string, size int, log zerolog.Logger) *eventWriter {
	return &eventWriter{store: store, nodeID: nodeID, log: log, queue: make(chan keyEvent, size)}
}

// closed records a key session's end; it is the broker's OnClose. It never
// blocks.
func (w *eventWriter) closed(info broker.SessionInfo) {
	if info.Identity.KeyPrefix == "" {
		return
	}
	w.enqueue(info.Identity.KeyPrefix, auth.Event{
		Time:        info.End,
		IP:          info.Identity.IP.String(),
		Node:        w.nodeID,
		DurationMS:  info.End.Sub(info.Start).Milliseconds(),
		MsgsIn:      info.MsgsIn,
		MsgsOut:     info.MsgsOut,
		CloseCode:   info.CloseCode,
		CloseReason: info.CloseReason.String(),
	})
}

// refusal records a refused upgrade of a key; anonymous refusals are not
// recorded.
func (w *eventWriter) refusal(prefix string, ip netip.Addr, now time.Time, code string) {
	if prefix == "" {
		return
	}
	w.enqueue(prefix, auth.Event{Time: now, IP: ip.String(), Node: w.nodeID, Refusal: code})
}

func (w *eventWriter) enqueue(prefix string, ev auth.Event) {
	select {
	case w.queue <- keyEvent{prefix, ev}:
	default:
		w.dropped.Add(1) // reported by run, once a second at most
	}
}

// run writes queued events until ctx ends, then what is left (bounded by
// 5 s).
func (w *eventWriter) run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			if n := w.dropped.Swap(0); n > 0 {
				w.log.Warn().Int64("dropped", n).Msg("connection events dropped: queue full")
			}
		case e := <-w.queue:
			w.write(context.Background(), e)
		case <-ctx.Done():
			flush, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			for {
				select {
				case e := <-w.queue:
					w.write(flush, e)
				default:
					return
				}
			}
		}
	}
}

func (w *eventWriter) write(ctx context.Context, e keyEvent) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := w.store.AppendEvent(ctx, e.prefix, e.ev); err != nil {
		w.log.Warn().Err(err).Str("key_prefix", e.prefix).Msg("connection event not recorded")
	}
}
