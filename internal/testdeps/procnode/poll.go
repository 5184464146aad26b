package procnode

import "time"

// pollInterval is the pause between two checks of Poll.
const pollInterval = 20 * time.Millisecond

// Poll checks cond every 20 ms until it is true or timeout has passed
// since start, and returns how long that took from start (and false on
// timeout). cond runs at least once.
func Poll(start time.Time, timeout time.Duration, cond func() bool) (time.Duration, bool) {
	deadline := start.Add(timeout)
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		if cond() {
			return time.Since(start), true
		}
		if time.Now().After(deadline) {
			return time.Since(start), false
		}
		<-tick.C
	}
}
