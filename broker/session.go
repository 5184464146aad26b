package broker

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"floodgate/fanout"
	"floodgate/internal/proto"

	"github.com/coder/websocket"
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
