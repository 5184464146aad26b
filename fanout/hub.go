package fanout

import (
	"context"
	"errors"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
)

// Errors of Subscribe.
var (
	// ErrClosed is returned by Subscribe after Close.
	ErrClosed = errors.New("fanout: hub closed")
	// ErrChannelLimit: the subscribe would open a channel beyond
	// Options.MaxChannels. Nothing was subscribed on NATS.
	ErrChannelLimit = errors.New("fanout: node channel limit reached")
	// ErrOwnerChannelLimit: the subscriber's owner (its identity) already
	// opened Options.MaxChannelsPerOwner channels that are still open.
	ErrOwnerChannelLimit = errors.New("fanout: channel limit of this identity reached")
)

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
	// Dispatchers is the number of goroutines that deliver NATS messages;
	// a channel is served by the one its subject hashes to, so its frames
	// stay in publish order, and a channel costs no goroutine of its own.
	// Defaults to 8.
	Dispatchers int
	// DispatchQueue bounds each dispatcher's queue of NATS messages; when
	// it is full nats.go drops messages as a slow consumer (counted in
	// floodgate_fanout_nats_slow_consumer_total). Defaults to 32768.
	DispatchQueue int
	// MaxChannels is the most channels the node holds at once; a subscribe
	// that would open one more fails with ErrChannelLimit. Defaults to
	// 10,000.
	MaxChannels int
	// MaxChannelsPerOwner is the most open channels one owner (identity)
	// may have opened; beyond, ErrOwnerChannelLimit. Defaults to 10 % of
	// MaxChannels (at least 1).
	MaxChannelsPerOwner int
	// Compression configures the deflate of frames for subscribers that
	// negotiated permessage-deflate. Defaults to level 1, frames of 256
	// bytes and more.
	Compression CompressionOptions
	// Router says which NATS subject feeds a channel (see Route). Defaults
	// to the channel's own subject, unsequenced; with History, the
	// history's router.
	Router Router
	// History, when set, gives the channels of sources with history their
	// sequence numbers, snapshots and replays (JetStream; see History).
	// Defaults to none: every channel is live-only.
	History *History
	// Registerer receives the hub's metrics. Defaults to none.
	Registerer prometheus.Registerer
}

// Route is where a channel's messages come from on NATS.
type Route struct {
	// Subject is the NATS subject subscribed for the channel.
	Subject string
	// Sequenced is true when the messages carry the JetStream republish
	// headers Nats-Sequence and Nats-Last-Sequence; the channel's frames
	// then carry "seq" and "prev".
	Sequenced bool
}

// Router maps a channel (its source and subject) to its Route.
type Router func(src *Source, subject string) Route

// RawRoute is the default Router: the channel's own subject, no sequence.
func RawRoute(_ *Source, subject string) Route { return Route{Subject: subject} }

// Hub is the channel registry of one node. Create it with NewHub; the zero
// value is not usable.
type Hub struct {
	// Immutable after NewHub.
	nc     *nats.Conn
	opts   Options
	seed   maphash.Seed
	mask   uint64
	m      *metrics
	shard  []shard
	disp   []*dispatcher
	confl  [numIntervals]*conflator // nil at Live
	stop   chan struct{}
	wg     sync.WaitGroup // dispatchers and conflators
	router atomic.Pointer[Router]

	// Atomics.
	closed   atomic.Bool
	natsSubs atomic.Int64 // live NATS subscriptions

	// Guarded by capMu: open channels, in total and by owner, and the caps
	// (reloadable).
	capMu       sync.Mutex
	open        int
	owned       map[string]int
	maxChannels int
	maxPerOwner int
}

type shard struct {
	mu       sync.Mutex
	channels map[string]*channel // guarded by mu
	_        [48]byte            // keep neighbouring shard locks off one cache line
}

// NewHub returns a Hub subscribing on opts.Conn and starts its dispatcher
// and conflator goroutines; Close stops them.
func NewHub(opts Options) (*Hub, error) {
	if opts.Conn == nil {
		return nil, errors.New("fanout: Options.Conn is required")
	}
	if err := opts.Compression.setDefaults(); err != nil {
		return nil, err
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
	if opts.Dispatchers <= 0 {
		opts.Dispatchers = 8
	}
	if opts.DispatchQueue <= 0 {
		opts.DispatchQueue = 32768
	}
	if opts.MaxChannels <= 0 {
		opts.MaxChannels = 10000
	}
	if opts.MaxChannelsPerOwner <= 0 {
		opts.MaxChannelsPerOwner = max(opts.MaxChannels/10, 1)
	}
	if opts.History != nil {
		opts.Router = opts.History.route
	}
	if opts.Router == nil {
		opts.Router = RawRoute
	}
	h := &Hub{nc: opts.Conn, opts: opts, seed: maphash.MakeSeed(), mask: uint64(n - 1), shard: make([]shard, n),
		stop: make(chan struct{}), owned: make(map[string]int), maxChannels: opts.MaxChannels, maxPerOwner: opts.MaxChannelsPerOwner}
	h.router.Store(&opts.Router)
	for i := range h.shard {
		h.shard[i].channels = make(map[string]*channel)
	}
	h.m = newMetrics(opts.Registerer, h)
	for range opts.Dispatchers {
		d := &dispatcher{hub: h, msgs: make(chan *nats.Msg, opts.DispatchQueue), routes: make(map[*nats.Subscription]*channel),
			comp: newCompressor(opts.Compression)}
		h.disp = append(h.disp, d)
		h.wg.Add(1)
		go d.run()
	}
	for iv := Live + 1; iv < numIntervals; iv++ {
		c := &conflator{hub: h, every: iv.Duration(), wake: make(chan struct{}, 1), comp: newCompressor(opts.Compression)}
		h.confl[iv] = c
		h.wg.Add(1)
		go c.run()
	}
	if opts.History != nil {
		opts.History.attach(h)
	}
	return h, nil
}

func (h *Hub) hash(subject string) uint64 { return maphash.String(h.seed, subject) }

// Join describes one subscription.
type Join struct {
	// Source is the channel's source. Required.
	Source *Source
	// Subject is the channel's subject (Channel.Subject). Required.
	Subject string
	// Owner is the identity charged when this subscribe opens a new
	// channel (MaxChannelsPerOwner); "" is charged to nobody.
	Owner string
	// Interval conflates the channel for this subscriber: at most one
	// frame per interval, the latest. Live (the default) gets every frame.
	Interval Interval
	// Compressed is true when the subscriber negotiated permessage-deflate:
	// it is offered frames with Frame.Deflated set when they are large
	// enough.
	Compressed bool
	// Snapshot asks for the channel's latest message as a snapshot frame
	// in JoinInfo (for a conflated subscriber: its group's latest frame).
	Snapshot bool
	// Joined, when non-nil, is called under the channel's lock as the
	// subscriber joins, before any frame is offered to it (a session
	// queues its subscribe ack, and the snapshot, there). It must be quick
	// and must not call the hub.
	Joined func(JoinInfo)
}

// JoinInfo is the channel's state at the moment a subscriber joined.
type JoinInfo struct {
	// Sequenced is true when the channel's frames carry "seq" and "prev"
	// (its source has history and the history is available).
	Sequenced bool
	// Seq is the seq of the channel's latest message at the join (0 when
	// none, or not Sequenced): the "prev" of the first live frame the
	// subscriber gets unless it missed one. For a conflated subscriber it
	// is the seq of its group's latest frame.
	Seq uint64
	// Epoch identifies the history stream the seq values belong to (its
	// creation time in unix microseconds); 0 when not Sequenced.
	Epoch int64
	// Snapshot is the snapshot frame of Join.Snapshot: the latest message
	// marked "snapshot":true (with "seq" when Sequenced); nil when the
	// channel has no message yet or it was not asked for.
	Snapshot *Frame
}

// Subscription is one subscriber on one channel, the handle Unsubscribe
// takes.
type Subscription struct {
	// Immutable after Subscribe.
	ch         *channel
	s          Subscriber
	iv         Interval
	compressed bool

	// Guarded by ch.mu.
	idx  int // position in its member set
	gone bool
}

// Subject returns the channel's subject.
func (sub *Subscription) Subject() string { return sub.ch.subject }

// Subscribe adds s to the channel of j.Subject, creating the channel and
// its NATS subscription when s is its first local subscriber (checking the
// channel caps first: ErrChannelLimit, ErrOwnerChannelLimit). The NATS
// server has the subscription before s joins: a message published after
// Subscribe returns reaches s (at its Interval). j.Joined is called at most
// once, and only when Subscribe succeeds. The caller must not subscribe s
// twice to one subject and must Unsubscribe every returned Subscription.
// Joining costs O(1) whatever the channel's size.
func (h *Hub) Subscribe(s Subscriber, j Join) (*Subscription, error) {
	if h.closed.Load() {
		return nil, ErrClosed
	}
	hv := h.hash(j.Subject)
	sh := &h.shard[hv&h.mask]
	sh.mu.Lock()
	if h.closed.Load() {
		sh.mu.Unlock()
		return nil, ErrClosed
	}
	ch := sh.channels[j.Subject]
	if ch == nil {
		if err := h.reserve(j.Owner); err != nil {
			sh.mu.Unlock()
			return nil, err
		}
		ch = &channel{hub: h, shard: sh, subject: j.Subject, src: j.Source, envelope: j.Source.envelope, owner: j.Owner,
			disp: h.disp[(hv>>32)%uint64(len(h.disp))]}
		sh.channels[j.Subject] = ch
	}
	ch.refs++ // reserves the channel while its NATS side is set up
	sh.mu.Unlock()

	if err := ch.ensureNATS(); err != nil {
		ch.release()
		return nil, err
	}
	sub := &Subscription{ch: ch, s: s, iv: j.Interval, compressed: j.Compressed}
	ch.mu.Lock()
	// Nothing is offered to sub before the lock is released, so Joined
	// still precedes every frame.
	ch.addLocked(sub)
	if j.Joined != nil {
		j.Joined(ch.joinInfoLocked(sub, j.Snapshot))
	}
	ch.mu.Unlock()
	return sub, nil
}

// HasHistory reports whether channels of src have history on this hub:
// the hub runs a History and the source keeps its messages there. It says
// nothing of the history's current availability (JoinInfo.Sequenced).
func (h *Hub) HasHistory(src *Source) bool { return h.opts.History != nil && src.History }

// Replay reads the retained messages of sub's channel after since, for a
// subscriber that joined with info (see History for the bounds, the
// deadlines and the node-wide limit). admit is called with the number of
// messages before any is read; an error from it aborts the replay and is
// returned as is. A channel whose history is unavailable gets an
// unrecovered result and no error.
func (h *Hub) Replay(ctx context.Context, sub *Subscription, since uint64, info JoinInfo, admit func(n int) error) (ReplayResult, error) {
	ch := sub.ch
	if !h.HasHistory(ch.src) {
		return ReplayResult{}, ErrNoHistory
	}
	return h.opts.History.replay(ctx, ch, since, info, admit)
}

// Unsubscribe removes the subscription from its channel; once it returns,
// nothing more is offered to its subscriber from that channel. When it was
// the last local subscriber, the channel and its NATS subscription are
// dropped. A second call does nothing. O(1) whatever the channel's size.
func (h *Hub) Unsubscribe(sub *Subscription) {
	ch := sub.ch
	ch.mu.Lock()
	if sub.gone {
		ch.mu.Unlock()
		return
	}
	ch.removeLocked(sub)
	ch.mu.Unlock()
	ch.release()
}

// reserve counts one more open channel for owner, or refuses; the shard
// lock is held.
func (h *Hub) reserve(owner string) error {
	h.capMu.Lock()
	defer h.capMu.Unlock()
	if owner != "" && h.owned[owner] >= h.maxPerOwner {
		h.m.channelRefusals[1].Inc()
		return ErrOwnerChannelLimit
	}
	if h.open >= h.maxChannels {
		h.m.channelRefusals[0].Inc()
		return ErrChannelLimit
	}
	h.open++
	if owner != "" {
		h.owned[owner]++
	}
	return nil
}

func (h *Hub) unreserve(owner string) {
	h.capMu.Lock()
	defer h.capMu.Unlock()
	h.open--
	if owner != "" {
		if h.owned[owner]--; h.owned[owner] <= 0 {
			delete(h.owned, owner)
		}
	}
}

// AsyncError counts a NATS asynchronous error of the hub's connection
// (wire it to nats.ErrorHandler): a slow-consumer error means nats.go
// dropped messages because a dispatcher fell behind.
func (h *Hub) AsyncError(err error) {
	if errors.Is(err, nats.ErrSlowConsumer) {
		h.m.natsSlow.Inc()
	}
}

// Reroute replaces the Router and moves every live channel to its new
// Route (for example from the raw subject to JetStream's republished one
// and back): the new NATS subscription is made effective first, then the
// channel delivers from it only and the old one is dropped. Subscribers
// stay; messages published during the switch may be missed once (a
// sequenced client sees it as a prev that does not match).
func (h *Hub) Reroute(r Router) error {
	h.router.Store(&r)
	var first error
	for _, ch := range h.channels() {
		if err := ch.reroute(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// forgetHistory clears every channel's latest message and recent frames
// and has it looked up again at the next join: the history's stream was
// made again (its seq values restarted).
func (h *Hub) forgetHistory() {
	for _, ch := range h.channels() {
		ch.mu.Lock()
		ch.last = message{}
		ch.lastGen++
		ch.dropTailLocked()
		for _, g := range ch.groups {
			if g != nil {
				g.lastSeq, g.sent = 0, message{}
				g.sentGen++
			}
		}
		ch.mu.Unlock()
		ch.natsMu.Lock()
		ch.seeded = false
		ch.natsMu.Unlock()
	}
}

// channels returns the open channels.
func (h *Hub) channels() []*channel {
	var chans []*channel
	for i := range h.shard {
		sh := &h.shard[i]
		sh.mu.Lock()
		for _, ch := range sh.channels {
			chans = append(chans, ch)
		}
		sh.mu.Unlock()
	}
	return chans
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

// Stats counts channels and subscriptions, taking every shard's lock and
// every channel's lock in turn; it is meant for metrics and tests, not the
// hot path.
func (h *Hub) Stats() Stats {
	st := Stats{NATSSubscriptions: int(h.natsSubs.Load())}
	var chans []*channel
	for i := range h.shard {
		sh := &h.shard[i]
		sh.mu.Lock()
		st.Channels += len(sh.channels)
		for _, ch := range sh.channels {
			chans = append(chans, ch)
		}
		sh.mu.Unlock()
	}
	for _, ch := range chans {
		ch.mu.Lock()
		st.Subscriptions += ch.members
		ch.mu.Unlock()
	}
	return st
}

// Close drops every channel and its NATS subscription and stops the
// dispatchers and conflators. Subscribe fails with ErrClosed afterwards.
// The NATS connection is the caller's to close.
func (h *Hub) Close() {
	if h.closed.Swap(true) {
		return
	}
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
			ch.mu.Lock()
			ch.dropTailLocked()
			ch.mu.Unlock()
		}
	}
	close(h.stop)
	h.wg.Wait()
}

// SetMaxChannels changes MaxChannels (and MaxChannelsPerOwner to 10 % of
// it) on a live hub, for a config reload: open channels beyond a lowered
// cap stay, new ones are refused until the count is below it.
func (h *Hub) SetMaxChannels(n int) {
	if n <= 0 {
		return
	}
	h.capMu.Lock()
	defer h.capMu.Unlock()
	h.maxChannels, h.maxPerOwner = n, max(n/10, 1)
}

// openChannels is the number of open channels (cap reservations).
func (h *Hub) openChannels() int {
	h.capMu.Lock()
	defer h.capMu.Unlock()
	return h.open
}
