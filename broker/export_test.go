package broker

import (
	"net"
	"time"

	"floodgate/fanout"
	"floodgate/internal/proto"

	"github.com/valyala/fastjson"
)

// ParseFrame parses msg like a session does and reports the error code
// ("" when the frame is valid) and, for subscribe/unsubscribe, the subject.
func ParseFrame(p *fastjson.Parser, t *fanout.Sources, msg []byte, scratch []byte) (op Op, code string, subject []byte, out []byte) {
	req, idBuf, ferr := parseRequest(p, msg, scratch[:0])
	if ferr != nil {
		return req.op, ferr.code, nil, idBuf
	}
	if req.op == OpSubscribe || req.op == OpUnsubscribe {
		ch, sc, perr, _ := t.ResolveSkipping(req.params, idBuf, isOption)
		if perr != nil {
			return req.op, perr.Code, nil, sc
		}
		return req.op, "", ch.Subject, sc
	}
	return req.op, "", nil, idBuf
}

// TestSession is a session without a socket for hot-path tests: its writer
// never starts; Drain empties its queue like a writer would. Deliver
// offers frames of one channel, conflatable or not.
type TestSession struct {
	s *session
	c *subscription
}

// NewTestSession returns a session of srv that is never written; its
// Deliver channel is conflatable when conflatable is true.
func NewTestSession(srv *Server, conflatable ...bool) *TestSession {
	s := &session{srv: srv, budget: unlimited{}, subs: make(map[string]*subscription)}
	s.writeFn = s.writeLoop
	s.writing = true // pretend a writer runs, so none is started
	return &TestSession{s: s, c: &subscription{sess: s, conflatable: len(conflatable) > 0 && conflatable[0]}}
}

// Handle runs one client frame.
func (t *TestSession) Handle(msg []byte) { t.s.handle(msg, timeNow()) }

// Deliver offers a market frame.
func (t *TestSession) Deliver(f *fanout.Frame) bool { return t.c.Deliver(f) }

// Drain empties the queue, recycling replies, and returns the frames' bytes
// concatenated into dst.
func (t *TestSession) Drain(dst []byte) []byte {
	s := t.s
	s.mu.Lock()
	q := s.queue
	s.queue = s.spare
	s.spare = q[:0]
	s.queuedBytes, s.extraFrames, s.extraBytes = 0, 0, 0
	s.queueGen++
	s.mu.Unlock()
	for i, it := range q {
		dst = append(dst, it.wire...)
		s.srv.recycle(it)
		q[i] = item{}
	}
	return dst
}

func timeNow() time.Time { return time.Unix(1700000000, 0) }

// DrainTexts empties the queue and returns each frame's JSON text.
func (t *TestSession) DrainTexts() []string {
	s := t.s
	s.mu.Lock()
	q := s.queue
	s.queue = nil
	s.queuedBytes, s.extraFrames, s.extraBytes = 0, 0, 0
	s.queueGen++
	s.mu.Unlock()
	var out []string
	for _, it := range q {
		w := it.wire
		n := int(w[1] & 0x7f)
		off := 2
		switch n {
		case 126:
			off = 4
		case 127:
			off = 10
		}
		out = append(out, string(w[off:]))
		s.srv.recycle(it)
	}
	return out
}

// NewTestWriterSession returns a session whose writer writes to a
// discarding connection: Deliver queues, Write runs the writer once on the
// caller's goroutine. The session is metered (a key session of a server
// with MeterDelivery) when metered is true.
func NewTestWriterSession(srv *Server, metered bool) *TestSession {
	s := &session{srv: srv, budget: unlimited{}, subs: make(map[string]*subscription),
		conn: &wireConn{Conn: discardConn{}, writeTimeout: time.Minute}, metered: metered}
	s.id.KeyPrefix = "Bench123"
	s.writeFn = s.writeLoop
	s.writing = true // Write runs the writer; none is started
	return &TestSession{s: s, c: &subscription{sess: s}}
}

// Write runs the writer until the queue is empty, as the goroutine would.
func (t *TestSession) Write() {
	s := t.s
	s.wg.Add(1)
	s.writeLoop()
	s.mu.Lock()
	s.writing = true
	s.mu.Unlock()
}

// Delivered returns the session's delivered frames and bytes.
func (t *TestSession) Delivered() Delivered {
	return Delivered{Msgs: t.s.deliveredMsgs.Load(), Bytes: t.s.deliveredBytes.Load()}
}

// discardConn is a net.Conn whose writes succeed and go nowhere.
type discardConn struct{ net.Conn }

func (discardConn) Write(p []byte) (int, error)      { return len(p), nil }
func (discardConn) SetWriteDeadline(time.Time) error { return nil }

// ScopeAllows is the subscribe scope check: whether sc allows a source
// (private: an account source).
func ScopeAllows(sc proto.Scopes, private bool) bool { return scopeError(sc, private) == nil }

// Sweep runs one sweep of srv at now (a fake clock).
func Sweep(srv *Server, now time.Time) { srv.sweep(nil, now) }
