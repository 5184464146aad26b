package broker

// Delivery metering (Options.MeterDelivery): each metered session counts
// the channel frames its writer wrote and their bytes as written, with two
// atomic adds per written batch (not per frame, no allocation, no lock).
// TakeDelivered hands the counts since its last call to the node, which
// folds them into the key's usage once per usage flush; a session that
// ends leaves its last counts in meterEnded for the next call.

// Delivered is a count of delivered channel frames and their bytes.
type Delivered struct {
	Msgs, Bytes int64
}

// The writer (writer.go) counts the channel frames of each written batch,
// the items without a reply (live, replayed and snapshot frames; replies
// and notices are not deliveries), in the pass that recycles the replies,
// and adds them to deliveredMsgs/deliveredBytes when the session is
// metered.

// TakeDelivered calls fn with each key's delivered frames and bytes since
// the previous call (live sessions and those that ended), at most once per
// key prefix per live session or ended key. It walks every session: call it
// once per usage flush, not per message. fn runs without the server's
// locks held except the metering lock; it must not call TakeDelivered.
func (s *Server) TakeDelivered(fn func(prefix string, d Delivered)) {
	live := s.snapshot(nil)
	s.meterMu.Lock()
	ended := s.meterEnded
	s.meterEnded = nil
	for _, sess := range live {
		if !sess.metered {
			continue
		}
		if d := sess.takeLocked(); d != (Delivered{}) {
			fn(sess.id.KeyPrefix, d)
		}
	}
	s.meterMu.Unlock()
	for p, d := range ended {
		fn(p, d)
	}
}

// takeLocked returns the session's counts since the last take; meterMu
// held.
func (s *session) takeLocked() Delivered {
	m, b := s.deliveredMsgs.Load(), s.deliveredBytes.Load()
	d := Delivered{Msgs: m - s.takenMsgs, Bytes: b - s.takenBytes}
	s.takenMsgs, s.takenBytes = m, b
	return d
}

// endMetered keeps an ended session's last counts for TakeDelivered.
func (s *Server) endMetered(sess *session) {
	if !sess.metered {
		return
	}
	s.meterMu.Lock()
	defer s.meterMu.Unlock()
	d := sess.takeLocked()
	if d == (Delivered{}) {
		return
	}
	if s.meterEnded == nil {
		s.meterEnded = make(map[string]Delivered)
	}
	e := s.meterEnded[sess.id.KeyPrefix]
	e.Msgs += d.Msgs
	e.Bytes += d.Bytes
	s.meterEnded[sess.id.KeyPrefix] = e
}
