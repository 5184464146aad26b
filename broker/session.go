package broker

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"floodgate/fanout"
	"floodgate/internal/proto"

	"github.com/coder/websocket"
	"github.com/valyala/fastjson"
)

// session is one websocket connection.
type session struct {
	// Immutable after start.
	srv        *Server
	ws         *websocket.Conn
	conn       *wireConn
	id         Identity
	budget     Budget
	start      time.Time
	remote     string
	compressed bool   // permessage-deflate was negotiated
	writeFn    func() // s.writeLoop, bound once: go s.writeFn() does not allocate

	// Atomics: written by the read loop or callbacks, read by the sweeper.
	lastRead atomic.Int64  // unix ns of the last text or ping frame
	expires  atomic.Int64  // unix ns of the key's expiry; 0 = never
	scopes   atomic.Uint32 // proto.Scopes of the key; 0 = both
	lastPong atomic.Int64  // unix ns of the last pong (or the start)
	msgsIn   atomic.Int64
	msgsOut  atomic.Int64
	// delivered counts channel frames and their bytes written (meter.go);
	// added to by the writer when the session is metered.
	deliveredMsgs, deliveredBytes atomic.Int64
	metered                       bool // immutable after start: Options.MeterDelivery and a key
	// Guarded by srv.meterMu: delivered counts already taken (meter.go).
	takenMsgs, takenBytes int64

	// Owned by the read loop.
	idBuf   []byte
	scratch []byte

	// Guarded by subsMu: the subscriptions by subject. Only the read loop
	// adds; the read loop and endSubscriptions (any goroutine) remove.
	// Never held while taking s.mu's callers' locks; lock order: subsMu,
	// then mu.
	subsMu sync.Mutex
	subs   map[string]*subscription

	// Owned by the sweeper.
	lastPing      time.Time
	noticed       bool
	expiryNoticed bool // the KEY_EXPIRING of the last hour was sent

	// Guarded by mu: the send queue and the close state.
	mu          sync.Mutex
	queue       []item
	spare       []item
	queuedBytes int
	// extraFrames and extraBytes are the replayed and snapshot frames in
	// the queue, which its bounds do not count (a replay is bounded on its
	// own; see splice).
	extraFrames, extraBytes int
	queueGen                uint32 // bumped whenever the queue is taken or dropped
	writing                 bool   // a writer goroutine is running
	pingDue                 bool
	closing                 CloseReason // first reason wins; reasonNone while open
	wg                      sync.WaitGroup
}

// subscription is one channel of a session: the fanout.Subscriber the hub
// offers that channel's frames to.
type subscription struct {
	// Immutable after subscribe.
	sess        *session
	conflatable bool // the source's latest value is all that matters
	src         *fanout.Source
	subject     string

	// Owned by the read loop.
	hs *fanout.Subscription

	// Guarded by sess.mu: where the channel's latest queued frame is
	// (valid while pendGen is the queue's generation).
	pendGen uint32
	pendIdx int

	// special is set while live frames need more than a queue append: held
	// during a replay, or checked against skip after it. Deliver reads it
	// first; the rest is guarded by mu (lock order: mu, then sess.mu).
	special   atomic.Bool
	mu        sync.Mutex
	holding   bool            // a replay runs: live frames wait in held
	held      []*fanout.Frame // live frames that arrived during the replay
	heldBytes int
	skip      uint64 // live frames with a seq at or below it are duplicates of the replay
}

// item is one queued outbound frame: a shared market frame or a pooled
// direct reply.
type item struct {
	wire  []byte
	reply *replyBuf
	sub   *subscription // the market frame's channel; nil for replies
	recv  int64         // unix ns the node received a market frame; 0 for replies
}

// Deliver implements fanout.Subscriber: it queues f (its compressed form
// when the session negotiated deflate and f has one) without blocking and
// reports whether the frame was accepted (false: dropped, and counted in
// floodgate_frames_dropped_total).
func (c *subscription) Deliver(f *fanout.Frame) bool {
	if c.special.Load() {
		return c.deliverSpecial(f)
	}
	s := c.sess
	return s.enqueue(item{wire: f.WireFor(s.compressed), recv: f.Received(), sub: c})
}

// deliverSpecial holds f while a replay runs, drops it when the replay
// already sent it, and otherwise queues it (then the subscription is back
// on the plain path: frames of a channel come in seq order, so every later
// one is past skip too). The hub calls Deliver of one channel from one
// goroutine at a time.
func (c *subscription) deliverSpecial(f *fanout.Frame) bool {
	s := c.sess
	c.mu.Lock()
	if c.holding {
		o := &s.srv.opts
		if len(c.held) >= o.QueueFrames || c.heldBytes+f.Len() > o.QueueBytes {
			// The channel outran the replay by a whole send queue: the
			// same rule as a queue overflow.
			c.held, c.heldBytes = nil, 0
			c.mu.Unlock()
			s.slowConsumer()
			return false
		}
		c.held = append(c.held, f)
		c.heldBytes += f.Len()
		c.mu.Unlock()
		return true
	}
	if seq := f.Seq(); seq != 0 && seq <= c.skip {
		c.mu.Unlock()
		return false
	}
	c.special.Store(false)
	c.mu.Unlock()
	return s.enqueue(item{wire: f.WireFor(s.compressed), recv: f.Received(), sub: c})
}

// enqueue adds it to the send queue and makes sure a writer runs. It
// returns false when the frame was dropped: the queue overflowed (the
// session is then closing as a slow consumer, its backlog dropped too) or
// the session is already closing. Past the high-water mark (half of either
// bound) a frame of a conflatable channel replaces that channel's pending
// frame (latest value wins) and never overflows: the queue then holds at
// most one frame per conflatable subscription beyond the bounds.
func (s *session) enqueue(it item) bool {
	o := &s.srv.opts
	s.mu.Lock()
	if s.closing != reasonNone {
		s.mu.Unlock()
		s.srv.recycle(it)
		s.srv.m.drop(DropClosing, 1)
		return false
	}
	frames, bytes := len(s.queue)-s.extraFrames, s.queuedBytes-s.extraBytes
	if c := it.sub; c != nil && c.conflatable {
		if frames >= o.QueueFrames/2 || bytes+len(it.wire) > o.QueueBytes/2 {
			if c.pendGen == s.queueGen && c.pendIdx < len(s.queue) && s.queue[c.pendIdx].sub == c {
				old := &s.queue[c.pendIdx]
				s.queuedBytes += len(it.wire) - len(old.wire)
				*old = it
				s.mu.Unlock()
				s.srv.m.drop(DropConflated, 1)
				return true
			}
		}
		c.pendGen, c.pendIdx = s.queueGen, len(s.queue)
	} else if frames >= o.QueueFrames || (bytes+len(it.wire) > o.QueueBytes && frames > 0) {
		s.srv.recycle(it)
		s.slowConsumerLocked()
		return false
	}
	s.queue = append(s.queue, it)
	s.queuedBytes += len(it.wire)
	s.wakeUnlock()
	return true
}

// slowConsumer closes the session 1013 "slow consumer", its backlog
// dropped: a frame that must not be lost found no room.
func (s *session) slowConsumer() {
	s.mu.Lock()
	if s.closing != reasonNone {
		s.mu.Unlock()
		s.srv.m.drop(DropClosing, 1)
		return
	}
	s.slowConsumerLocked()
}

// slowConsumerLocked is slowConsumer with mu held; it releases mu.
func (s *session) slowConsumerLocked() {
	s.closing = ReasonSlowConsumer
	dropped := s.queue
	s.queue = nil
	s.queueGen++
	s.queuedBytes, s.extraFrames, s.extraBytes = 0, 0, 0
	start := s.startWriterLocked()
	s.mu.Unlock()
	for _, d := range dropped {
		s.srv.recycle(d)
	}
	s.srv.m.drop(DropQueueFull, 1)
	s.srv.m.drop(DropSlowConsumerClose, len(dropped))
	s.srv.m.slowConsumers.Inc()
	if start {
		go s.writeFn()
	}
}

// wakeUnlock starts the writer unless one runs, and releases mu.
func (s *session) wakeUnlock() {
	start := s.startWriterLocked()
	s.mu.Unlock()
	if start {
		go s.writeFn()
	}
}

// startWriterLocked marks a writer as running and reports whether the
// caller must start it.
func (s *session) startWriterLocked() bool {
	if s.writing {
		return false
	}
	s.writing = true
	s.wg.Add(1)
	return true
}

// requestClose asks the writer to flush what is queued (everything but a
// slow consumer's backlog), then close with reason. The first reason wins.
func (s *session) requestClose(reason CloseReason) {
	s.mu.Lock()
	if s.closing != reasonNone {
		s.mu.Unlock()
		return
	}
	s.closing = reason
	s.wakeUnlock()
}

// requestPing asks the writer to send a websocket ping.
func (s *session) requestPing() {
	s.mu.Lock()
	if s.closing != reasonNone {
		s.mu.Unlock()
		return
	}
	s.pingDue = true
	s.wakeUnlock()
}

func (s *session) closeReason() CloseReason {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// readLoop runs the client protocol until the connection ends and returns
// why it ended.
func (s *session) readLoop() CloseReason {
	srv := s.srv
	ctx := context.Background()
	for {
		typ, r, err := s.ws.Reader(ctx)
		if err != nil {
			return readErrReason(err)
		}
		now := time.Now()
		s.lastRead.Store(now.UnixNano())
		bp := srv.readBufs.Get().(*[]byte)
		n, err := readFull(r, *bp)
		if err == errTooBig {
			// Leave the rest of the frame unread: the writer's close
			// handshake discards it, so the client reads a clean 1009
			// instead of a reset.
			srv.readBufs.Put(bp)
			s.requestClose(ReasonTooBig)
			return ReasonTooBig
		}
		if err != nil {
			srv.readBufs.Put(bp)
			return readErrReason(err)
		}
		if typ != websocket.MessageText {
			srv.readBufs.Put(bp)
			s.requestClose(ReasonBinary)
			continue // keep reading so the close handshake completes
		}
		if s.closeReason() == reasonNone {
			s.msgsIn.Add(1)
			srv.m.clientFrames.Inc()
			s.handle((*bp)[:n], now)
		}
		srv.readBufs.Put(bp)
	}
}

// readFull reads a whole message into buf (ReadLimit+1 bytes). A message
// that fills buf is over the limit: errTooBig.
func readFull(r io.Reader, buf []byte) (int, error) {
	n := 0
	for {
		if n == len(buf) {
			return n, errTooBig
		}
		m, err := r.Read(buf[n:])
		n += m
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

var errTooBig = errors.New("broker: frame larger than the read buffer")

func readErrReason(err error) CloseReason {
	switch {
	case errors.Is(err, websocket.ErrMessageTooBig):
		return ReasonTooBig
	case websocket.CloseStatus(err) != -1:
		return ReasonClientClosed
	default:
		return ReasonConnLost
	}
}

// handle executes one text frame.
func (s *session) handle(msg []byte, now time.Time) {
	srv := s.srv
	p := srv.parsers.Get()
	defer srv.parsers.Put(p)
	s.idBuf = s.idBuf[:0]
	s.scratch = s.scratch[:0]
	req, idBuf, ferr := parseRequest(p, msg, s.idBuf)
	s.idBuf = idBuf
	op := req.op
	// Only a real unsubscribe is free of refusal: one of a channel the
	// connection has not joined (or that names no channel) is charged like
	// any frame, so junk unsubscribes run into the violation rule.
	var ch fanout.Channel
	var perr *fanout.ParamError
	var detail string
	var joined *subscription
	switch op {
	case OpSubscribe:
		// Resolved before the charge: the cost may depend on the source.
		if ferr == nil {
			ch, perr, detail = s.channelOf(&req)
		}
	case OpUnsubscribe:
		if ferr == nil {
			ch, perr, detail = s.channelOf(&req)
			if perr == nil {
				s.subsMu.Lock()
				joined = s.subs[string(ch.Subject)]
				s.subsMu.Unlock()
			}
		}
		if joined == nil {
			op = OpUnsubscribeNotJoined
		}
	}
	d := s.budget.Charge(op, ch.Source, now)
	if !d.Allowed {
		code := d.Code
		if code == "" {
			code = proto.RateLimited
		}
		msg := d.Message
		if msg == "" {
			msg = "rate limit exceeded"
		}
		// Rounded up: retrying after retry_after_ms is never early.
		retry := int64((d.RetryAfter + time.Millisecond - 1) / time.Millisecond)
		s.replyError(frameError{code, msg}, "", retry, req.id, &d)
		if d.Close {
			s.requestClose(closeReasonFor(code))
		}
		return
	}
	if d.Close {
		defer s.requestClose(closeReasonFor(d.Code))
	}
	if ferr != nil {
		s.replyError(*ferr, "", 0, req.id, &d)
		return
	}
	switch req.op {
	case OpPing:
		r := srv.replies.get()
		r.b = appendPong(r.b, req.id, &d)
		s.reply(r)
	case OpSubscribe:
		s.subscribe(&req, &ch, perr, detail, &d)
	case OpUnsubscribe:
		switch {
		case perr != nil:
			s.replyError(frameError{perr.Code, perr.Message}, detail, 0, req.id, &d)
		case joined == nil:
			s.replyError(*errNotSub, "", 0, req.id, &d)
		default:
			s.unsubscribe(&req, &ch, joined, &d)
		}
	}
}

func closeReasonFor(code string) CloseReason {
	if code == proto.QuotaExceeded {
		return ReasonQuota
	}
	return ReasonRateLimit
}

// subscribe runs a subscribe whose channel handle resolved into ref (or
// failed with perr and detail).
func (s *session) subscribe(req *request, refp *fanout.Channel, perr *fanout.ParamError, detail string, d *Decision) {
	srv := s.srv
	ref := *refp
	if perr != nil {
		s.replyError(frameError{perr.Code, perr.Message}, detail, 0, req.id, d)
		return
	}
	iv, ok := conflateParam(req.params, ref.Source)
	if !ok {
		s.replyError(*errConflate, `conflate_ms`, 0, req.id, d)
		return
	}
	hp, bad := historyParams(req.params)
	switch {
	case bad != "":
		s.replyError(*errConflate, bad, 0, req.id, d)
		return
	case (hp.hasSince || hp.snapshot) && !srv.opts.Hub.HasHistory(ref.Source):
		name := "snapshot"
		if hp.hasSince {
			name = "since"
		}
		s.replyError(*errNoHistory, name, 0, req.id, d)
		return
	case hp.hasSince && iv != fanout.Live:
		s.replyError(*errSinceConflate, "", 0, req.id, d)
		return
	}
	if srv.opts.Sources.Authorize(&ref, s.id.Account) != nil {
		s.replyError(*errForbidden, "", 0, req.id, d)
		return
	}
	if fe := scopeError(proto.Scopes(s.scopes.Load()), ref.Source.Private); fe != nil {
		s.replyError(*fe, "", 0, req.id, d)
		return
	}
	if g, ok := s.budget.(PublicGate); ok && !ref.Source.Private {
		if wait, refused := g.PublicRefused(time.Now()); refused {
			// Rounded up: retrying after retry_after_ms is never early.
			s.replyError(*errDelivered, "", int64((wait+time.Millisecond-1)/time.Millisecond), req.id, d)
			return
		}
	}
	s.subsMu.Lock()
	_, already := s.subs[string(ref.Subject)]
	n := len(s.subs)
	s.subsMu.Unlock()
	if already {
		s.replyError(*errAlready, "", 0, req.id, d)
		return
	}
	if limit := s.budget.MaxSubscriptions(); limit > 0 && n >= limit {
		s.replyError(*errSubLimit, "", 0, req.id, d)
		return
	}
	x := ackFields{conflateMs: iv.Millis(), since: hp.since, hasSince: hp.hasSince, snapshot: hp.snapshot}
	// Copies for the closures below, so that the caller's request and
	// decision (the read loop's, per frame) stay on its stack.
	id, dd := req.id, *d
	subject := string(ref.Subject)
	c := &subscription{sess: s, conflatable: ref.Source.Conflatable, src: ref.Source, subject: subject}
	var info fanout.JoinInfo
	joined := func(ji fanout.JoinInfo) { info = ji }
	if hp.hasSince {
		// Live frames wait in c.held until the replay is queued.
		c.holding = true
		c.special.Store(true)
	} else {
		// The hub calls this once NATS has the interest and just before
		// this session can receive the channel's frames: the client sees
		// the ack (and the snapshot) first, and anything published after
		// the ack reaches it.
		joined = func(ji fanout.JoinInfo) {
			x.sequenced, x.seq, x.epoch = ji.Sequenced, ji.Seq, ji.Epoch
			r := srv.replies.get()
			r.b = appendAck(r.b, "subscribe", &ref, &x, id, &dd)
			r.finish()
			s.enqueue(item{wire: r.wire(), reply: r})
			if ji.Snapshot != nil {
				s.enqueueExtra(ji.Snapshot)
			}
		}
	}
	hs, err := srv.opts.Hub.Subscribe(c, fanout.Join{
		Source: ref.Source, Subject: subject, Owner: s.id.ID, Interval: iv, Compressed: s.compressed,
		Snapshot: hp.snapshot, Joined: joined,
	})
	if err != nil {
		switch {
		case errors.Is(err, fanout.ErrChannelLimit):
			s.replyError(*errChannelLimit, "", 0, req.id, d)
		case errors.Is(err, fanout.ErrOwnerChannelLimit):
			s.replyError(*errOwnerChannelLimit, "", 0, req.id, d)
		default:
			srv.opts.Logger.Error().Err(err).Str("subject", subject).Msg("subscribe failed")
			s.replyError(*errInternal, "", 0, req.id, d)
		}
		return
	}
	c.hs = hs
	if hp.hasSince && !s.resume(c, &ref, id, hp, &x, info, dd) {
		srv.opts.Hub.Unsubscribe(hs)
		return
	}
	s.subsMu.Lock()
	defer s.subsMu.Unlock()
	srv.m.subscriptions.Inc()
	s.subs[subject] = c
	// The key's scopes may have changed since the check above; a change
	// stores the scopes before it looks at the subscriptions (under
	// subsMu), so either it saw c or this sees the new scopes.
	if !proto.Scopes(s.scopes.Load()).Allows(c.src.Private) {
		s.endLocked(subject, c, proto.Forbidden)
	}
}

// scopeError is the refusal of a source the scopes do not allow (nil when
// allowed). It does not allocate.
func scopeError(sc proto.Scopes, private bool) *frameError {
	switch sc.Missing(private) {
	case "":
		return nil
	case proto.ScopeNameAccount:
		return errNoScopeAcct
	default:
		return errNoScopeMarket
	}
}

// resume replays what the client missed after hp.since and splices it in
// front of the live frames held since the join: ack, replayed frames (or,
// when the history no longer holds everything, the snapshot if asked),
// then the held frames the replay did not cover, then live. It runs on
// the read loop, so a connection has one replay at a time; the replay's
// calls are bounded by the history's deadlines. It returns false, having
// sent the error, when the replay was refused.
func (s *session) resume(c *subscription, ref *fanout.Channel, id []byte, hp histParams, x *ackFields, info fanout.JoinInfo, d Decision) bool {
	srv := s.srv
	var refusal *Decision
	res, err := srv.opts.Hub.Replay(context.Background(), c.hs, hp.since, info, func(n int) error {
		if n == 0 {
			return nil
		}
		rd := s.budget.ChargeReplay(n, time.Now())
		if !rd.Allowed {
			refusal = &rd
			return errReplayRefused
		}
		if rd.HasRL {
			d = rd // the ack reports the budget after the replay's charge
		}
		return nil
	})
	if err != nil {
		switch {
		case refusal != nil:
			code, msg := refusal.Code, refusal.Message
			if code == "" {
				code = proto.RateLimited
			}
			if msg == "" {
				msg = "rate limit exceeded"
			}
			retry := int64((refusal.RetryAfter + time.Millisecond - 1) / time.Millisecond)
			s.replyError(frameError{code, msg}, "", retry, id, refusal)
			if refusal.Close {
				s.requestClose(closeReasonFor(code))
			}
		case errors.Is(err, fanout.ErrReplayBusy):
			s.replyError(*errReplayBusy, "", replayBusyRetryMs, id, &d)
		default:
			srv.opts.Logger.Error().Err(err).Str("subject", string(ref.Subject)).Msg("replay failed")
			s.replyError(*errInternal, "", 0, id, &d)
		}
		return false
	}
	x.sequenced, x.seq, x.epoch = info.Sequenced, info.Seq, info.Epoch
	x.recovered = -1
	if res.Recovered {
		x.recovered = 1
	}
	r := srv.replies.get()
	r.b = appendAck(r.b, "subscribe", ref, x, id, &d)
	r.finish()
	var snap *fanout.Frame
	if !res.Recovered && hp.snapshot {
		snap = info.Snapshot
	}
	s.splice(c, r, res.Frames, snap, res.Last)
	return true
}

// replayBusyRetryMs is the retry_after_ms of a replay refused because the
// node runs its maximum of replays: they take milliseconds.
const replayBusyRetryMs = 100

var errReplayRefused = errors.New("broker: replay refused by the budget")

// splice queues the ack, the replayed frames (or a snapshot), and the live
// frames held since the join that come after last, and puts c back on live
// delivery: later live frames at or below last are dropped as duplicates.
// Replayed frames are bounded by the history's replay limits and do not
// count toward the send queue's bounds.
func (s *session) splice(c *subscription, ack *replyBuf, frames []*fanout.Frame, snap *fanout.Frame, last uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	held := c.held
	c.held, c.heldBytes, c.holding, c.skip = nil, 0, false, last
	if last == 0 {
		c.special.Store(false)
	}
	s.mu.Lock()
	if s.closing != reasonNone {
		s.mu.Unlock()
		s.srv.recycle(item{reply: ack})
		s.srv.m.drop(DropClosing, 1+len(frames)+len(held))
		return
	}
	s.queue = append(s.queue, item{wire: ack.wire(), reply: ack})
	s.queuedBytes += len(ack.wire())
	if snap != nil {
		frames = append(frames, snap)
	}
	for _, f := range frames {
		// Built plain; no recv: they are not live deliveries, and the
		// latency histogram (NATS receive to write) measures those.
		w := f.Wire()
		s.queue = append(s.queue, item{wire: w})
		s.queuedBytes += len(w)
		s.extraFrames++
		s.extraBytes += len(w)
	}
	for _, f := range held {
		if seq := f.Seq(); seq != 0 && seq <= last {
			continue
		}
		if c.conflatable {
			c.pendGen, c.pendIdx = s.queueGen, len(s.queue)
		}
		w := f.WireFor(s.compressed)
		s.queue = append(s.queue, item{wire: w, recv: f.Received(), sub: c})
		s.queuedBytes += len(w)
	}
	s.wakeUnlock()
}

// enqueueExtra queues a snapshot frame outside the queue's bounds (it is
// one frame per subscribe, sent right after the ack).
func (s *session) enqueueExtra(f *fanout.Frame) {
	w := f.Wire()
	s.mu.Lock()
	if s.closing != reasonNone {
		s.mu.Unlock()
		s.srv.m.drop(DropClosing, 1)
		return
	}
	s.queue = append(s.queue, item{wire: w}) // no recv: not a live delivery (see splice)
	s.queuedBytes += len(w)
	s.extraFrames++
	s.extraBytes += len(w)
	s.wakeUnlock()
}

func (s *session) unsubscribe(req *request, ch *fanout.Channel, c *subscription, d *Decision) {
	srv := s.srv
	s.subsMu.Lock()
	if s.subs[string(ch.Subject)] != c {
		// Ended by the node since handle looked it up (its notice is
		// queued): the client is no longer subscribed.
		s.subsMu.Unlock()
		s.replyError(*errNotSub, "", 0, req.id, d)
		return
	}
	delete(s.subs, string(ch.Subject))
	s.subsMu.Unlock()
	// Leave the channel before acking: nothing of it follows the ack.
	srv.opts.Hub.Unsubscribe(c.hs)
	srv.m.subscriptions.Dec()
	r := srv.replies.get()
	r.b = appendAck(r.b, "unsubscribe", ch, nil, req.id, d)
	s.reply(r)
}

// channelOf turns the request's params into a channel (ignoring the
// subscription options such as conflate_ms), or returns the refusal and
// the name it concerns.
func (s *session) channelOf(req *request) (fanout.Channel, *fanout.ParamError, string) {
	ch, scratch, perr, detail := s.srv.opts.Sources.ResolveSkipping(req.params, s.scratch, isOption)
	s.scratch = scratch
	return ch, perr, detail
}

// isOption reports whether a params key is a subscription option rather
// than a param of the source.
func isOption(key []byte) bool {
	switch string(key) {
	case "conflate_ms", "since", "snapshot":
		return true
	}
	return false
}

// histParams are the history options of a subscribe.
type histParams struct {
	since    uint64
	hasSince bool
	snapshot bool
}

// historyParams reads params.since (a JSON integer from 0 to 2^64-1) and
// params.snapshot (true or false); it returns the name of the option that
// is malformed, if one is.
func historyParams(params *fastjson.Object) (histParams, string) {
	var hp histParams
	if v := params.Get("since"); v != nil {
		n, err := v.Uint64()
		if err != nil || v.Type() != fastjson.TypeNumber {
			return hp, "since"
		}
		hp.since, hp.hasSince = n, true
	}
	if v := params.Get("snapshot"); v != nil {
		switch v.Type() {
		case fastjson.TypeTrue:
			hp.snapshot = true
		case fastjson.TypeFalse:
		default:
			return hp, "snapshot"
		}
	}
	return hp, ""
}

// conflateParam reads params.conflate_ms: Live when absent, false when it
// is not one of 100, 250, 500, 1000 or the source is not conflatable.
func conflateParam(params *fastjson.Object, src *fanout.Source) (fanout.Interval, bool) {
	v := params.Get("conflate_ms")
	if v == nil {
		return fanout.Live, true
	}
	ms, err := v.Int64()
	if err != nil || v.Type() != fastjson.TypeNumber || !src.Conflatable {
		return fanout.Live, false
	}
	return fanout.IntervalOf(ms)
}

func (s *session) replyError(fe frameError, detail string, retryMs int64, id []byte, d *Decision) {
	s.srv.m.errorReplies.WithLabelValues(fe.code).Inc()
	r := s.srv.replies.get()
	r.b = appendError(r.b, &fe, detail, retryMs, id, d)
	s.reply(r)
}

func (s *session) reply(r *replyBuf) {
	r.finish()
	s.enqueue(item{wire: r.wire(), reply: r})
}

// notice queues a notice frame (RECONNECT before drain or lifetime end).
func (s *session) notice(code string, in time.Duration) {
	r := s.srv.replies.get()
	r.b = appendNotice(r.b, code, in.Milliseconds())
	s.reply(r)
}

// noticeExpiring queues the KEY_EXPIRING notice of a key expiring at
// exp.
func (s *session) noticeExpiring(exp, now time.Time) {
	r := s.srv.replies.get()
	r.b = appendExpiring(r.b, exp, exp.Sub(now).Milliseconds())
	s.reply(r)
}

// leaveAll removes the session from every channel. Read loop only, after
// the loop ended.
func (s *session) leaveAll() {
	s.subsMu.Lock()
	defer s.subsMu.Unlock()
	for subject, c := range s.subs {
		s.srv.opts.Hub.Unsubscribe(c.hs)
		delete(s.subs, subject)
		s.srv.m.subscriptions.Dec()
	}
}

// endSubscriptions ends every subscription for which end returns true:
// it leaves the channel, then queues the SUBSCRIPTION_ENDED notice with
// reason, so no frame of the channel follows the notice. The session's
// subscription count drops and the client may subscribe again. Safe from
// any goroutine; it returns how many it ended.
func (s *session) endSubscriptions(end func(ch *fanout.Channel) bool, reason string) int {
	n := 0
	// Held while leaving and queueing, so that a new subscribe of the same
	// channel (its check takes subsMu) is acked after this notice.
	s.subsMu.Lock()
	defer s.subsMu.Unlock()
	for subject, c := range s.subs {
		ch := c.channel()
		if !end(&ch) {
			continue
		}
		s.endChannelLocked(subject, c, &ch, reason)
		n++
	}
	return n
}

// endLocked ends subscription c of subject; subsMu held.
func (s *session) endLocked(subject string, c *subscription, reason string) {
	ch := c.channel()
	s.endChannelLocked(subject, c, &ch, reason)
}

// endChannelLocked leaves c's channel ch, then queues the notice; subsMu
// held.
func (s *session) endChannelLocked(subject string, c *subscription, ch *fanout.Channel, reason string) {
	srv := s.srv
	delete(s.subs, subject)
	srv.opts.Hub.Unsubscribe(c.hs)
	srv.m.subscriptions.Dec()
	r := srv.replies.get()
	r.b = appendEnded(r.b, ch, reason)
	s.reply(r)
}

// channel rebuilds the subscription's channel from its subject: the
// values are its last dot-separated parts (values never hold a dot).
func (c *subscription) channel() fanout.Channel {
	ch := fanout.Channel{Source: c.src, Subject: []byte(c.subject)}
	rest := ch.Subject
	for i := len(c.src.Params) - 1; i >= 0; i-- {
		j := bytes.LastIndexByte(rest, '.')
		if j < 0 {
			break
		}
		ch.Values[i] = rest[j+1:]
		rest = rest[:j]
	}
	return ch
}
