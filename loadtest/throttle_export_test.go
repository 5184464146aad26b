package loadtest

import "time"

// ThrottleReply is one reply to a throttle ping, for ThrottleEstimate.
type ThrottleReply struct {
	Sent         time.Time // when the pinger sent the ping
	At           time.Time // when the pinger read the reply
	Admitted     bool      // pong; else a credit refusal
	RetryAfterMs int64     // of a refusal
}

// ThrottleEstimate records replies, in the order given, for one identity
// measured from measureFrom for measured, and returns its estimated
// admitted rate and the method.
func ThrottleEstimate(measureFrom time.Time, measured time.Duration, replies []ThrottleReply) (float64, string) {
	t := &throttle{measureFrom: measureFrom, until: measureFrom.Add(measured)}
	seconds := int((measured + time.Second - 1) / time.Second)
	s := &identityStats{admittedBySecond: make([]int, seconds), refusedBySecond: make([]int, seconds)}
	for _, r := range replies {
		rp := reply{outcome: outRefused, retryAfterMs: r.RetryAfterMs}
		if r.Admitted {
			rp.outcome = outAdmitted
		}
		s.record(r.Sent, r.At, &rp, t)
	}
	return s.admittedRate(measureFrom, measured)
}
