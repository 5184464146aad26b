package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"floodgate/auth"
	"floodgate/broker"
	"floodgate/keyapi"
	"floodgate/limiter"

	"github.com/coder/websocket"
)

func brokerFastSweep() broker.Options {
	return broker.Options{SweepInterval: 20 * time.Millisecond}
}

// TestFloodGetsRateLimitedThenClosed: an anonymous client flooding pings
// gets RATE_LIMITED with retry_after_ms once its connection burst (10) is
// spent, is closed 1008 after more than 10 refusals, and its IP then gets
// 429 on reconnect; a well-behaved client on another IP is untouched.
func TestFloodGetsRateLimitedThenClosed(t *testing.T) {
	c := newCluster(t)
	n := c.node(nodeOpts{})
	flood := n.dial(nil)
	for i := 0; i < 10; i++ {
		flood.send(`{"method":"ping"}`)
		if got := flood.read(); !strings.HasPrefix(got, `{"channel":"pong","rl":{"r":`) {
			t.Fatalf("ping %d: %s", i, got)
		}
	}
	refused := 0
	for i := 0; i < 20; i++ {
		flood.send(`{"method":"ping","id":` + string(rune('0'+i%10)) + `}`)
	}
	var closeCode websocket.StatusCode
	var closeReason string
	for {
		_, b, err := flood.c.Read(t.Context())
		if err != nil {
			closeCode, closeReason = websocket.CloseStatus(err), ""
			var ce websocket.CloseError
			if ok := asClose(err, &ce); ok {
				closeReason = ce.Reason
			}
			break
		}
		var m struct {
			Channel string `json:"channel"`
			Data    struct {
				Code         string `json:"code"`
				Message      string `json:"message"`
				RetryAfterMs int64  `json:"retry_after_ms"`
			} `json:"data"`
		}
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		if m.Channel == "pong" {
			continue // the bucket refilled a token meanwhile
		}
		if m.Channel != "error" || m.Data.Code != "RATE_LIMITED" || m.Data.RetryAfterMs <= 0 || m.Data.RetryAfterMs > 200 {
			t.Fatalf("refusal %s", b)
		}
		refused++
	}
	if refused != 11 || closeCode != websocket.StatusPolicyViolation || closeReason != "rate limit exceeded" {
		t.Fatalf("refused %d, close %d %q", refused, closeCode, closeReason)
	}
	// The identity is cooling down: reconnects get 429 with Retry-After.
	_, status, body := n.tryDial(nil)
	if status != 429 || !strings.Contains(body, `"code":"RATE_LIMITED"`) {
		t.Fatalf("reconnect during cooldown: %d %s", status, body)
	}
}

func TestExactRateLimitedReply(t *testing.T) {
	cfg := limiter.DefaultConfig()
	cfg.Tiers.Anonymous.ConnBurst = 1
	cfg.Tiers.Anonymous.ConnMessagesPerSecond = 1
	c := newCluster(t)
	n := c.node(nodeOpts{limits: &cfg})
	cl := n.dial(nil)
	cl.roundTrip(`{"method":"ping","id":1}`, `{"channel":"pong","id":1,"rl":{"r":124,"q":125,"t":1}}`)
	// retry_after_ms is the bucket's real wait (1000 ms minus the time
	// since the first ping); the limiter's fake-clock tests pin it exactly.
	cl.send(`{"method":"ping","id":2}`)
	got := cl.read()
	var m struct {
		Data struct {
			RetryAfterMs int64 `json:"retry_after_ms"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(got), &m); err != nil || m.Data.RetryAfterMs < 800 || m.Data.RetryAfterMs > 1000 {
		t.Fatalf("retry_after_ms in %s", got)
	}
	want := fmt.Sprintf(`{"channel":"error","data":{"code":"RATE_LIMITED","message":"Rate limit exceeded: connection message rate","retry_after_ms":%d},"id":2,"rl":{"r":124,"q":125,"t":1}}`, m.Data.RetryAfterMs)
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	// want pins rl r 124 on the refusal: the refused ping cost no credit.
}

func asClose(err error, ce *websocket.CloseError) bool {
	for err != nil {
		if e, ok := err.(websocket.CloseError); ok {
			*ce = e
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}

func TestConnectionCapGets429WithRateLimitFields(t *testing.T) {
	cfg := limiter.DefaultConfig()
	cfg.Tiers.Anonymous.MaxConnections = 2
	c := newCluster(t)
	n := c.node(nodeOpts{limits: &cfg})
	n.dial(nil)
	n.dial(nil)
	ctx := t.Context()
	_, resp, err := websocket.Dial(ctx, n.wsURL, nil)
	if err == nil {
		t.Fatal("third connection admitted over a cap of 2")
	}
	body := make([]byte, 512)
	k, _ := resp.Body.Read(body)
	if resp.StatusCode != 429 || !strings.Contains(string(body[:k]), `"code":"TOO_MANY_CONNECTIONS"`) {
		t.Fatalf("%d %s", resp.StatusCode, body[:k])
	}
	for _, h := range []string{"Retry-After", "RateLimit", "RateLimit-Policy"} {
		if resp.Header.Get(h) == "" {
			t.Errorf("429 lacks %s (headers %v)", h, resp.Header)
		}
	}
}

func TestQuotaUsedUpClosesLiveConnectionAndRefusesUpgrade(t *testing.T) {
	c := newCluster(t)
	n := c.node(nodeOpts{})
	k := n.createKey(keyapi.CreateKeyRequest{Account: accountA, Quotas: &auth.Quotas{Daily: 3}})
	cl := n.dial(keyHeader(k.APIKey))
	for i := 0; i < 3; i++ {
		cl.send(`{"method":"ping"}`)
		if got := cl.read(); !strings.HasPrefix(got, `{"channel":"pong"`) {
			t.Fatalf("ping %d: %s", i, got)
		}
	}
	cl.send(`{"method":"ping","id":4}`)
	got := cl.read()
	if !strings.Contains(got, `"code":"QUOTA_EXCEEDED"`) || !strings.Contains(got, `"id":4`) {
		t.Fatalf("4th ping: %s", got)
	}
	if code, reason, _ := cl.closed(2 * time.Second); code != websocket.StatusPolicyViolation || reason != "quota exceeded" {
		t.Fatalf("close %d %q", code, reason)
	}
	_, status, body := n.tryDial(keyHeader(k.APIKey))
	if status != 401 || body != `{"error":"Rate limit exceeded: quota daily","code":"QUOTA_EXCEEDED"}`+"\n" {
		t.Fatalf("upgrade with the quota used up: %d %s", status, body)
	}
}

// TestOverridesApplyToLiveConnections: an operator PATCH of a key's credit
// budget reaches a live connection on its next frame, and the operator API
// shows the live budget.
func TestOverridesApplyToLiveConnections(t *testing.T) {
	c := newCluster(t)
	n := c.node(nodeOpts{})
	k := n.createKey(keyapi.CreateKeyRequest{Account: accountA})
	cl := n.dial(keyHeader(k.APIKey))
	cl.roundTrip(`{"method":"ping"}`, `{"channel":"pong","rl":{"r":299,"q":300,"t":1}}`)
	credits := int64(1000)
	if _, err := n.admin.PatchKey(context.Background(), k.Key.Prefix, keyapi.KeyPatch{Limits: &keyapi.LimitsPatch{CreditsPerMinute: &credits}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		cl.send(`{"method":"ping"}`)
		got := cl.read()
		if strings.Contains(got, `"q":1000`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("override not applied within 2 s: %s", got)
		}
	}
	v, err := n.admin.GetKey(context.Background(), k.Key.Prefix)
	if err != nil || v.Live == nil || v.Live.Credits.Limit != 1000 || v.Live.Connections != 1 {
		t.Fatalf("admin show live: %+v %v", v.Live, err)
	}
}
