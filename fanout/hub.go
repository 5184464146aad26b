package fanout

import (
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fastjson"
)

// ErrClosed is returned by Subscribe after Close.
var ErrClosed = errors.New("fanout: hub closed")

// Subscriber receives the frames of the channels it joined.
type Subscriber interface {
	// Deliver offers f to the subscriber. It must not block and must not
	// keep f's bytes beyond the frame's lifetime (frames are immutable and
	// garbage collected, so holding the pointer is fine). It returns false
	// when the subscriber dropped the frame (its queue is full, or it is
	// closing); the hub counts only accepted frames.
	Deliver(f *Frame) bool
}

// Options configures a Hub.
type Options struct {
	// Conn is the NATS connection the hub subscribes on. Required.
	Conn *nats.Conn
	// Shards is the number of registry shards, rounded up to a power of
	// two. Defaults to 64.
	Shards int
	// FlushTimeout bounds the round trip that makes a new channel's NATS
	// subscription effective before Subscribe returns. Defaults to 2s.
	FlushTimeout time.Duration
	// PendingMsgs and PendingBytes bound each channel's NATS buffer before
	// nats.go drops messages as a slow consumer. Default to 65536 messages
	// and 64 MiB.
	PendingMsgs, PendingBytes int
	// Registerer receives the hub's metrics. Defaults to none.
	Registerer prometheus.Registerer
}

// Hub is the channel registry of one node. Create it with NewHub; the zero
// value is not usable.
type Hub struct {
	// Immutable after NewHub.
	nc    *nats.Conn
	opts  Options
	seed  maphash.Seed
	mask  uint64
	m     *metrics
	shard []shard

	// Atomics.
	closed   atomic.Bool
	natsSubs atomic.Int64 // live NATS subscriptions
}

type shard struct {
	mu       sync.RWMutex
	channels map[string]*channel // guarded by mu
	_        [40]byte            // keep neighbouring shard locks off one cache line
}

// channel is one subject with at least one local subscriber.
type channel struct {
	// Immutable after creation.
	hub      *Hub
	shard    *shard
	subject  string
	envelope string

	// subs is the current subscriber set, replaced (copy on write) under
	// the shard's write lock and loaded under its read lock by the NATS
	// goroutine, which then walks it without a lock. The read lock orders
	// a load after any join in progress: see Subscribe.
	subs atomic.Pointer[[]Subscriber]

	// Guarded by the shard lock: subscribers plus joins in progress; the
	// channel is dropped when it reaches 0.
	count int

	// Guarded by natsMu: the NATS side of the channel.
	natsMu  sync.Mutex
	natsSub *nats.Subscription
	dead    bool
}

// NewHub returns a Hub subscribing on opts.Conn.
func NewHub(opts Options) (*Hub, error) {
	if opts.Conn == nil {
		return nil, errors.New("fanout: Options.Conn is required")
	}
	if opts.Shards <= 0 {
		opts.Shards = 64
	}
	n := 1
	for n < opts.Shards {
		n <<= 1
	}
	if opts.FlushTimeout <= 0 {
		opts.FlushTimeout = 2 * time.Second
	}
	if opts.PendingMsgs <= 0 {
		opts.PendingMsgs = 65536
	}
	if opts.PendingBytes <= 0 {
		opts.PendingBytes = 64 << 20
	}
	h := &Hub{nc: opts.Conn, opts: opts, seed: maphash.MakeSeed(), mask: uint64(n - 1), shard: make([]shard, n)}
	for i := range h.shard {
		h.shard[i].channels = make(map[string]*channel)
	}
	h.m = newMetrics(opts.Registerer, h)
	return h, nil
}

func (h *Hub) shardFor(subject string) *shard {
	return &h.shard[maphash.String(h.seed, subject)&h.mask]
}

// Subscribe adds s to the channel of subject, creating the channel and its
// NATS subscription when s is the first local subscriber. The NATS server
// has the subscription before s joins: a message published after Subscribe
// returns nil reaches s. joined, when non-nil, is called under the shard's
// write lock just before s joins (so it must be quick and must not call the
// hub): a session queues its subscribe ack there. Delivery loads the
// subscriber set under the read lock, so every frame queued to s comes
// after the ack, and every message published after the client could see
// the ack reaches s. joined is called at most once, and only when
// Subscribe returns nil. The caller must not subscribe s
// twice to one subject and must call Unsubscribe for every successful
// Subscribe.
func (h *Hub) Subscribe(src *Source, subject string, s Subscriber, joined func()) error {
	if h.closed.Load() {
		return ErrClosed
	}
	sh := h.shardFor(subject)
	sh.mu.Lock()
	if h.closed.Load() {
		sh.mu.Unlock()
		return ErrClosed
	}
	ch := sh.channels[subject]
	if ch == nil {
		ch = &channel{hub: h, shard: sh, subject: subject, envelope: src.envelope}
		empty := []Subscriber{}
		ch.subs.Store(&empty)
		sh.channels[subject] = ch
	}
	ch.count++ // reserves the channel while its NATS side is set up
	sh.mu.Unlock()

	err := ch.ensureNATS()

	sh.mu.Lock()
	if err != nil {
		ch.leaveUnlock()
		return err
	}
	if joined != nil {
		joined()
	}
	ch.addLocked(s)
	sh.mu.Unlock()
	return nil
}

// Unsubscribe removes s from the channel of subject. When s was the last
// local subscriber, the channel and its NATS subscription are dropped.
// Unsubscribing a subscriber that is not on the channel does nothing.
func (h *Hub) Unsubscribe(subject string, s Subscriber) {
	sh := h.shardFor(subject)
	sh.mu.Lock()
	ch := sh.channels[subject]
	if ch == nil || !ch.removeLocked(s) {
		sh.mu.Unlock()
		return
	}
	ch.leaveUnlock()
}

// leaveUnlock gives up one count of the channel (the shard lock is held),
// releases the lock and, when that was the last, drops the channel and its
// NATS subscription.
func (ch *channel) leaveUnlock() {
	sh := ch.shard
	ch.count--
	last := ch.count == 0
	if last {
		delete(sh.channels, ch.subject)
	}
	sh.mu.Unlock()
	if last {
		ch.dropNATS()
	}
}

// addLocked adds s; the shard lock is held.
func (ch *channel) addLocked(s Subscriber) {
	old := *ch.subs.Load()
	next := make([]Subscriber, len(old), len(old)+1)
	copy(next, old)
	next = append(next, s)
	ch.subs.Store(&next)
}

// removeLocked removes s and reports whether it was there; the shard lock
// is held.
func (ch *channel) removeLocked(s Subscriber) bool {
	old := *ch.subs.Load()
	for i, x := range old {
		if x == s {
			next := make([]Subscriber, 0, len(old)-1)
			next = append(next, old[:i]...)
			next = append(next, old[i+1:]...)
			ch.subs.Store(&next)
			return true
		}
	}
	return false
}

// ensureNATS subscribes the channel on NATS if it is not yet, and flushes
// so the server has the interest before the caller acknowledges.
func (ch *channel) ensureNATS() error {
	ch.natsMu.Lock()
	defer ch.natsMu.Unlock()
	if ch.dead {
		return ErrClosed // the hub closed while this subscribe ran
	}
	if ch.natsSub != nil {
		return nil
	}
	h := ch.hub
	sub, err := h.nc.Subscribe(ch.subject, ch.onMsg)
	if err != nil {
		return fmt.Errorf("fanout: subscribe %s: %w", ch.subject, err)
	}
	_ = sub.SetPendingLimits(h.opts.PendingMsgs, h.opts.PendingBytes)
	ch.natsSub = sub
	h.natsSubs.Add(1)
	h.m.natsSubs.Inc()
	if err := h.nc.FlushTimeout(h.opts.FlushTimeout); err != nil && !h.nc.IsReconnecting() {
		// While reconnecting nats.go resends the subscription on
		// reconnect; otherwise the interest may be missing.
		return fmt.Errorf("fanout: flush subscribe %s: %w", ch.subject, err)
	}
	return nil
}

func (ch *channel) dropNATS() {
	ch.natsMu.Lock()
	defer ch.natsMu.Unlock()
	ch.dead = true
	if ch.natsSub != nil {
		_ = ch.natsSub.Unsubscribe()
		ch.natsSub = nil
		ch.hub.natsSubs.Add(-1)
		ch.hub.m.natsSubs.Dec()
	}
}

// onMsg is the NATS handler of the channel: the hot path.
func (ch *channel) onMsg(msg *nats.Msg) {
	ch.deliver(msg.Data)
}

func (ch *channel) deliver(payload []byte) {
	m := ch.hub.m
	m.msgsIn.Inc()
	if len(payload) == 0 || fastjson.ValidateBytes(payload) != nil {
		m.invalid.Inc()
		return
	}
	f := newFrame(ch.envelope, payload)
	// The read lock is held for the whole walk: a subscriber leaving the
	// channel (write lock) then gets nothing of it after Unsubscribe
	// returns, and a joining one nothing before its ack. Deliver never
	// blocks, so the walk is short.
	ch.shard.mu.RLock()
	subs := *ch.subs.Load()
	accepted := 0
	for _, s := range subs {
		if s.Deliver(f) {
			accepted++
		}
	}
	ch.shard.mu.RUnlock()
	m.msgsOut.Add(float64(accepted))
}

// AsyncError counts a NATS asynchronous error of the hub's connection
// (wire it to nats.ErrorHandler): a slow-consumer error means nats.go
// dropped messages of a channel because its handler fell behind.
func (h *Hub) AsyncError(err error) {
	if errors.Is(err, nats.ErrSlowConsumer) {
		h.m.natsSlow.Inc()
	}
}

// Stats is a point-in-time view of the hub.
type Stats struct {
	// Channels is the number of channels with local subscribers.
	Channels int
	// NATSSubscriptions is the number of live NATS subscriptions.
	NATSSubscriptions int
	// Subscriptions is the number of (subscriber, channel) pairs.
	Subscriptions int
}

// Stats counts channels and subscriptions. It takes every shard's read
// lock in turn (never a channel's NATS lock, which a subscribe holds during
// a NATS round trip); it is meant for metrics and tests, not the hot path.
func (h *Hub) Stats() Stats {
	st := Stats{NATSSubscriptions: int(h.natsSubs.Load())}
	for i := range h.shard {
		sh := &h.shard[i]
		sh.mu.RLock()
		st.Channels += len(sh.channels)
		for _, ch := range sh.channels {
			st.Subscriptions += len(*ch.subs.Load())
		}
		sh.mu.RUnlock()
	}
	return st
}

// Close drops every channel and its NATS subscription. Subscribe fails with
// ErrClosed afterwards. The NATS connection is the caller's to close.
func (h *Hub) Close() {
	h.closed.Store(true)
	for i := range h.shard {
		sh := &h.shard[i]
		sh.mu.Lock()
		chans := make([]*channel, 0, len(sh.channels))
		for subj, ch := range sh.channels {
			chans = append(chans, ch)
			delete(sh.channels, subj)
		}
		sh.mu.Unlock()
		for _, ch := range chans {
			ch.dropNATS()
		}
	}
}
