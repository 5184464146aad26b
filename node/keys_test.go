package node_test

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"floodgate/auth"
	"floodgate/broker"
	"floodgate/keyapi"

	"github.com/coder/websocket"
)

const accountA = "FAe4sisG95oZ42w7buUn5qEE4TAnfTTFPiguZUHmhiF"

func TestUpgradeWithEachKindOfKey(t *testing.T) {
	c := newCluster(t)
	n := c.node(nodeOpts{})
	good := n.createKey(keyapi.CreateKeyRequest{Account: accountA})
	inactive := false
	off := n.createKey(keyapi.CreateKeyRequest{Account: accountA, Active: &inactive})
	past := time.Now().Add(-time.Minute)
	expired := n.createKey(keyapi.CreateKeyRequest{Account: accountA, ExpiresAt: &past})
	revoked := n.createKey(keyapi.CreateKeyRequest{Account: accountA})
	st := auth.StatusRevoked
	if _, err := n.admin.PatchKey(context.Background(), revoked.Key.Prefix, keyapi.KeyPatch{Status: &st}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, key string
		status    int
		body      string
	}{
		{"unknown", "AbCdEfGh_2mT8xQ9wY3kP7vN5rL1cZ", 401, `{"error":"Invalid API Key","code":"INVALID_API_KEY"}`},
		{"malformed", "not-a-key", 401, `{"error":"Invalid API Key","code":"INVALID_API_KEY"}`},
		{"wrong secret", good.Key.Prefix + "_2mT8xQ9wY3kP7vN5rL1cZ", 401, `{"error":"Invalid API Key","code":"INVALID_API_KEY"}`},
		{"revoked", revoked.APIKey, 401, `{"error":"Invalid API Key","code":"INVALID_API_KEY"}`},
		{"inactive", off.APIKey, 401, `{"error":"Inactive API Key","code":"INACTIVE_API_KEY"}`},
		{"expired", expired.APIKey, 401, `{"error":"Expired API Key","code":"EXPIRED_API_KEY"}`},
	}
	for _, tc := range cases {
		_, status, body := n.tryDial(keyHeader(tc.key))
		if status != tc.status || body != tc.body+"\n" {
			t.Errorf("%s: %d %s, want %d %s", tc.name, status, body, tc.status, tc.body)
		}
	}
	// The good key works through every carrier and is a key identity.
	// Credits are shared by the key's connections.
	for i, h := range []http.Header{keyHeader(good.APIKey), {"X-Api-Key": {good.APIKey}}, {"Sec-Websocket-Protocol": {"floodgate.v1, key." + good.APIKey}}} {
		cl := n.dial(h)
		cl.roundTrip(`{"method":"ping"}`, fmt.Sprintf(`{"channel":"pong","rl":{"r":%d,"q":300,"t":1}}`, 299-i))
	}
	// The refusals harmed nothing stored.
	v, err := n.admin.GetKey(context.Background(), good.Key.Prefix)
	if err != nil || v.Status != "active" {
		t.Fatalf("good key after refusals: %+v %v", v, err)
	}
}

func TestAccountSourcesNeedAKeyOfThatAccount(t *testing.T) {
	c := newCluster(t)
	n := c.node(nodeOpts{})
	k := n.createKey(keyapi.CreateKeyRequest{Account: accountA})
	cl := n.dial(keyHeader(k.APIKey))
	cl.send(`{"method":"subscribe","params":{"source":"account_orders","account":"` + accountA + `"}}`)
	if got := cl.read(); got != `{"channel":"subscribe","data":{"source":"account_orders","account":"`+accountA+`"},"rl":{"r":299,"q":300,"t":1}}` {
		t.Fatal(got)
	}
	cl.send(`{"method":"subscribe","params":{"source":"account_orders","account":"SomeoneElse"}}`)
	if got := cl.read(); got != `{"channel":"error","data":{"code":"FORBIDDEN","message":"account streams need an API key of that account"},"rl":{"r":298,"q":300,"t":1}}` {
		t.Fatal(got)
	}
	anon := n.dial(nil)
	anon.send(`{"method":"subscribe","params":{"source":"account_orders","account":"` + accountA + `"}}`)
	if got := anon.read(); got != `{"channel":"error","data":{"code":"FORBIDDEN","message":"account streams need an API key of that account"},"rl":{"r":124,"q":125,"t":1}}` {
		t.Fatal(got)
	}
}

// TestRevokeOnOneNodeClosesOnAnother: two brokers share one NATS and one
// store; a revoke through node A's operator API closes the key's client on
// node B within 1 s, and B refuses the key afterwards.
func TestRevokeOnOneNodeClosesOnAnother(t *testing.T) {
	c := newCluster(t)
	a, b := c.node(nodeOpts{shared: true}), c.node(nodeOpts{shared: true})
	k := a.createKey(keyapi.CreateKeyRequest{Account: accountA})
	other := a.createKey(keyapi.CreateKeyRequest{Account: accountA})
	onB := b.dial(keyHeader(k.APIKey))
	onB.roundTrip(`{"method":"ping","id":1}`, `{"channel":"pong","id":1,"rl":{"r":299,"q":300,"t":1}}`)
	bystander := b.dial(keyHeader(other.APIKey))
	bystander.roundTrip(`{"method":"ping"}`, `{"channel":"pong","rl":{"r":299,"q":300,"t":1}}`)

	st := auth.StatusRevoked
	start := time.Now()
	if _, err := a.admin.PatchKey(context.Background(), k.Key.Prefix, keyapi.KeyPatch{Status: &st}); err != nil {
		t.Fatal(err)
	}
	code, reason, at := onB.closed(2 * time.Second)
	if code != websocket.StatusPolicyViolation || reason != "api key revoked" {
		t.Fatalf("close %d %q", code, reason)
	}
	if d := at.Sub(start); d > time.Second {
		t.Fatalf("closed %v after the revoke, want within 1 s", d)
	}
	t.Logf("revoke on A closed the client on B after %v", at.Sub(start))
	if _, status, body := b.tryDial(keyHeader(k.APIKey)); status != 401 || body != `{"error":"Invalid API Key","code":"INVALID_API_KEY"}`+"\n" {
		t.Fatalf("revoked key on B: %d %s", status, body)
	}
	bystander.roundTrip(`{"method":"ping"}`, `{"channel":"pong","rl":{"r":298,"q":300,"t":1}}`)
}

func TestDeactivateClosesAndExpiryClosesWithoutAnAPICall(t *testing.T) {
	c := newCluster(t)
	n := c.node(nodeOpts{broker: brokerFastSweep()})
	k := n.createKey(keyapi.CreateKeyRequest{Account: accountA})
	cl := n.dial(keyHeader(k.APIKey))
	off := false
	if _, err := n.admin.PatchKey(context.Background(), k.Key.Prefix, keyapi.KeyPatch{Active: &off}); err != nil {
		t.Fatal(err)
	}
	if code, reason, _ := cl.closed(2 * time.Second); code != websocket.StatusPolicyViolation || reason != "api key deactivated" {
		t.Fatalf("deactivate: %d %q", code, reason)
	}

	soon := time.Now().Add(700 * time.Millisecond)
	exp := n.createKey(keyapi.CreateKeyRequest{Account: accountA, ExpiresAt: &soon})
	cl = n.dial(keyHeader(exp.APIKey))
	code, reason, at := cl.closed(3 * time.Second)
	if code != websocket.StatusPolicyViolation || reason != "api key expired" {
		t.Fatalf("expiry: %d %q", code, reason)
	}
	if at.Before(soon) || at.Sub(soon) > time.Second {
		t.Fatalf("closed at %v, expiry %v", at, soon)
	}
}

func TestFailedKeyAttemptsBlockTheIP(t *testing.T) {
	c := newCluster(t)
	n := c.node(nodeOpts{trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	good := n.createKey(keyapi.CreateKeyRequest{Account: accountA})
	from := func(ip, key string) http.Header {
		h := keyHeader(key)
		h.Set("X-Forwarded-For", ip)
		return h
	}
	for i := 0; i < 20; i++ {
		if _, status, _ := n.tryDial(from("203.0.113.7", fmt.Sprintf("Guess%03d_2mT8xQ9wY3kP7vN5rL1cZ", i))); status != 401 {
			t.Fatalf("attempt %d: %d", i, status)
		}
	}
	_, status, body := n.tryDial(from("203.0.113.7", "Guess999_2mT8xQ9wY3kP7vN5rL1cZ"))
	if status != 403 || body != `{"error":"IP temporarily blocked","code":"IP_BLOCKED"}`+"\n" {
		t.Fatalf("21st attempt: %d %s", status, body)
	}
	// Even the good key is refused from the blocked IP; other IPs and the
	// stored keys are unharmed.
	if _, status, _ := n.tryDial(from("203.0.113.7", good.APIKey)); status != 403 {
		t.Fatalf("good key from blocked IP: %d", status)
	}
	n.dial(from("198.51.100.1", good.APIKey)).roundTrip(`{"method":"ping"}`, `{"channel":"pong","rl":{"r":299,"q":300,"t":1}}`)
	keys, err := n.admin.ListKeys(context.Background(), accountA, "", "")
	if err != nil || len(keys) != 1 {
		t.Fatalf("keys after the attack: %d %v", len(keys), err)
	}
}

// TestConnectionEventsAreRecorded: a key's session end and a refused
// upgrade appear in its events through the operator API.
func TestConnectionEventsAreRecorded(t *testing.T) {
	c := newCluster(t)
	n := c.node(nodeOpts{})
	k := n.createKey(keyapi.CreateKeyRequest{Account: accountA})
	cl := n.dial(keyHeader(k.APIKey))
	cl.roundTrip(`{"method":"ping"}`, `{"channel":"pong","rl":{"r":299,"q":300,"t":1}}`)
	cl.c.Close(websocket.StatusNormalClosure, "bye")
	off := false
	if _, err := n.admin.PatchKey(context.Background(), k.Key.Prefix, keyapi.KeyPatch{Active: &off}); err != nil {
		t.Fatal(err)
	}
	if _, status, _ := n.tryDial(keyHeader(k.APIKey)); status != 401 {
		t.Fatalf("inactive key admitted: %d", status)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		evs, err := n.admin.KeyEvents(context.Background(), k.Key.Prefix, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 2 {
			closeEv, refusal := evs[0], evs[1]
			if closeEv.MsgsIn != 1 || closeEv.MsgsOut != 1 || closeEv.CloseReason != "client_closed" || closeEv.IP != "127.0.0.1" || closeEv.Node == "" {
				t.Fatalf("close event %+v", closeEv)
			}
			if refusal.Refusal != "INACTIVE_API_KEY" {
				t.Fatalf("refusal event %+v", refusal)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("events %+v", evs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRecheckClosesKeysRevokedWhileEventsWereMissed: a node that never got
// the control event (here: its events are not watched) closes the key's
// sessions at the next recheck.
func TestRecheckClosesKeysRevokedWhileEventsWereMissed(t *testing.T) {
	c := newCluster(t)
	a := c.node(nodeOpts{shared: true, recheck: 50 * time.Millisecond})
	k := a.createKey(keyapi.CreateKeyRequest{Account: accountA})
	cl := a.dial(keyHeader(k.APIKey))
	cl.roundTrip(`{"method":"ping"}`, `{"channel":"pong","rl":{"r":299,"q":300,"t":1}}`)
	// Revoke in the store directly: no control event is published.
	if _, err := c.store().Update(context.Background(), k.Key.Prefix, 5, func(r *auth.Record) error {
		r.Status = auth.StatusRevoked
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if code, reason, _ := cl.closed(2 * time.Second); code != websocket.StatusPolicyViolation || reason != "api key revoked" {
		t.Fatalf("close %d %q", code, reason)
	}
}

// TestTopKeysMetrics: per-key series exist only for the top keys.
func TestTopKeysMetrics(t *testing.T) {
	c := newCluster(t)
	n := c.node(nodeOpts{broker: broker.Options{MetricsTopKeys: 1}})
	busy := n.createKey(keyapi.CreateKeyRequest{Account: accountA})
	quiet := n.createKey(keyapi.CreateKeyRequest{Account: accountA})
	n.dial(keyHeader(busy.APIKey)).roundTrip(`{"method":"ping"}`, `{"channel":"pong","rl":{"r":299,"q":300,"t":1}}`)
	n.dial(keyHeader(busy.APIKey))
	n.dial(keyHeader(quiet.APIKey))
	// The server registers a session just after the handshake: poll.
	deadline := time.Now().Add(5 * time.Second)
	for {
		top := n.srv.TopKeys(5)
		if len(top) == 2 && top[0].Prefix == busy.Key.Prefix && top[0].Connections == 2 && top[0].MsgsIn == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("top keys %+v", top)
		}
		time.Sleep(5 * time.Millisecond)
	}
	mfs, err := n.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "floodgate_top_key_connections" {
			continue
		}
		if len(mf.GetMetric()) != 1 || mf.GetMetric()[0].GetLabel()[0].GetValue() != busy.Key.Prefix || mf.GetMetric()[0].GetGauge().GetValue() != 2 {
			t.Fatalf("series %v", mf.GetMetric())
		}
		return
	}
	t.Fatal("no floodgate_top_key_connections series")
}

// TestInactiveKeyRetriesDoNotBlockTheIP: a deactivated key's owner retrying
// is not guessing keys; its IP is never blocked for it.
func TestInactiveKeyRetriesDoNotBlockTheIP(t *testing.T) {
	c := newCluster(t)
	n := c.node(nodeOpts{})
	off := false
	k := n.createKey(keyapi.CreateKeyRequest{Account: accountA, Active: &off})
	for i := 0; i < 25; i++ {
		if _, status, body := n.tryDial(keyHeader(k.APIKey)); status != 401 || !strings.Contains(body, "INACTIVE_API_KEY") {
			t.Fatalf("attempt %d: %d %s", i, status, body)
		}
	}
	n.dial(nil).roundTrip(`{"method":"ping"}`, `{"channel":"pong","rl":{"r":124,"q":125,"t":1}}`)
}

// TestRevokeClosesEverySessionOfTheKey: one node, three sessions of one
// key and one of another; a revoke closes all three and only them.
func TestRevokeClosesEverySessionOfTheKey(t *testing.T) {
	c := newCluster(t)
	n := c.node(nodeOpts{})
	k := n.createKey(keyapi.CreateKeyRequest{Account: accountA})
	other := n.createKey(keyapi.CreateKeyRequest{Account: accountA})
	var mine []*client
	for i := 0; i < 3; i++ {
		cl := n.dial(keyHeader(k.APIKey))
		cl.send(`{"method":"ping"}`)
		cl.read()
		mine = append(mine, cl)
	}
	bystander := n.dial(keyHeader(other.APIKey))
	st := auth.StatusRevoked
	if _, err := n.admin.PatchKey(context.Background(), k.Key.Prefix, keyapi.KeyPatch{Status: &st}); err != nil {
		t.Fatal(err)
	}
	for i, cl := range mine {
		if code, reason, _ := cl.closed(2 * time.Second); code != websocket.StatusPolicyViolation || reason != "api key revoked" {
			t.Fatalf("session %d: close %d %q", i, code, reason)
		}
	}
	bystander.roundTrip(`{"method":"ping"}`, `{"channel":"pong","rl":{"r":299,"q":300,"t":1}}`)
}
