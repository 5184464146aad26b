package loadtest

import (
	"fmt"
	"time"
)

// startProgress prints a line every ProgressInterval to Config.Progress until
// the returned stop function is called; stop waits for the goroutine.
//
//	[    3s] conns 1000 ok, 0 failed | pub 100/s | deliv 100000/s | p99 1.92 ms | err 0 | disc 0
//
// The storm scenario appends "| churn ok N, failed M".
func (r *runner) startProgress() (stop func()) {
	if r.cfg.Progress == nil {
		return func() {}
	}
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTicker(r.cfg.ProgressInterval)
		defer t.Stop()
		start, last := time.Now(), time.Now()
		var lastPub, lastDeliv uint64
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				ok, failed, deliv, errs := r.counts()
				pub := r.pub.Total()
				secs := now.Sub(last).Seconds()
				p99 := "-"
				if h := r.latency.merged(); h.TotalCount() > 0 {
					p99 = fmt.Sprintf("%.2f ms", microsToMs(h.ValueAtQuantile(99)))
				}
				r.mu.Lock()
				disc := 0
				for _, n := range r.disconnects {
					disc += n
				}
				r.mu.Unlock()
				churn := ""
				if s := r.storm; s != nil {
					churn = fmt.Sprintf(" | churn ok %d, failed %d", s.ok.Load(), s.failed.Load())
				}
				fmt.Fprintf(r.cfg.Progress, "[%5.0fs] conns %d ok, %d failed | pub %.0f/s | deliv %.0f/s | p99 %s | err %d | disc %d%s\n",
					now.Sub(start).Seconds(), ok, failed,
					float64(pub-lastPub)/secs, float64(deliv-lastDeliv)/secs, p99, errs, disc, churn)
				last, lastPub, lastDeliv = now, pub, deliv
			}
		}
	}()
	return func() {
		close(done)
		<-exited
	}
}

// counts sums the sessions' states and counters for the progress line.
func (r *runner) counts() (ok, failed int, delivered, errFrames uint64) {
	for _, s := range r.sessions {
		switch s.state.Load() {
		case stateSubscribed:
			ok++
			delivered += s.delivered.Load()
			errFrames += s.errFrames.Load()
		case stateFailed:
			failed++
		}
	}
	return ok, failed, delivered, errFrames
}
