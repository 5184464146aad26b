package limiter_test

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"floodgate/limiter"
)

func TestAdmit_ConnectRate(t *testing.T) {
	l := newLimiter(t, nil)
	req := anonReq("192.0.2.44")
	for i := range 300 {
		mustAdmit(t, l, req, t0).Release()
		_ = i
	}
	_, err := l.Admit(context.Background(), req, t0)
	r := refusalOf(t, err, limiter.ErrConnectRate)
	if r.Status != http.StatusTooManyRequests || r.Code != "CONNECT_RATE" || r.RetryAfter != time.Second {
		t.Fatalf("%+v", r)
	}
	h := http.Header{}
	r.SetHeaders(h)
	if h.Get("Retry-After") != "1" ||
		h.Get("RateLimit-Policy") != `"connects";q=300;w=300, "credits";q=125;w=60` ||
		h.Get("RateLimit") != `"connects";r=0;t=1, "credits";r=125;t=0` {
		t.Fatalf("headers %v", h)
	}
	if _, err := l.Admit(context.Background(), req, t0.Add(time.Second-1)); err == nil {
		t.Fatal("admitted 1ns early")
	}
	mustAdmit(t, l, req, t0.Add(time.Second))
	if _, err := l.Admit(context.Background(), req, t0.Add(time.Second)); err == nil {
		t.Fatal("second admitted after one refill")
	}
}

func TestAdmit_ConcurrentConnections(t *testing.T) {
	l := newLimiter(t, nil)
	req := keyReq("AbCdEfGh")
	conns := make([]*limiter.Conn, 0, 100)
	for range 100 {
		conns = append(conns, mustAdmit(t, l, req, t0))
	}
	_, err := l.Admit(context.Background(), req, t0)
	r := refusalOf(t, err, limiter.ErrTooManyConnections)
	if r.Status != 429 || r.Code != "TOO_MANY_CONNECTIONS" || r.RetryAfterSeconds() != 10 ||
		r.Policy != `"connections";q=100, "credits";q=300;w=60` {
		t.Fatalf("%+v", r)
	}
	conns[0].Release()
	conns[0].Release() // twice is harmless
	mustAdmit(t, l, req, t0)
	if _, err := l.Admit(context.Background(), req, t0); err == nil {
		t.Fatal("101st admitted")
	}
	// An override raises the cap.
	req.Limits.MaxConnections = 102
	mustAdmit(t, l, req, t0)
	mustAdmit(t, l, req, t0)
	if _, err := l.Admit(context.Background(), req, t0); err == nil {
		t.Fatal("103rd admitted")
	}
}

func TestViolations_EscalatingCooldown(t *testing.T) {
	l := newLimiter(t, nil)
	req := anonReq("192.0.2.77")
	now := t0
	offend := func() {
		t.Helper()
		c := mustAdmit(t, l, req, now)
		for range 10 { // burst
			c.Charge(1, now)
		}
		for i := 1; i <= 10; i++ {
			if d := c.Charge(1, now); d.Allowed || d.Close {
				t.Fatalf("refusal %d: %+v", i, d)
			}
		}
		if d := c.Charge(1, now); !d.Close || d.CloseReason() != "rate limit exceeded" {
			t.Fatalf("11th refusal: %+v", d)
		}
		c.Release()
	}
	for _, cool := range []time.Duration{30 * time.Second, 2 * time.Minute, 10 * time.Minute, 10 * time.Minute} {
		offend()
		_, err := l.Admit(context.Background(), req, now)
		r := refusalOf(t, err, limiter.ErrCooldown)
		if r.Status != 429 || r.RetryAfter != cool {
			t.Fatalf("cooldown %v: %+v", cool, r)
		}
		// The RateLimit fields name the cooldown policy and its length.
		secs := int64(cool / time.Second)
		if r.Policy != fmt.Sprintf(`"cooldown";q=0;w=%d`, secs) || r.RateLimit != fmt.Sprintf(`"cooldown";r=0;t=%d`, secs) {
			t.Fatalf("cooldown headers %q %q", r.Policy, r.RateLimit)
		}
		if _, err := l.Admit(context.Background(), req, now.Add(cool-1)); err == nil {
			t.Fatal("admitted during cooldown")
		}
		now = now.Add(cool)
	}
	// An hour without offence forgets the escalation.
	now = now.Add(time.Hour)
	offend()
	_, err := l.Admit(context.Background(), req, now)
	if r := refusalOf(t, err, limiter.ErrCooldown); r.RetryAfter != 30*time.Second {
		t.Fatalf("after forgiveness: %v", r.RetryAfter)
	}
}

func TestViolations_SpreadOverWindowDoNotClose(t *testing.T) {
	l := newLimiter(t, nil)
	c := mustAdmit(t, l, anonReq("192.0.2.78"), t0)
	for range 10 {
		c.Charge(1, t0)
	}
	// Refusals 1 s apart: the bucket refills every 200 ms, so charge 5 at
	// a time to get one refusal per second; 11 refusals span 10 s.
	now := t0
	for i := range 11 {
		d := c.Charge(1, now)
		for d.Allowed {
			d = c.Charge(1, now)
		}
		if d.Close {
			t.Fatalf("closed at refusal %d although spread over %v", i, now.Sub(t0))
		}
		now = now.Add(time.Second)
	}
}

func TestFailedKeys_BlockAndExpiry(t *testing.T) {
	l := newLimiter(t, nil)
	ip := netip.MustParseAddr("198.51.100.7")
	for i := range 20 {
		if err := l.FailedKey(ip, t0.Add(time.Duration(i)*time.Second)); err != nil {
			t.Fatalf("attempt %d: %v", i+1, err)
		}
	}
	at := t0.Add(20 * time.Second)
	r := refusalOf(t, l.FailedKey(ip, at), limiter.ErrIPBlocked)
	if r.Status != http.StatusForbidden || r.Code != "IP_BLOCKED" || r.Message != "IP temporarily blocked" || r.RetryAfter != 5*time.Minute {
		t.Fatalf("%+v", r)
	}
	h := http.Header{}
	r.SetHeaders(h)
	if h.Get("Retry-After") != "300" || h.Get("RateLimit-Policy") != `"ip_block";q=20;w=60` || h.Get("RateLimit") != `"ip_block";r=0;t=300` {
		t.Fatalf("headers %v", h)
	}
	// Blocked for keys and anonymous alike, on the upgrade and before auth.
	if _, err := l.Admit(context.Background(), keyReq("AbCdEfGh"), at.Add(time.Minute)); err == nil {
		t.Fatal("key admitted from blocked IP")
	}
	r = refusalOf(t, l.CheckIP(ip, at.Add(5*time.Minute-1)), limiter.ErrIPBlocked)
	if r.RetryAfter != 1 {
		t.Fatalf("retry %v", r.RetryAfter)
	}
	if err := l.CheckIP(ip, at.Add(5*time.Minute)); err != nil {
		t.Fatalf("still blocked after 5 min: %v", err)
	}
	mustAdmit(t, l, keyReq("AbCdEfGh"), at.Add(5*time.Minute))
	// Other IPs never were.
	if err := l.CheckIP(netip.MustParseAddr("198.51.100.8"), at); err != nil {
		t.Fatal(err)
	}
}

func TestFailedKeys_SlowAttemptsNeverBlock(t *testing.T) {
	l := newLimiter(t, nil)
	ip := netip.MustParseAddr("2001:db8:1:2::5")
	for i := range 100 {
		// 21 attempts always span >= 60 s at 3 s apart.
		if err := l.FailedKey(ip, t0.Add(time.Duration(i)*3*time.Second)); err != nil {
			t.Fatalf("attempt %d blocked", i)
		}
	}
	// IPv6 is grouped by /64: a neighbour shares the history.
	other := netip.MustParseAddr("2001:db8:1:2:ffff::1")
	now := t0.Add(time.Hour)
	for range 20 {
		_ = l.FailedKey(ip, now)
	}
	if err := l.FailedKey(other, now); err == nil {
		t.Fatal("same /64 not blocked")
	}
	if err := l.CheckIP(netip.MustParseAddr("2001:db8:1:3::1"), now); err != nil {
		t.Fatal("other /64 blocked")
	}
}

func TestAddrIdentity(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":                "ip:192.0.2.1",
		"::ffff:192.0.2.1":         "ip:192.0.2.1",
		"2001:db8:1:2:3:4:5:6":     "ip:2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::":      "ip:2001:db8:1:2::/64",
		"fe80::1":                  "ip:fe80::/64",
		"2001:db8:aaaa:bbbb::cccc": "ip:2001:db8:aaaa:bbbb::/64",
	} {
		if got := limiter.AddrIdentity(netip.MustParseAddr(in)); got != want {
			t.Errorf("%s: %s, want %s", in, got, want)
		}
	}
	if limiter.KeyIdentity("AbCdEfGh") != "key:AbCdEfGh" {
		t.Fatal("key identity")
	}
}

func TestAdmit_InvalidRequest(t *testing.T) {
	l := newLimiter(t, nil)
	if _, err := l.Admit(context.Background(), limiter.Request{}, t0); err != limiter.ErrInvalidRequest {
		t.Fatal(err)
	}
}

func TestSweep_EvictsIdleIdentities(t *testing.T) {
	l := newLimiter(t, nil)
	live := mustAdmit(t, l, keyReq("Live0000"), t0)
	live.Charge(1, t0)
	for i := range 1000 {
		a := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		c := mustAdmit(t, l, anonReq(a.String()), t0)
		c.Charge(1, t0)
		c.Release()
	}
	if n := l.Identities(); n != 1001 {
		t.Fatalf("identities %d", n)
	}
	// Still inside the connect-rate and credit debt: kept.
	if n := l.Sweep(t0.Add(500 * time.Millisecond)); n != 1001 {
		t.Fatalf("early sweep kept %d", n)
	}
	// After 1 s (connect refill) and 480 ms (one anonymous credit) all idle
	// anonymous identities go; the live key stays.
	if n := l.Sweep(t0.Add(time.Second)); n != 1 {
		t.Fatalf("sweep kept %d, want 1", n)
	}
	if d := live.Charge(1, t0.Add(time.Second)); !d.Allowed || d.Remaining != 299 || live.Identity() != "key:Live0000" {
		t.Fatalf("live identity lost state: %+v", d)
	}
	// A cooled-down identity is kept until its offence is forgotten.
	c := mustAdmit(t, l, anonReq("10.9.9.9"), t0)
	for range 21 {
		c.Charge(1, t0)
	}
	c.Release()
	if n := l.Sweep(t0.Add(30 * time.Minute)); n != 2 {
		t.Fatalf("offender evicted early: %d", n)
	}
	if n := l.Sweep(t0.Add(time.Hour)); n != 1 {
		t.Fatalf("offender kept: %d", n)
	}
}
