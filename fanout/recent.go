package fanout

import "time"

// recent is a channel's in-memory tail of sequenced frames, kept while
// replays use it: a resume storm (every client of a busy channel coming
// back with since) reads JetStream once and serves the other resumes from
// here. It holds the frames of one replay's read, extended by every live
// frame of the channel that chains to it (prev is its last seq), within
// recentMsgs frames and recentBytes bytes (oldest dropped first), and is
// dropped recentTTL after the last replay used it, or with the channel.
// Guarded by the channel's mu; the frames are the live ones, shared.
type recent struct {
	buf      []*Frame // circular, len(buf) a power of two up to recentMsgs
	head, n  int
	bytes    int
	used     int64         // unix ns of the last replay that used it
	fetching chan struct{} // closed when the read in progress ends; nil when none
	lost     uint64        // a read found the history short of this since (and so of any older one); 0: none
}

// Bounds of a channel's recent tail, and of all of them on a node.
const (
	recentMsgs  = 4096
	recentBytes = 1 << 20
	recentTTL   = 10 * time.Second
	maxRecent   = 256 // channels with a tail at once
)

func (r *recent) at(i int) *Frame { return r.buf[(r.head+i)&(len(r.buf)-1)] }

func (r *recent) last() *Frame {
	if r.n == 0 {
		return nil
	}
	return r.at(r.n - 1)
}

// reset empties the tail.
func (r *recent) reset() {
	for i := range r.n {
		r.buf[(r.head+i)&(len(r.buf)-1)] = nil
	}
	r.head, r.n, r.bytes = 0, 0, 0
}

// push appends f, which must chain to the last frame (or the tail be
// empty), dropping the oldest beyond the bounds.
func (r *recent) push(f *Frame) {
	if r.n == len(r.buf) {
		if len(r.buf) < recentMsgs {
			nb := make([]*Frame, max(2*len(r.buf), 64))
			for i := range r.n {
				nb[i] = r.at(i)
			}
			r.buf, r.head = nb, 0
		} else {
			r.dropFirst()
		}
	}
	r.buf[(r.head+r.n)&(len(r.buf)-1)] = f
	r.n++
	r.bytes += f.Len()
	for r.bytes > recentBytes && r.n > 1 {
		r.dropFirst()
	}
}

func (r *recent) dropFirst() {
	f := r.at(0)
	r.buf[r.head] = nil
	r.head = (r.head + 1) & (len(r.buf) - 1)
	r.n--
	r.bytes -= f.Len()
}

// extend appends a live frame when it chains to the tail; a frame that
// does not (a message was lost on the way) restarts the tail from it.
func (r *recent) extend(f *Frame) {
	if l := r.last(); l != nil && f.prev != l.seq {
		r.reset()
	}
	r.push(f)
}

// after returns the frames after since when the tail knows what follows
// since (since is its first frame's prev or one of its frames' seq) and
// reaches at least upTo; ok is false otherwise.
func (r *recent) after(since, upTo uint64) ([]*Frame, bool) {
	if r.n == 0 || r.last().seq < upTo {
		return nil, false
	}
	lo, hi := 0, r.n // the first frame with seq > since
	for lo < hi {
		mid := (lo + hi) / 2
		if r.at(mid).seq <= since {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	switch {
	case lo == 0 && r.at(0).prev != since:
		return nil, false
	case lo > 0 && r.at(lo-1).seq != since:
		return nil, false
	}
	out := make([]*Frame, 0, r.n-lo)
	for i := lo; i < r.n; i++ {
		out = append(out, r.at(i))
	}
	return out, true
}

// merge puts a replay's read (frames chained from since, oldest first) in
// front of the live frames the tail gathered meanwhile, when the two meet
// without a gap; otherwise the tail keeps what it had.
func (r *recent) merge(read []*Frame) {
	if len(read) == 0 {
		return
	}
	end := read[len(read)-1].seq
	var live []*Frame
	for i := range r.n {
		if f := r.at(i); f.seq > end {
			live = append(live, f)
		}
	}
	if len(live) > 0 && live[0].prev != end {
		return
	}
	r.reset()
	for _, f := range read {
		r.push(f)
	}
	for _, f := range live {
		r.push(f)
	}
}
