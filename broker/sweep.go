package broker

import "time"

// ExpiryLastNotice is how long before a key's expiry its connections get
// the second KEY_EXPIRING notice.
const ExpiryLastNotice = time.Hour

// sweepLoop runs sweep every SweepInterval until Close.
func (s *Server) sweepLoop() {
	defer close(s.sweepDone)
	t := time.NewTicker(s.opts.SweepInterval)
	defer t.Stop()
	var buf []*session
	for {
		select {
		case <-s.stopSweep:
			return
		case now := <-t.C:
			buf = s.sweep(buf[:0], now)
		}
	}
}

// sweep enforces every session timer at now. It returns buf for reuse.
func (s *Server) sweep(buf []*session, now time.Time) []*session {
	s.forgetKeyChanges(now)
	buf = s.snapshot(buf)
	o := &s.opts
	nowNs := now.UnixNano()
	for i, sess := range buf {
		buf[i] = nil
		switch {
		case nowNs-sess.lastRead.Load() >= int64(o.IdleTimeout):
			sess.requestClose(ReasonIdle)
		case nowNs-sess.lastPong.Load() >= int64(o.PongTimeout):
			sess.requestClose(ReasonPingTimeout)
		case sess.expires.Load() != 0 && nowNs >= sess.expires.Load():
			sess.requestClose(ReasonKeyExpired)
		case now.Sub(sess.start) >= o.Lifetime:
			sess.requestClose(ReasonLifetime)
		default:
			if exp := sess.expires.Load(); exp != 0 && !sess.expiryNoticed && o.ExpiryNotice >= 0 && exp-nowNs <= int64(ExpiryLastNotice) {
				sess.expiryNoticed = true
				sess.noticeExpiring(time.Unix(0, exp), now)
			}
			if !sess.noticed && now.Sub(sess.start) >= o.Lifetime-o.LifetimeNotice {
				sess.noticed = true
				sess.notice("RECONNECT", sess.start.Add(o.Lifetime).Sub(now))
			}
			if now.Sub(sess.lastPing) >= o.PingInterval {
				sess.lastPing = now
				sess.requestPing()
			}
		}
	}
	return buf[:0]
}
