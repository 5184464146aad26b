package fanout

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/valyala/fastjson"
)

// channel is one subject with at least one local subscriber (or a
// subscribe in progress).
type channel struct {
	// Immutable after creation.
	hub      *Hub
	shard    *shard
	disp     *dispatcher
	subject  string
	src      *Source
	envelope string
	owner    string // charged for opening the channel

	// Guarded by shard.mu: subscriptions plus subscribes in progress; the
	// channel is dropped when it reaches 0.
	refs int

	// Guarded by mu: the subscribers. Delivery walks a set under mu, so a
	// join (ack first) or a leave (nothing after it) is ordered with every
	// walk; joins and leaves are O(1): append, and swap-remove through the
	// Subscription's index.
	mu      sync.Mutex
	live    memberSet
	groups  [numIntervals]*group // conflated subscribers by interval; nil when none
	members int
	// The channel's latest message (payload nil: none yet), what a join's
	// ack seq and snapshot are made of; lastGen counts messages, the key
	// of the cached snapshot frame.
	last    message
	lastGen uint64
	snap    snapCache
	tail    *recent // recent frames for replays; nil unless replays used it lately (recent.go)

	// cur is the NATS subscription the channel delivers from (the others
	// are being dropped by a reroute). Written under natsMu.
	cur atomic.Pointer[nats.Subscription]

	// Guarded by natsMu: the NATS side.
	natsMu    sync.Mutex
	natsSub   *nats.Subscription
	route     Route
	dead      bool
	seeded    bool        // last was looked up in the history since the route became sequenced
	seedRetry time.Time   // a failed lookup is retried after this
	sequenced atomic.Bool // the current route carries seq/prev headers
}

// snapCache is a snapshot frame built once for a message generation and
// shared by every subscriber that asks for it until the next message.
type snapCache struct {
	f       *Frame
	gen     uint64
	withSeq bool
}

// get returns the snapshot frame of m (generation gen), building it when
// the cache holds another one.
func (c *snapCache) get(envelope string, m *message, gen uint64, withSeq bool) *Frame {
	if c.f == nil || c.gen != gen || c.withSeq != withSeq {
		sm := message{payload: m.payload, recv: m.recv, snapshot: true}
		if withSeq {
			sm.seq = m.seq
		}
		c.f, c.gen, c.withSeq = buildFrame(envelope, &sm, nil, false), gen, withSeq
	}
	return c.f
}

// memberSet is an index-based set of subscriptions: the walk reads subs (a
// dense slice of interfaces, no indirection through the handles), and a
// handle's idx makes removal a swap with the last element.
type memberSet struct {
	subs       []Subscriber
	handles    []*Subscription
	compressed int // members that negotiated deflate
}

func (s *memberSet) add(sub *Subscription) {
	sub.idx = len(s.subs)
	s.subs = append(s.subs, sub.s)
	s.handles = append(s.handles, sub)
	if sub.compressed {
		s.compressed++
	}
}

func (s *memberSet) remove(sub *Subscription) {
	i, last := sub.idx, len(s.subs)-1
	if i != last {
		s.subs[i] = s.subs[last]
		s.handles[i] = s.handles[last]
		s.handles[i].idx = i
	}
	s.subs[last] = nil
	s.handles[last] = nil
	s.subs = s.subs[:last]
	s.handles = s.handles[:last]
	if sub.compressed {
		s.compressed--
	}
	// Give memory back when the set shrank to a quarter of its capacity
	// (amortised O(1): a copy of n elements after at least 3n removals).
	if c := cap(s.subs); c > 64 && last < c/4 {
		s.subs = append(make([]Subscriber, 0, c/2), s.subs...)
		s.handles = append(make([]*Subscription, 0, c/2), s.handles...)
	}
}

// walk offers f to every member and returns how many accepted it.
func (s *memberSet) walk(f *Frame) int {
	n := 0
	for _, sub := range s.subs {
		if sub.Deliver(f) {
			n++
		}
	}
	return n
}

// addLocked adds sub to the live set or its interval's group; mu is held.
func (ch *channel) addLocked(sub *Subscription) {
	ch.members++
	if sub.iv == Live {
		ch.live.add(sub)
		return
	}
	g := ch.groups[sub.iv]
	if g == nil {
		// A new group starts from the channel's latest message: its
		// first frame's prev is the ack's seq, its snapshot the latest.
		g = &group{ch: ch, iv: sub.iv, lastSeq: ch.last.seq, sent: ch.last, sentGen: 1}
		ch.groups[sub.iv] = g
	}
	g.set.add(sub)
}

// joinInfoLocked is the channel's state for sub, which just joined; mu is
// held.
func (ch *channel) joinInfoLocked(sub *Subscription, snapshot bool) JoinInfo {
	info := JoinInfo{Sequenced: ch.sequenced.Load()}
	m, gen, cache, seq := &ch.last, ch.lastGen, &ch.snap, ch.last.seq
	if sub.iv != Live {
		g := ch.groups[sub.iv]
		m, gen, cache, seq = &g.sent, g.sentGen, &g.snap, g.lastSeq
	}
	if info.Sequenced {
		info.Seq = seq
		info.Epoch = ch.hub.opts.History.Epoch()
	}
	if snapshot && m.payload != nil {
		info.Snapshot = cache.get(ch.envelope, m, gen, info.Sequenced)
	}
	return info
}

// removeLocked removes sub; mu is held.
func (ch *channel) removeLocked(sub *Subscription) {
	sub.gone = true
	ch.members--
	if sub.iv == Live {
		ch.live.remove(sub)
		return
	}
	g := ch.groups[sub.iv]
	g.set.remove(sub)
	if len(g.set.subs) == 0 {
		g.gone = true // a conflator holding it skips it
		ch.groups[sub.iv] = nil
	}
}

// release gives up one reference; the last one drops the channel, its cap
// reservation and its NATS subscription.
func (ch *channel) release() {
	sh := ch.shard
	sh.mu.Lock()
	ch.refs--
	last := ch.refs == 0
	if last && sh.channels[ch.subject] == ch {
		delete(sh.channels, ch.subject)
	}
	sh.mu.Unlock()
	if last {
		ch.hub.unreserve(ch.owner)
		ch.dropNATS()
		ch.mu.Lock()
		ch.dropTailLocked()
		ch.mu.Unlock()
	}
}

// dropTailLocked drops the channel's recent tail, if any; mu is held.
func (ch *channel) dropTailLocked() {
	if ch.tail != nil {
		ch.tail = nil
		ch.hub.opts.History.tails.Add(-1)
	}
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
		ch.seedLocked()
		return nil
	}
	h := ch.hub
	route := (*h.router.Load())(ch.src, ch.subject)
	sub, err := ch.disp.subscribe(route.Subject, ch)
	if err != nil {
		return fmt.Errorf("fanout: subscribe %s: %w", route.Subject, err)
	}
	ch.natsSub, ch.route = sub, route
	ch.sequenced.Store(route.Sequenced)
	ch.cur.Store(sub)
	h.natsSubs.Add(1)
	h.m.natsSubs.Inc()
	if err := h.nc.FlushTimeout(h.opts.FlushTimeout); err != nil && !h.nc.IsReconnecting() {
		// While reconnecting nats.go resends the subscription on
		// reconnect; otherwise the interest may be missing.
		return fmt.Errorf("fanout: flush subscribe %s: %w", route.Subject, err)
	}
	ch.seedLocked()
	return nil
}

// seedLocked looks the channel's latest message up in the history once
// its route is sequenced, so that the first subscribers of a channel get
// its seq and snapshot before any message arrived live. natsMu is held: a
// join waits for it (bounded by the history's call timeout). A failed
// lookup leaves the channel as it is (ack seq 0, no snapshot until the
// next message) and is retried by a join a second later.
func (ch *channel) seedLocked() {
	hist := ch.hub.opts.History
	if hist == nil || !ch.route.Sequenced || ch.seeded {
		return
	}
	now := time.Now()
	if now.Before(ch.seedRetry) {
		return
	}
	m, ok, err := hist.last(ch.subject)
	if err != nil {
		ch.seedRetry = now.Add(time.Second)
		return
	}
	ch.seeded = true
	if !ok {
		return
	}
	ch.mu.Lock()
	if m.seq > ch.last.seq { // a live message may have overtaken the lookup
		ch.last = m
		ch.lastGen++
	}
	ch.mu.Unlock()
}

// reroute moves the channel to the hub's current Router's route.
func (ch *channel) reroute() error {
	ch.natsMu.Lock()
	defer ch.natsMu.Unlock()
	h := ch.hub
	route := (*h.router.Load())(ch.src, ch.subject)
	if ch.dead || ch.natsSub == nil || route == ch.route {
		return nil
	}
	sub, err := ch.disp.subscribe(route.Subject, ch)
	if err != nil {
		return fmt.Errorf("fanout: reroute %s to %s: %w", ch.subject, route.Subject, err)
	}
	if err := h.nc.FlushTimeout(h.opts.FlushTimeout); err != nil && !h.nc.IsReconnecting() {
		ch.disp.unsubscribe(sub)
		return fmt.Errorf("fanout: flush reroute %s: %w", route.Subject, err)
	}
	old := ch.natsSub
	ch.natsSub, ch.route = sub, route
	ch.seeded = false // looked up again by the next join
	ch.sequenced.Store(route.Sequenced)
	ch.cur.Store(sub)
	ch.disp.unsubscribe(old)
	return nil
}

func (ch *channel) dropNATS() {
	ch.natsMu.Lock()
	defer ch.natsMu.Unlock()
	ch.dead = true
	if ch.natsSub != nil {
		ch.disp.unsubscribe(ch.natsSub)
		ch.natsSub = nil
		ch.cur.Store(nil)
		ch.hub.natsSubs.Add(-1)
		ch.hub.m.natsSubs.Dec()
	}
}

// onMsg handles one NATS message of the channel on its dispatcher.
func (ch *channel) onMsg(msg *nats.Msg, comp *compressor) {
	if msg.Sub != ch.cur.Load() {
		return // from a route being dropped
	}
	m := message{payload: msg.Data, recv: time.Now().UnixNano()}
	if ch.sequenced.Load() {
		m.seq, m.prev = sequence(msg.Header)
	}
	ch.deliver(&m, comp)
}

// Republish headers of JetStream (RePublish): the message's stream
// sequence and the sequence of the previous message on its subject.
const (
	hdrSequence     = "Nats-Sequence"
	hdrLastSequence = "Nats-Last-Sequence"
)

// sequence reads seq and prev from republish headers (0, 0 without them).
func sequence(h nats.Header) (seq, prev uint64) {
	if v := h[hdrSequence]; len(v) > 0 {
		seq, _ = strconv.ParseUint(v[0], 10, 64)
	}
	if v := h[hdrLastSequence]; len(v) > 0 && seq != 0 {
		prev, _ = strconv.ParseUint(v[0], 10, 64)
	}
	return seq, prev
}

// deliver is the hot path: validate the payload once, build the frame
// once (and its compressed form once, when a live member wants it), offer
// it to every live member, and leave the message to each conflated group.
func (ch *channel) deliver(m *message, comp *compressor) {
	met := ch.hub.m
	met.msgsIn.Inc()
	if len(m.payload) == 0 || fastjson.ValidateBytes(m.payload) != nil {
		met.invalid.Inc()
		return
	}
	ch.mu.Lock()
	live, compressed := len(ch.live.subs), ch.live.compressed
	ch.mu.Unlock()
	var f *Frame
	if live > 0 {
		// Built outside the lock, so joins and leaves do not wait for the
		// compression; a member that joins meanwhile and wants deflate
		// gets the plain bytes of this one frame.
		f = buildFrame(ch.envelope, m, comp, compressed > 0)
		met.countFrame(f)
	}
	accepted := 0
	ch.mu.Lock()
	if f == nil && len(ch.live.subs) > 0 {
		// A live member joined while this message was on its way: its ack
		// named the previous seq, so it must get this one (plain bytes).
		ch.mu.Unlock()
		f = buildFrame(ch.envelope, m, comp, false)
		met.countFrame(f)
		ch.mu.Lock()
	}
	if f != nil {
		accepted = ch.live.walk(f)
	}
	// The latest message moves with the walk: a join sees either the
	// state before this message (and gets it) or after (and does not).
	ch.last = *m
	ch.lastGen++
	if t := ch.tail; t != nil && f != nil && f.seq != 0 {
		if m.recv-t.used > int64(recentTTL) && t.fetching == nil {
			ch.dropTailLocked()
		} else {
			t.extend(f)
		}
	}
	for iv := Live + 1; iv < numIntervals; iv++ {
		if g := ch.groups[iv]; g != nil {
			g.offerLocked(m)
		}
	}
	ch.mu.Unlock()
	met.msgsOut.Add(float64(accepted))
}
