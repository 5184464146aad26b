package broker

import (
	"errors"
	"net"
	"time"

	"floodgate/internal/wsframe"
)

// maxIdleQueueCap is the queue capacity a session keeps while idle; larger
// backing arrays are dropped when the writer exits.
const maxIdleQueueCap = 64

// pingFrame is a server websocket ping with no payload.
var pingFrame = [2]byte{0x80 | wsframe.OpPing, 0}

// writeLoop is the session's writer: it drains the queue into one pooled
// buffer, writes it with one syscall, and repeats until the queue is empty,
// then exits. It also writes pings and performs the close handshake.
func (s *session) writeLoop() {
	defer s.wg.Done()
	srv := s.srv
	var (
		batch []item
		buf   *[]byte
	)
	defer func() {
		if buf != nil {
			srv.writeBufs.Put(buf)
		}
	}()
	for {
		s.mu.Lock()
		batch, s.queue = s.queue, s.spare
		s.spare = nil
		s.queuedBytes, s.extraFrames, s.extraBytes = 0, 0, 0
		s.queueGen++
		ping := s.pingDue
		s.pingDue = false
		closing := s.closing
		if len(batch) == 0 && !ping && closing == reasonNone {
			s.writing = false
			if cap(batch) <= maxIdleQueueCap {
				s.spare = batch[:0]
			}
			if cap(s.queue) > maxIdleQueueCap {
				s.queue = nil
			}
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()

		if len(batch) == 0 && !ping {
			// Nothing left to write and a close was requested.
			s.closeHandshake(closing)
			return
		}
		srv.m.observeBatch(batch)
		var err error
		switch {
		case closing == ReasonSlowConsumer:
			// Its backlog is dropped: the close frame goes next.
			srv.m.drop(DropSlowConsumerClose, len(batch))
		case len(batch) == 1 && !ping:
			// One frame: write it as it is, no copy.
			err = s.write(batch[0].wire, 1)
		default:
			if buf == nil {
				buf = srv.writeBufs.Get().(*[]byte)
			}
			err = s.writeBatch(buf, batch, ping)
		}
		// Recycle the replies; count the channel frames for the meter in
		// the same pass (meter.go).
		var msgs, bytes int64
		for i := range batch {
			if r := batch[i].reply; r != nil {
				srv.replies.put(r)
			} else {
				msgs++
				bytes += int64(len(batch[i].wire))
			}
			batch[i] = item{}
		}
		if s.metered && msgs != 0 && err == nil && closing != ReasonSlowConsumer {
			s.deliveredMsgs.Add(msgs)
			s.deliveredBytes.Add(bytes)
		}
		if err != nil {
			reason := ReasonWriteError
			if errors.Is(err, net.ErrClosed) {
				reason = ReasonClientClosed // the client's close was echoed
			}
			s.fail(reason)
			return
		}
		s.mu.Lock()
		if s.spare == nil {
			s.spare = batch[:0]
		}
		s.mu.Unlock()
	}
}

// write writes b, which holds frames complete websocket frames, with one
// socket write.
func (s *session) write(b []byte, frames int) error {
	_, err := s.conn.Write(b)
	s.msgsOut.Add(int64(frames))
	s.srv.m.framesOut.Add(float64(frames))
	s.srv.m.writes.Inc()
	return err
}

// writeBatch copies the batch into *buf and writes it, flushing whenever
// the buffer fills. Frames larger than the buffer are written directly.
func (s *session) writeBatch(buf *[]byte, batch []item, ping bool) error {
	b := (*buf)[:0]
	limit := cap(b)
	frames := 0
	if ping {
		b = append(b, pingFrame[:]...)
	}
	for _, it := range batch {
		w := it.wire
		if len(b)+len(w) > limit && len(b) > 0 {
			if err := s.write(b, frames); err != nil {
				return err
			}
			b, frames = b[:0], 0
		}
		if len(w) > limit {
			if err := s.write(w, 1); err != nil {
				return err
			}
			continue
		}
		b = append(b, w...)
		frames++
	}
	var err error
	if len(b) > 0 {
		err = s.write(b, frames)
	}
	*buf = b[:0]
	return err
}

// closeHandshake sends the close frame and waits for the peer's: 5 s for
// the write (coder/websocket) and CloseTimeout for the reads, which a read
// deadline enforces: coder/websocket skips the rest of a pending frame
// without a timeout of its own, so a client that stops sending mid-frame
// would otherwise hold the session forever.
func (s *session) closeHandshake(reason CloseReason) {
	if reason.Code() == 1006 { // abnormal: no close frame can be sent
		_ = s.ws.CloseNow()
		return
	}
	_ = s.conn.SetReadDeadline(time.Now().Add(s.srv.opts.CloseTimeout))
	_ = s.ws.Close(reason.Code(), reason.Text())
}

// fail closes the socket at once after a write error.
func (s *session) fail(reason CloseReason) {
	s.mu.Lock()
	if s.closing == reasonNone {
		s.closing = reason
	}
	dropped := s.queue
	s.queue = nil
	s.queueGen++
	s.queuedBytes, s.extraFrames, s.extraBytes = 0, 0, 0
	s.mu.Unlock()
	for _, it := range dropped {
		s.srv.recycle(it)
	}
	s.srv.m.drop(DropClosing, len(dropped))
	_ = s.ws.CloseNow()
	// writing stays set, so no writer starts again on a dead socket;
	// enqueue discards frames because closing is set.
}
