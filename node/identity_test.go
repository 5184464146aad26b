package node_test

import (
	"context"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"floodgate/auth"
	"floodgate/keyapi"

	"github.com/coder/websocket"
)

// TestEmptyKeyIsInvalidAndAFailedAttempt: `PF-API-KEY:` with nothing in
// it is not anonymous: 401 INVALID_API_KEY, counted toward the IP block.
func TestEmptyKeyIsInvalidAndAFailedAttempt(t *testing.T) {
	c := newCluster(t)
	n := c.node(nodeOpts{trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	for _, h := range []http.Header{
		{"Pf-Api-Key": {""}}, {"X-Api-Key": {"  "}}, {"Sec-Websocket-Protocol": {"floodgate.v1, key."}},
	} {
		h.Set("X-Forwarded-For", "203.0.113.9")
		if _, status, body := n.tryDial(h); status != 401 || body != `{"error":"Invalid API Key","code":"INVALID_API_KEY"}`+"\n" {
			t.Fatalf("%v: %d %s", h, status, body)
		}
	}
	// 17 more empty keys make 20 failed attempts; the 21st is blocked.
	for i := 0; i < 17; i++ {
		n.tryDial(http.Header{"Pf-Api-Key": {""}, "X-Forwarded-For": {"203.0.113.9"}})
	}
	if _, status, body := n.tryDial(http.Header{"Pf-Api-Key": {""}, "X-Forwarded-For": {"203.0.113.9"}}); status != 403 || !strings.Contains(body, "IP_BLOCKED") {
		t.Fatalf("21st empty key: %d %s", status, body)
	}
	// Another IP is anonymous as before.
	n.dial(http.Header{"X-Forwarded-For": {"203.0.113.10"}}).roundTrip(`{"method":"ping"}`, `{"channel":"pong","rl":{"r":124,"q":125,"t":1}}`)
}

// TestTwoDifferentKeysAreABadRequest: no silent winner between key
// sources; the same key twice is fine.
func TestTwoDifferentKeysAreABadRequest(t *testing.T) {
	c := newCluster(t)
	n := c.node(nodeOpts{})
	a := n.createKey(keyapi.CreateKeyRequest{Account: accountA})
	b := n.createKey(keyapi.CreateKeyRequest{Account: accountA})
	for _, h := range []http.Header{
		{"Pf-Api-Key": {a.APIKey}, "X-Api-Key": {b.APIKey}},
		{"Pf-Api-Key": {a.APIKey}, "Sec-Websocket-Protocol": {"floodgate.v1, key." + b.APIKey}},
		{"Pf-Api-Key": {a.APIKey, b.APIKey}},
	} {
		_, status, body := n.tryDial(h)
		if status != 400 || !strings.Contains(body, `"code":"BAD_REQUEST"`) || !strings.Contains(body, "conflicting API keys") {
			t.Fatalf("%v: %d %s", h, status, body)
		}
	}
	n.dial(http.Header{"Pf-Api-Key": {a.APIKey}, "X-Api-Key": {a.APIKey}}).
		roundTrip(`{"method":"ping"}`, `{"channel":"pong","rl":{"r":299,"q":300,"t":1}}`)
	// The refused upgrades touched no key.
	for _, k := range []keyapi.CreatedKey{a, b} {
		if v, err := n.admin.GetKey(context.Background(), k.Key.Prefix); err != nil || v.Status != "active" {
			t.Fatalf("%s: %+v %v", k.Key.Prefix, v, err)
		}
	}
}

// TestCooldownAndQuotaRefusalHeaders: the cooldown 429 names its policy in
// the RateLimit fields; a daily quota's Retry-After is never longer than
// the day.
func TestCooldownAndQuotaRefusalHeaders(t *testing.T) {
	c := newCluster(t)
	n := c.node(nodeOpts{})
	flood := n.dial(nil)
	for i := 0; i < 40; i++ {
		flood.send(`{"method":"ping"}`)
	}
	if code, _, _ := flood.closed(5 * time.Second); code != websocket.StatusPolicyViolation {
		t.Fatalf("flood close %d", code)
	}
	_, resp, err := n.dialResp(nil)
	if err == nil || resp.StatusCode != 429 {
		t.Fatalf("reconnect during cooldown: %v %v", err, resp)
	}
	if resp.Header.Get("RateLimit-Policy") != `"cooldown";q=0;w=30` || !strings.HasPrefix(resp.Header.Get("RateLimit"), `"cooldown";r=0;t=`) ||
		!resp.Close {
		t.Fatalf("cooldown headers %v", resp.Header)
	}

	k := n.createKey(keyapi.CreateKeyRequest{Account: accountA, Quotas: &auth.Quotas{Daily: 2}})
	cl := n.dial(keyHeader(k.APIKey))
	cl.send(`{"method":"ping"}`)
	cl.read()
	cl.send(`{"method":"ping"}`)
	cl.read()
	cl.send(`{"method":"ping"}`)
	if got := cl.read(); !strings.Contains(got, "QUOTA_EXCEEDED") {
		t.Fatalf("3rd ping: %s", got)
	}
	cl.closed(5 * time.Second)
	_, resp, err = n.dialResp(keyHeader(k.APIKey))
	if err == nil || resp.StatusCode != 401 {
		t.Fatalf("quota upgrade: %v %v", err, resp)
	}
	secs, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
	if secs <= 0 || secs > 86400 {
		t.Fatalf("quota Retry-After %q, want 1..86400", resp.Header.Get("Retry-After"))
	}
}
