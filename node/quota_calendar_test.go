package node_test

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"floodgate/auth"
	"floodgate/keyapi"
)

// nextMidnight is the next 00:00 UTC after t.
func nextMidnight(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d+1, 0, 0, 0, 0, time.UTC)
}

// TestCalendarQuotaOverSockets: a key with a calendar daily quota of 3
// reports quotas.daily on the status endpoint with reset_at at the next
// 00:00 UTC; the 4th frame gets QUOTA_EXCEEDED with retry_after_ms until
// midnight, and the upgrade is refused with Retry-After until midnight.
func TestCalendarQuotaOverSockets(t *testing.T) {
	c := newCluster(t)
	n := c.node(nodeOpts{})
	k := n.createKey(keyapi.CreateKeyRequest{Account: accountA, Quotas: &auth.Quotas{Daily: 3, Total: 1000, Calendar: true}})
	cl := n.dial(keyHeader(k.APIKey))
	for i := 0; i < 3; i++ {
		cl.send(`{"method":"ping"}`)
		if got := cl.read(); !strings.HasPrefix(got, `{"channel":"pong"`) {
			t.Fatalf("ping %d: %s", i, got)
		}
	}
	before := time.Now()
	r := call(t, n.n, "GET", pathStatus, nil, "PF-API-KEY", k.APIKey)
	midnight := nextMidnight(before)
	if nextMidnight(time.Now()) != midnight {
		t.Skip("the test ran across midnight UTC")
	}
	var st struct {
		Quotas map[string]json.RawMessage `json:"quotas"`
	}
	if err := json.Unmarshal(r.env.Data, &st); err != nil || r.status != 200 {
		t.Fatalf("status %d %s %v", r.status, r.env.Data, err)
	}
	wantDaily := `{"limit":3,"used":3,"reset_at":"` + midnight.Format(time.RFC3339) + `"}`
	if string(st.Quotas["daily"]) != wantDaily || string(st.Quotas["total"]) != `{"limit":1000,"used":3}` {
		t.Fatalf("quotas %s, want daily %s", r.env.Data, wantDaily)
	}

	cl.send(`{"method":"ping","id":4}`)
	sent := time.Now()
	got := cl.read()
	var e struct {
		Data struct {
			Code         string `json:"code"`
			RetryAfterMs int64  `json:"retry_after_ms"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(got), &e); err != nil || e.Data.Code != "QUOTA_EXCEEDED" {
		t.Fatalf("4th ping: %s", got)
	}
	// The node's clock read the frame between sent and now.
	if lo, hi := time.Until(midnight), midnight.Sub(sent); time.Duration(e.Data.RetryAfterMs)*time.Millisecond < lo ||
		time.Duration(e.Data.RetryAfterMs)*time.Millisecond > hi+time.Millisecond {
		t.Fatalf("retry_after_ms %d, want %v..%v: %s", e.Data.RetryAfterMs, lo, hi, got)
	}
	cl.closed(2 * time.Second)

	sent = time.Now()
	_, resp, err := n.dialResp(keyHeader(k.APIKey))
	if err == nil || resp == nil || resp.StatusCode != 401 {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	ra, _ := strconv.ParseInt(resp.Header.Get("Retry-After"), 10, 64)
	if lo, hi := int64(time.Until(midnight)/time.Second), int64(midnight.Sub(sent)/time.Second)+1; ra < lo || ra > hi {
		t.Fatalf("Retry-After %d, want %d..%d", ra, lo, hi)
	}
}
