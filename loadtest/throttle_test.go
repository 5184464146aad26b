package loadtest_test

import (
	"context"
	"math"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"floodgate/limiter"
	"floodgate/loadtest"
)

func TestParseThrottleReply(t *testing.T) {
	for _, c := range []struct {
		frame   string
		outcome string
		retry   int64
		r, q    int64
		hasRL   bool
	}{
		{`{"channel":"pong","rl":{"r":17,"q":300,"t":4}}`, "admitted", 0, 17, 300, true},
		{`{"channel":"pong"}`, "admitted", 0, 0, 0, false},
		{`{"channel":"error","data":{"code":"RATE_LIMITED","message":"Rate limit exceeded: credits","retry_after_ms":187},"rl":{"r":0,"q":20,"t":2}}`,
			"refused", 187, 0, 20, true},
		{`{"channel":"error","data":{"code":"RATE_LIMITED","message":"Rate limit exceeded: connection message rate","retry_after_ms":9},"rl":{"r":5,"q":20,"t":1}}`,
			"refused_conn", 9, 5, 20, true},
		{`{"channel":"error","data":{"code":"QUOTA_EXCEEDED","message":"Rate limit exceeded: quota daily"}}`, "other", 0, 0, 0, false},
		{`{"channel":"notice","data":{"code":"RECONNECT","in_ms":60000}}`, "none", 0, 0, 0, false},
		{`{"channel":"trades","data":{"ts":1,"seq":1}}`, "none", 0, 0, 0, false},
	} {
		outcome, retry, r, q, hasRL := loadtest.ParseThrottleReply([]byte(c.frame))
		if outcome != c.outcome || retry != c.retry || r != c.r || q != c.q || hasRL != c.hasRL {
			t.Errorf("%s:\n got %s %d %d %d %v\nwant %s %d %d %d %v", c.frame, outcome, retry, r, q, hasRL,
				c.outcome, c.retry, c.r, c.q, c.hasRL)
		}
	}
}

func TestThrottleParse_NoAllocs(t *testing.T) {
	parse := loadtest.ThrottleParser()
	pong := []byte(`{"channel":"pong","rl":{"r":17,"q":300,"t":4}}`)
	refused := []byte(`{"channel":"error","data":{"code":"RATE_LIMITED","message":"Rate limit exceeded: credits","retry_after_ms":187},"rl":{"r":0,"q":20,"t":2}}`)
	if n := testing.AllocsPerRun(100, func() { parse(pong); parse(refused) }); n != 0 {
		t.Fatalf("%v allocations per reply", n)
	}
}

func BenchmarkThrottle_ParseReply(b *testing.B) {
	parse := loadtest.ThrottleParser()
	refused := []byte(`{"channel":"error","data":{"code":"RATE_LIMITED","message":"Rate limit exceeded: credits","retry_after_ms":187},"rl":{"r":0,"q":20,"t":2}}`)
	b.ReportAllocs()
	for b.Loop() {
		parse(refused)
	}
}

// simulateThrottle plays one identity against the broker's credit
// arithmetic (GCRA, q credits per window, retry_after_ms in whole ms):
// conns pingers start together and ping every send, or max(retry, pause)
// after reading a refusal. The broker takes a ping 100-150 µs after it is
// sent; the pinger reads the reply 100 µs to 5 ms later (its goroutine
// scheduled late in a burst of replies) and counts it then, so the
// replies of one burst are counted out of the broker's order.
func simulateThrottle(rng *rand.Rand, q int64, window time.Duration, conns int, send, pause time.Duration,
	start time.Time, length time.Duration) []loadtest.ThrottleReply {
	step, tat := int64(window)/q, start.UnixNano()
	tau := q * step
	next := make([]int64, conns)
	for i := range next {
		next[i] = start.UnixNano() + int64(i)*int64(20*time.Microsecond)
	}
	var out []loadtest.ThrottleReply
	for {
		i := 0
		for j := range next {
			if next[j] < next[i] {
				i = j
			}
		}
		sent := next[i]
		if sent >= start.Add(length).UnixNano() {
			break
		}
		at := sent + int64(100*time.Microsecond) + rng.Int64N(int64(50*time.Microsecond))
		read := at + int64(100*time.Microsecond) + rng.Int64N(int64(5*time.Millisecond))
		r := loadtest.ThrottleReply{Sent: time.Unix(0, sent), At: time.Unix(0, read), Admitted: true}
		if nt := max(tat, at) + step; nt-at > tau {
			r.Admitted = false
			r.RetryAfterMs = max((nt-at-tau)/int64(time.Millisecond), 1)
			next[i] = read + max(r.RetryAfterMs*int64(time.Millisecond), int64(pause))
		} else {
			tat = nt
			next[i] = sent + int64(send)
		}
		out = append(out, r)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].At.Before(out[b].At) })
	return out
}

// TestThrottleEstimate_RepliesCountedOutOfOrder: the run that found the
// bug (120 credits per 60 s, 10 connections at 1 ping/s, 30 s after a 2 s
// warm-up) for 100 identities whose replies are counted out of the
// broker's order within each burst. The broker is exact, so is every
// estimate (it used to be up to +17 % off here: a refusal counted before
// pongs the broker admitted ahead of it).
func TestThrottleEstimate_RepliesCountedOutOfOrder(t *testing.T) {
	start := time.Unix(1_700_000_000, 0)
	worst := 0.0
	for seed := range uint64(100) {
		rng := rand.New(rand.NewPCG(seed, 1))
		replies := simulateThrottle(rng, 120, time.Minute, 10, time.Second, 1200*time.Millisecond, start, 32*time.Second)
		got, method := loadtest.ThrottleEstimate(start.Add(2*time.Second), 30*time.Second, replies)
		errPct := 100 * (got - 2) / 2
		worst = max(worst, math.Abs(errPct))
		if method != "refusals" || math.Abs(errPct) > 0.05 {
			t.Errorf("seed %d: %.4f/s (%+.3f%%) by %s, want 2/s by refusals", seed, got, errPct, method)
		}
	}
	t.Logf("worst error %.4f%%", worst)
}

// TestThrottle_ManyIdentitiesExact: 20 keys with 5 connections each
// against the real broker (40 credits per 2 s: 20/s after a burst of 40),
// every connection pinging at 10/s. The broker admits exactly the credit
// rate: every identity's estimate is within 4 % of the rate (the replies
// of an identity's connections arrive in bursts and used to be counted out
// of order, putting some identities 5-10 % high). The estimate rests on
// reply times, so the bound leaves room for a loaded machine (quiet: under
// 0.5 %; measured up to 2.8 % with a load average of 8 on 2 cores). The
// counts admitted inside the measured window are within 5 % of each other,
// not +-1: what an identity's bucket holds when the window opens depends on
// how its connections' refusal pauses fell during the warmup (a few credits
// of the burst; on a loaded machine the counts spread 91..97).
func TestThrottle_ManyIdentitiesExact(t *testing.T) {
	t.Parallel()
	const identities, connsEach = 20, 5
	limits := limiter.DefaultConfig()
	for _, tier := range []*limiter.Tier{&limits.Tiers.Anonymous, &limits.Tiers.Key} {
		tier.Credits, tier.CreditWindow = 40, 2*time.Second
		tier.ConnMessagesPerSecond, tier.ConnBurst = 100, 100
	}
	limits.Violations.MaxRefusals = 10000
	n := startNode(t, testNodeOptions{limits: &limits})
	rep, err := loadtest.Run(context.Background(), loadtest.Config{
		Scenario:     loadtest.ScenarioThrottle,
		URL:          n.wsURL,
		APIKeys:      n.createKeys(t, identities),
		Conns:        identities * connsEach,
		SendRate:     10,
		ExpectRate:   1200,
		RefusalPause: 250 * time.Millisecond,
		Warmup:       300 * time.Millisecond,
		Duration:     3 * time.Second,
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	tr := rep.Throttle
	if tr == nil || len(tr.PerIdentity) != identities || rep.ConnectionsOK != identities*connsEach || len(rep.Disconnects) != 0 {
		t.Fatalf("connections ok %d, disconnects %v, throttle %+v", rep.ConnectionsOK, rep.Disconnects, tr)
	}
	worst := 0.0
	lo, hi := tr.PerIdentity[0].Admitted, tr.PerIdentity[0].Admitted
	for _, id := range tr.PerIdentity {
		lo, hi = min(lo, id.Admitted), max(hi, id.Admitted)
		worst = max(worst, math.Abs(id.ErrorPct))
		if id.Method != "refusals" || math.Abs(id.ErrorPct) > 4 || id.Refused == 0 || id.RefusedConn != 0 || id.Conns != connsEach {
			t.Errorf("%s: %.4f/s by %s (%+.3f%% of %.0f/s), admitted %d, refused %d (+%d conn), by second %v / %v",
				id.Identity, id.AdmittedPerS, id.Method, id.ErrorPct, id.ConfiguredPerS, id.Admitted, id.Refused,
				id.RefusedConn, id.AdmittedBySecond, id.RefusedBySecond)
		}
	}
	t.Logf("worst error %.4f%%, admitted %d..%d", worst, lo, hi)
	if float64(hi-lo) > 0.05*float64(lo) {
		t.Errorf("identities admitted %d..%d: the broker's admission is not even", lo, hi)
	}
}
