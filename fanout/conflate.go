package fanout

import (
	"sync"
	"time"
)

// Interval is a client-chosen conflation interval of a subscription.
type Interval uint8

// Intervals: Live is every message; the others at most one frame per
// interval, the latest value.
const (
	Live Interval = iota
	Every100ms
	Every250ms
	Every500ms
	Every1s
	numIntervals
)

// IntervalOf returns the Interval of a conflate_ms value, false for any
// value other than 100, 250, 500 or 1000.
func IntervalOf(ms int64) (Interval, bool) {
	for iv := Live + 1; iv < numIntervals; iv++ {
		if iv.Millis() == ms {
			return iv, true
		}
	}
	return Live, false
}

// Millis returns the interval in milliseconds (0 for Live).
func (iv Interval) Millis() int64 {
	switch iv {
	case Every100ms:
		return 100
	case Every250ms:
		return 250
	case Every500ms:
		return 500
	case Every1s:
		return 1000
	}
	return 0
}

// Duration returns the interval (0 for Live).
func (iv Interval) Duration() time.Duration {
	return time.Duration(iv.Millis()) * time.Millisecond
}

// group is the conflated subscribers of one channel at one interval: the
// work of conflation is per group, shared by its members. The dispatcher
// leaves each message in pending; the interval's conflator builds one
// frame of the latest pending message per tick and offers it to the set.
type group struct {
	// Immutable after creation.
	ch *channel
	iv Interval

	// Guarded by ch.mu.
	set     memberSet
	pending message // the latest message not yet sent
	dirty   bool    // pending holds a message
	queued  bool    // on the conflator's due list
	gone    bool    // the last member left; the group is dropped
	// lastSeq is the seq of the last sequenced frame sent, the "prev" of
	// the next one (what this group's members got) and a joining member's
	// ack seq; sent is that last message, a joining member's snapshot.
	// Written by the conflator only.
	lastSeq uint64
	sent    message
	sentGen uint64
	snap    snapCache
}

// offerLocked keeps m as the group's latest and puts the group on its
// conflator's due list; ch.mu is held.
func (g *group) offerLocked(m *message) {
	g.pending = *m
	g.dirty = true
	if !g.queued {
		g.queued = true
		g.ch.hub.confl[g.iv].add(g)
	}
}

// flush sends the group's latest message, if any, as one frame.
func (g *group) flush(comp *compressor) {
	ch := g.ch
	ch.mu.Lock()
	g.queued = false
	if g.gone || !g.dirty {
		ch.mu.Unlock()
		return
	}
	m := g.pending
	g.pending, g.dirty = message{}, false
	compressed := g.set.compressed > 0
	lastSeq := g.lastSeq
	ch.mu.Unlock()

	if m.seq != 0 && lastSeq != 0 {
		m.prev = lastSeq
	}
	f := buildFrame(ch.envelope, &m, comp, compressed)
	met := ch.hub.m
	met.countFrame(f)
	ch.mu.Lock()
	// A member joining before this walk acked lastSeq and gets this frame,
	// whose prev is lastSeq; one joining after acks m.seq.
	if m.seq != 0 {
		g.lastSeq = m.seq
	}
	g.sent = m
	g.sentGen++
	accepted := 0
	if !g.gone {
		accepted = g.set.walk(f)
	}
	ch.mu.Unlock()
	met.msgsOut.Add(float64(accepted))
	met.conflatedOut.Add(float64(accepted))
}

// conflator ticks one interval for every group of it: one goroutine per
// interval, whatever the number of channels. It ticks only while groups
// have something to send; the first tick after an idle spell is immediate,
// and ticks are at least the interval apart, so a member gets at most one
// frame per interval and its first one within an interval.
type conflator struct {
	// Immutable after NewHub.
	hub   *Hub
	every time.Duration
	wake  chan struct{} // capacity 1: due went from empty to not empty

	// Owned by run.
	comp *compressor

	// Guarded by mu.
	mu  sync.Mutex
	due []*group
}

// add queues g for the next tick; g's channel lock is held (lock order:
// channel, then conflator).
func (c *conflator) add(g *group) {
	c.mu.Lock()
	c.due = append(c.due, g)
	first := len(c.due) == 1
	c.mu.Unlock()
	if first {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
}

func (c *conflator) run() {
	defer c.hub.wg.Done()
	stop := c.hub.stop
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var last time.Time
	var batch []*group
	for {
		select {
		case <-stop:
			return
		case <-c.wake:
		}
		for {
			next := last.Add(c.every)
			if d := time.Until(next); d > 0 {
				timer.Reset(d)
				select {
				case <-stop:
					timer.Stop()
					return
				case <-timer.C:
				}
			}
			now := time.Now()
			if now.Sub(next) < c.every {
				last = next // keep the cadence: no drift from timer latency
			} else {
				last = now
			}
			c.mu.Lock()
			batch, c.due = c.due, batch[:0]
			c.mu.Unlock()
			if len(batch) == 0 {
				break // idle until the next message
			}
			for i, g := range batch {
				g.flush(c.comp)
				batch[i] = nil
			}
		}
	}
}
