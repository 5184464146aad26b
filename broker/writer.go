package broker

import "floodgate/internal/wsframe"

// maxIdleQueueCap is the queue capacity a session keeps while idle; larger
// backing arrays are dropped when the writer exits.
const maxIdleQueueCap = 64

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
		s.queuedBytes = 0
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

		if len(batch) > 0 || ping {
			if closing == ReasonSlowConsumer {
				// Its backlog is dropped: the close frame goes next.
				for _, it := range batch {
					srv.recycle(it)
				}
			} else {
				if buf == nil {
					buf = srv.writeBufs.Get().(*[]byte)
				}
				if err := s.writeBatch(buf, batch, ping); err != nil {
					for _, it := range batch {
						srv.recycle(it)
					}
					s.fail(ReasonWriteError)
					return
				}
			}
			for i := range batch {
				srv.recycle(batch[i])
				batch[i] = item{}
			}
			s.mu.Lock()
			if s.spare == nil {
				s.spare = batch[:0]
			}
			s.mu.Unlock()
			continue
		}
		// Nothing left to write and a close was requested.
		s.closeHandshake(closing)
		return
	}
}

// writeBatch copies the batch into *buf and writes it, flushing whenever
// the buffer fills. Frames larger than the buffer are written directly.
func (s *session) writeBatch(buf *[]byte, batch []item, ping bool) error {
	b := (*buf)[:0]
	limit := cap(b)
	var frames, writes int
	flush := func() error {
		if len(b) == 0 {
			return nil
		}
		writes++
		_, err := s.conn.Write(b)
		b = b[:0]
		return err
	}
	if ping {
		b = wsframe.AppendHeader(b, wsframe.OpPing, 0)
	}
	for _, it := range batch {
		w := it.wire
		if len(b)+len(w) > limit {
			if err := flush(); err != nil {
				return err
			}
			if len(w) > limit {
				writes++
				if _, err := s.conn.Write(w); err != nil {
					return err
				}
				frames++
				continue
			}
		}
		b = append(b, w...)
		frames++
	}
	err := flush()
	*buf = b[:0]
	s.msgsOut.Add(int64(frames))
	s.srv.m.framesOut.Add(float64(frames))
	s.srv.m.writes.Add(float64(writes))
	return err
}

// closeHandshake sends the close frame and waits for the peer's (bounded
// by coder/websocket at 5s each way).
func (s *session) closeHandshake(reason CloseReason) {
	switch reason.Code() {
	case 1006: // abnormal: no close frame can be sent
		_ = s.ws.CloseNow()
	default:
		_ = s.ws.Close(reason.Code(), reason.Text())
	}
}

// fail closes the socket at once after a write error.
func (s *session) fail(reason CloseReason) {
	s.mu.Lock()
	if s.closing == reasonNone {
		s.closing = reason
	}
	dropped := s.queue
	s.queue = nil
	s.mu.Unlock()
	for _, it := range dropped {
		s.srv.recycle(it)
	}
	_ = s.ws.CloseNow()
	// writing stays set, so no writer starts again on a dead socket;
	// enqueue discards frames because closing is set.
}
