package loadtest

import (
	"bytes"
	"context"
	"math"
	"sync/atomic"
	"time"
)

// Session setup states; every transition is a CAS from statePending, and
// whoever wins it closes session.setup.
const (
	statePending int32 = iota
	stateSubscribed
	stateFailed
)

// session is one load-test client: it dials, subscribes to one channel and
// counts the market frames it receives. About 700 bytes plus its Conn.
type session struct {
	// Immutable after newSession.
	id        int
	ch        int
	apiKey    string
	subscribe []byte
	run       *runner
	setup     chan struct{} // closed when state leaves statePending

	// Owned by the session goroutine.
	lat      [latencyBatch]int64
	sent     [latencyBatch]int64 // the samples' publish times
	nlat     int
	latSince int64 // unix ns of the batch's first sample
	lastSeq  int64

	// Written before setup is closed, read after.
	failReason string

	// Set by the session goroutine before its read loop: the connection
	// the callbacks answer pings on.
	c *Conn

	// Shared.
	state      atomic.Int32
	conn       atomic.Pointer[Conn]
	delivered  atomic.Uint64 // measured market frames
	wireBytes  atomic.Uint64 // their size on the wire
	outOfOrder atomic.Uint64 // measured market frames whose seq did not increase
	errFrames  atomic.Uint64 // error frames after the subscribe ack
}

func newSession(r *runner, id, ch int, apiKey string, subscribe []byte) *session {
	return &session{id: id, ch: ch, apiKey: apiKey, subscribe: subscribe, run: r, setup: make(chan struct{})}
}

// settle moves the session out of statePending once; reason is empty on
// success. It reports whether this call won.
func (s *session) settle(to int32, reason string) bool {
	if !s.state.CompareAndSwap(statePending, to) {
		return false
	}
	s.failReason = reason
	close(s.setup)
	return true
}

// fail settles the session as failed and closes its connection, if any.
func (s *session) fail(reason string) {
	if s.settle(stateFailed, reason) {
		if c := s.conn.Load(); c != nil {
			_ = c.Close()
		}
	}
}

// start dials, subscribes and reads until the connection ends. It runs on
// its own goroutine; the runner's dial gate bounds concurrent dials.
func (s *session) start(ctx context.Context) {
	r := s.run
	if err := r.gateDial(ctx); err != nil {
		s.settle(stateFailed, FailReason(err))
		return
	}
	timeout := time.AfterFunc(r.cfg.ConnectTimeout, func() { s.fail("timeout") })
	dctx, cancel := context.WithTimeout(ctx, r.cfg.ConnectTimeout)
	t0 := time.Now()
	c, err := Dial(dctx, r.cfg.URL, DialOptions{
		APIKey:         s.apiKey,
		LocalAddr:      r.sourceAddr(s.id),
		ReadBufferSize: r.cfg.ReadBufferSize,
		Deflate:        r.cfg.deflate(s.id),
	})
	cancel()
	r.releaseDial()
	if err != nil {
		timeout.Stop()
		s.settle(stateFailed, FailReason(err))
		return
	}
	r.recordConnect(time.Since(t0))
	s.conn.Store(c)
	if s.state.Load() != statePending { // timed out meanwhile
		_ = c.Close()
		return
	}
	if err := c.WriteText(s.subscribe); err != nil {
		timeout.Stop()
		s.fail("subscribe " + FailReason(err))
		_ = c.Close()
		return
	}
	s.c = c
	err = c.ReadLoop(s.onFrames)
	timeout.Stop()
	s.flushLatency()
	_ = c.Close()
	if s.settle(stateFailed, "subscribe "+FailReason(err)) {
		return // ended before the ack
	}
	if s.state.Load() == stateSubscribed && !r.closing.Load() {
		r.recordDisconnect(FailReason(err))
	}
}

// onFrames handles one text frame: one message, or for Centrifugo one per
// line. 0 allocations.
func (s *session) onFrames(p []byte) {
	if s.run.cfg.Protocol != ProtocolCentrifugo {
		s.onFrame(p)
		return
	}
	for len(p) > 0 {
		line := p
		if i := bytes.IndexByte(p, '\n'); i >= 0 {
			line, p = p[:i], p[i+1:]
		} else {
			p = nil
		}
		if len(line) > 0 {
			s.onFrame(line)
		}
	}
}

// onFrame handles one text frame; p is valid only during the call.
// 0 allocations for market frames.
func (s *session) onFrame(p []byte) {
	switch classifyFor(s.run.cfg.Protocol, p) {
	case kindPing:
		if s.c != nil {
			_ = s.c.WriteText(pong)
		}
	case kindMarket:
		ts, ok := ExtractInt(p, `"ts":`)
		if !ok {
			return
		}
		seq, _ := ExtractInt(p, `"seq":`)
		last := s.lastSeq
		s.lastSeq = seq
		if ts < s.run.measureFrom.Load() {
			return
		}
		s.delivered.Add(1)
		if s.c != nil {
			s.wireBytes.Add(uint64(s.c.MessageWireLen()))
		}
		if seq <= last {
			s.outOfOrder.Add(1)
		}
		now := time.Now().UnixNano()
		if s.nlat == 0 {
			s.latSince = now
		}
		s.lat[s.nlat] = now - ts
		s.sent[s.nlat] = ts
		s.nlat++
		if s.nlat == len(s.lat) || now-s.latSince > latencyFlushAge {
			s.flushLatency()
		}
	case kindSubscribe:
		s.settle(stateSubscribed, "")
	case kindError:
		if s.state.Load() == statePending {
			s.fail("subscribe " + extractString(p, `"code":`))
			return
		}
		s.errFrames.Add(1)
	}
}

// flushLatency hands the batched samples to the runner's shard.
func (s *session) flushLatency() {
	if s.nlat > 0 {
		s.run.recordLatency(s.id, s.sent[:s.nlat], s.lat[:s.nlat])
		s.nlat = 0
	}
}

// pong answers a Centrifugo server ping.
var pong = []byte(`{}`)

// notMeasuring is the measureFrom value before the publisher starts: no
// frame is counted.
const notMeasuring = math.MaxInt64
