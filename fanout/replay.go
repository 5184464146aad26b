package fanout

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/valyala/fastjson"
)

// ReplayResult is what a replay found.
type ReplayResult struct {
	// Frames are the retained messages after since, in order, each with
	// its seq and prev (prev of the first: since). Empty when nothing was
	// missed or when not Recovered.
	Frames []*Frame
	// Recovered is true when the history still held every message of the
	// channel after since and the replay stayed within its bounds; the
	// client can then continue from since without a gap.
	Recovered bool
	// Last is the seq the subscriber's live frames continue after: live
	// frames with a seq at or below it are duplicates of the replay (or of
	// what the client had) and must be dropped. 0 when not Recovered.
	Last uint64

	skipped bool // a message that is not JSON was left out: Frames do not chain
}

// replay reads the messages of ch after since for a subscriber that joined
// with info. The subscriber joined before this runs, so every message
// stored after the join also reaches it live: the replay reads what the
// stream held when the consumer was made, and the overlap is dropped by
// seq (ReplayResult.Last). Each JetStream call is bounded by CallTimeout
// and the whole replay by ReplayTimeout.
//
// The replay reads with a short-lived consumer of the stream filtered to
// the channel's subject, starting at since+1 (no acks, in memory, one
// replica, deleted at the end): one request for its messages, whose
// delivery sequence must have no gap (nats.go's ordered consumer would
// retry and recreate itself beyond our deadlines, so the consumer is
// managed here).
func (h *History) replay(ctx context.Context, ch *channel, since uint64, info JoinInfo, admit func(n int) error) (ReplayResult, error) {
	if !info.Sequenced {
		h.m.replays.WithLabelValues("not_recovered").Inc()
		return ReplayResult{}, nil
	}
	if since != 0 && since == info.Seq {
		// The client has the channel's latest message; everything after
		// it comes live.
		h.m.replays.WithLabelValues("recovered").Inc()
		return ReplayResult{Recovered: true, Last: since}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, h.opts.ReplayTimeout)
	defer cancel()
	// The channel's in-memory tail first: in a resume storm one replay
	// reads the stream and the others wait for it, then read memory.
	mine := false
lookup:
	for {
		frames, hit, lost, wait, reads := ch.tailLookup(h, since, info.Seq, time.Now().UnixNano())
		if hit && !h.withinBounds(frames) {
			hit, lost = false, true
		}
		switch {
		case hit:
			if err := admit(len(frames)); err != nil {
				h.m.replays.WithLabelValues("refused").Inc()
				return ReplayResult{}, err
			}
			res := ReplayResult{Frames: frames, Recovered: true, Last: since}
			if len(frames) > 0 {
				res.Last = frames[len(frames)-1].seq
			}
			h.m.replays.WithLabelValues("recovered").Inc()
			h.m.fromMemory.Inc()
			h.m.replayed.Add(float64(len(frames)))
			return res, nil
		case lost:
			h.m.replays.WithLabelValues("not_recovered").Inc()
			return ReplayResult{}, nil
		case wait != nil:
			select {
			case <-wait:
			case <-ctx.Done():
				h.m.replays.WithLabelValues("error").Inc()
				return ReplayResult{}, nil
			}
		default:
			mine = reads
			break lookup
		}
	}
	select {
	case h.slots <- struct{}{}:
	default:
		if mine {
			ch.tailRead(nil, 0)
		}
		h.m.replays.WithLabelValues("busy").Inc()
		return ReplayResult{}, ErrReplayBusy
	}
	defer func() { <-h.slots }()
	start := time.Now()
	res, err := h.read(ctx, ch, since, admit)
	if mine {
		switch {
		case errors.Is(err, errAgedOut):
			ch.tailRead(nil, since)
		case res.skipped || err != nil:
			ch.tailRead(nil, 0)
		default:
			ch.tailRead(res.Frames, 0)
		}
	}
	switch {
	case errors.Is(err, errNotRecovered), errors.Is(err, errAgedOut):
		h.m.replays.WithLabelValues("not_recovered").Inc()
		return ReplayResult{}, nil
	case err != nil && !isJetStreamErr(err):
		h.m.replays.WithLabelValues("refused").Inc()
		return ReplayResult{}, err // admit's refusal
	case err != nil:
		h.m.replays.WithLabelValues("error").Inc()
		return ReplayResult{}, nil
	}
	h.m.replays.WithLabelValues("recovered").Inc()
	h.m.replayed.Add(float64(len(res.Frames)))
	h.m.replaySeconds.Observe(time.Since(start).Seconds())
	return res, nil
}

// withinBounds reports whether frames fit one replay (max_replay_msgs and
// max_replay_bytes, counted on the frames: a little over the payloads).
func (h *History) withinBounds(frames []*Frame) bool {
	if len(frames) > h.opts.Config.MaxReplayMsgs {
		return false
	}
	n := 0
	for _, f := range frames {
		n += f.Len()
	}
	return n <= h.opts.Config.MaxReplayBytes
}

// tailLookup looks for the frames after since (up to at least upTo) in
// the channel's tail, starting a tail when the channel has none (within
// maxRecent per node). It returns them (hit); or lost when a read found
// the history no longer holds everything after a since at or above this
// one (messages leave oldest first, so it only gets worse); or a read in
// progress to wait for; or reads true when the caller is to read the
// stream and hand the result to tailRead. With neither, there is no tail:
// read without one.
func (ch *channel) tailLookup(h *History, since, upTo uint64, now int64) (frames []*Frame, hit, lost bool, wait chan struct{}, reads bool) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	t := ch.tail
	if t == nil {
		if h.tails.Add(1) > maxRecent {
			h.tails.Add(-1)
			return nil, false, false, nil, false
		}
		t = &recent{}
		ch.tail = t
	}
	t.used = now
	if fs, ok := t.after(since, upTo); ok {
		return fs, true, false, nil, false
	}
	if t.lost != 0 && since <= t.lost {
		return nil, false, true, nil, false
	}
	if t.fetching != nil {
		return nil, false, false, t.fetching, false
	}
	t.fetching = make(chan struct{})
	return nil, false, false, nil, true
}

// tailRead ends the read tailLookup asked for: its frames (chained from
// the replay's since) go in front of the tail's live frames, or, when the
// read found the history short of since (lost, not 0), that is noted; the
// replays waiting for it look again.
func (ch *channel) tailRead(read []*Frame, lost uint64) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if t := ch.tail; t != nil && t.fetching != nil {
		t.merge(read)
		t.lost = max(t.lost, lost)
		close(t.fetching)
		t.fetching = nil
	}
}

// Why a read is not recovered: errAgedOut, the history no longer holds
// every message after since or holds more than a replay may send (true of
// every older since too); errNotRecovered, anything else (a since the
// stream never had, a message lost on the way).
var (
	errAgedOut      = errors.New("fanout: not recovered: aged out or over the replay bounds")
	errNotRecovered = errors.New("fanout: not recovered")
)

// jsError wraps the failures of JetStream calls, to tell them from the
// admit callback's refusal.
type jsError struct{ err error }

func (e jsError) Error() string { return "history: " + e.err.Error() }
func (e jsError) Unwrap() error { return e.err }

func isJetStreamErr(err error) bool {
	var je jsError
	return errors.As(err, &je)
}

// call bounds one JetStream call by CallTimeout (and ctx).
func (h *History) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, h.opts.CallTimeout)
}

func (h *History) read(ctx context.Context, ch *channel, since uint64, admit func(n int) error) (ReplayResult, error) {
	ref := h.stream.Load()
	if ref == nil {
		return ReplayResult{}, errNotRecovered
	}
	s, subject := ref.s, ch.subject
	cctx, cancel := h.call(ctx)
	info, err := s.Info(cctx, jetstream.WithSubjectFilter(subject))
	cancel()
	if err != nil {
		return ReplayResult{}, jsError{err}
	}
	st := info.State
	if since > st.LastSeq {
		return ReplayResult{}, errNotRecovered // not a seq of this stream (another epoch?)
	}
	// Messages leave the stream oldest first: by age or size across the
	// stream (below FirstSeq), or per channel past MaxMsgsPerSubject. So
	// nothing after since is gone when since is at the stream's head and
	// the channel never reached its cap, or when since itself is still
	// held.
	held := since+1 >= st.FirstSeq && st.Subjects[subject] < uint64(h.opts.Config.MaxMsgsPerSubject)
	if !held && since >= st.FirstSeq {
		cctx, cancel := h.call(ctx)
		m, err := s.GetMsg(cctx, since)
		cancel()
		switch {
		case err == nil:
			held = m.Subject == subject
		case !errors.Is(err, jetstream.ErrMsgNotFound):
			return ReplayResult{}, jsError{err}
		}
	}
	if !held {
		return ReplayResult{}, errAgedOut
	}
	var id [10]byte
	_, _ = rand.Read(id[:])                          // crypto/rand never fails on Linux
	name := "fg_replay_" + hex.EncodeToString(id[:]) // unique across the nodes sharing the stream
	cctx, cancel = h.call(ctx)
	cons, err := s.CreateOrUpdateConsumer(cctx, jetstream.ConsumerConfig{
		Name:              name,
		Description:       "floodgate replay",
		FilterSubject:     subject,
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       since + 1,
		AckPolicy:         jetstream.AckNonePolicy,
		MemoryStorage:     true,
		Replicas:          1,
		InactiveThreshold: max(h.opts.ReplayTimeout, 10*time.Second), // the server's own cleanup if the delete below fails
	})
	cancel()
	if err != nil {
		return ReplayResult{}, jsError{err}
	}
	defer func() {
		// Bounded on its own: ctx may be spent.
		dctx, cancel := context.WithTimeout(context.Background(), h.opts.CallTimeout)
		_ = s.DeleteConsumer(dctx, name)
		cancel()
	}()
	n := cons.CachedInfo().NumPending
	if n > uint64(h.opts.Config.MaxReplayMsgs) {
		return ReplayResult{}, errAgedOut
	}
	if err := admit(int(n)); err != nil {
		return ReplayResult{}, err
	}
	res := ReplayResult{Recovered: true, Last: since}
	if n == 0 {
		return res, nil
	}
	batch, err := cons.Fetch(int(n), jetstream.FetchContext(ctx))
	if err != nil {
		return ReplayResult{}, jsError{err}
	}
	res.Frames = make([]*Frame, 0, n)
	var got, bytes int
	var over error
	for msg := range batch.Messages() { // until the fetch ends: its goroutine is gone then
		if over != nil {
			continue
		}
		md, err := msg.Metadata()
		if err != nil || md.Sequence.Consumer != uint64(got+1) {
			over = errNotRecovered // a message lost on the way: not in order
			continue
		}
		got++
		bytes += len(msg.Data())
		if bytes > h.opts.Config.MaxReplayBytes {
			over = errAgedOut
			continue
		}
		m := message{payload: msg.Data(), recv: time.Now().UnixNano(), seq: md.Sequence.Stream, prev: res.Last}
		res.Last = m.seq
		if len(m.payload) == 0 || fastjson.ValidateBytes(m.payload) != nil {
			// Not forwarded live either; the next frame's prev names it.
			// The frames no longer chain: kept out of the channel's tail.
			res.skipped = true
			continue
		}
		res.Frames = append(res.Frames, buildFrame(ch.envelope, &m, nil, false))
	}
	if over != nil {
		return ReplayResult{}, over
	}
	if got < int(n) {
		if err := batch.Error(); err != nil {
			return ReplayResult{}, jsError{err}
		}
		return ReplayResult{}, jsError{fmt.Errorf("replay read %d of %d messages before its deadline", got, n)}
	}
	return res, nil
}
