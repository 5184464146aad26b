package broker

// The subscription side of a session: subscribe (with scopes, history
// resume and conflation options), unsubscribe, and the node ending a
// session's subscriptions (leaveAll, endSubscriptions). Read loop only,
// except endSubscriptions (any goroutine, under subsMu).

import (
	"bytes"
	"context"
	"errors"
	"time"

	"floodgate/fanout"
	"floodgate/internal/proto"

	"github.com/valyala/fastjson"
)

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
