package loadtest_test

import (
	"testing"

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
