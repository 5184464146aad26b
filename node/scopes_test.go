package node_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"floodgate/keyapi"
)

// TestKeyScopeMarketCannotSubscribeAccountStreams: a key with scopes
// ["market"] gets FORBIDDEN naming the missing scope on its own account's
// orders; public sources work; anonymous connections are unaffected.
func TestKeyScopeMarketCannotSubscribeAccountStreams(t *testing.T) {
	c := newCluster(t)
	n := c.node(nodeOpts{})
	k := n.createKey(keyapi.CreateKeyRequest{Account: accountA, Scopes: []string{"market"}})
	cl := n.dial(keyHeader(k.APIKey))
	cl.roundTrip(`{"method":"subscribe","params":{"source":"account_orders","account":"`+accountA+`"},"id":1}`,
		`{"channel":"error","data":{"code":"FORBIDDEN","message":"API key lacks scope \"account\""},"id":1,"rl":{"r":299,"q":300,"t":1}}`)
	cl.roundTrip(`{"method":"subscribe","params":{"source":"trades","symbol":"BTC"}}`,
		`{"channel":"subscribe","data":{"source":"trades","symbol":"BTC"},"rl":{"r":298,"q":300,"t":1}}`)
	acct := n.createKey(keyapi.CreateKeyRequest{Account: accountA, Scopes: []string{"account"}})
	ca := n.dial(keyHeader(acct.APIKey))
	ca.roundTrip(`{"method":"subscribe","params":{"source":"trades","symbol":"BTC"}}`,
		`{"channel":"error","data":{"code":"FORBIDDEN","message":"API key lacks scope \"market\""},"rl":{"r":299,"q":300,"t":1}}`)
	anon := n.dial(nil)
	anon.roundTrip(`{"method":"subscribe","params":{"source":"trades","symbol":"BTC"}}`,
		`{"channel":"subscribe","data":{"source":"trades","symbol":"BTC"},"rl":{"r":124,"q":125,"t":1}}`)
}

// TestScopeChangeEndsLiveSubscriptions: PATCH scopes ["account"] through
// node A ends the live public subscription of the key's clients on A (at
// once) and on B (key-control event) with SUBSCRIPTION_ENDED reason
// FORBIDDEN; the account subscription stays; a new public subscribe is
// refused.
func TestScopeChangeEndsLiveSubscriptions(t *testing.T) {
	c := newCluster(t)
	a, b := c.node(nodeOpts{shared: true}), c.node(nodeOpts{shared: true})
	k := a.createKey(keyapi.CreateKeyRequest{Account: accountA})
	other := a.createKey(keyapi.CreateKeyRequest{Account: accountA})
	var clients []*client
	for _, n := range []*testNode{a, b} {
		cl := n.dial(keyHeader(k.APIKey))
		cl.send(`{"method":"subscribe","params":{"source":"trades","symbol":"BTC"}}`)
		if got := cl.read(); !strings.HasPrefix(got, `{"channel":"subscribe","data":{"source":"trades","symbol":"BTC"}`) {
			t.Fatal(got)
		}
		cl.send(`{"method":"subscribe","params":{"source":"account_orders","account":"` + accountA + `"}}`)
		if got := cl.read(); !strings.HasPrefix(got, `{"channel":"subscribe","data":{"source":"account_orders"`) {
			t.Fatal(got)
		}
		clients = append(clients, cl)
	}
	bystander := b.dial(keyHeader(other.APIKey))
	bystander.send(`{"method":"subscribe","params":{"source":"trades","symbol":"BTC"}}`)
	bystander.read()

	sc := []string{"account"}
	if _, err := a.admin.PatchKey(context.Background(), k.Key.Prefix, keyapi.KeyPatch{Scopes: &sc}); err != nil {
		t.Fatal(err)
	}
	for i, cl := range clients {
		if got := cl.read(); got != `{"channel":"notice","data":{"code":"SUBSCRIPTION_ENDED","source":"trades","params":{"source":"trades","symbol":"BTC"},"reason":"FORBIDDEN"}}` {
			t.Fatalf("client %d: %s", i, got)
		}
		cl.send(`{"method":"subscribe","params":{"source":"trades","symbol":"BTC"}}`)
		if got := cl.read(); !strings.HasPrefix(got, `{"channel":"error","data":{"code":"FORBIDDEN","message":"API key lacks scope \"market\""}`) {
			t.Fatalf("client %d resubscribe: %s", i, got)
		}
		cl.send(`{"method":"subscribe","params":{"source":"account_orders","account":"` + accountA + `"}}`)
		if got := cl.read(); !strings.HasPrefix(got, `{"channel":"error","data":{"code":"ALREADY_SUBSCRIBED"`) {
			t.Fatalf("client %d account stream: %s", i, got)
		}
	}
	// The other key keeps its subscription: its next frame is the pong.
	bystander.send(`{"method":"ping"}`)
	if got := bystander.read(); !strings.HasPrefix(got, `{"channel":"pong"`) {
		t.Fatal(got)
	}
}

// TestAllowedCIDRs: a key limited to 198.51.100.0/24 works from there
// (the client IP told by a trusted proxy) and is refused 403
// IP_NOT_ALLOWED from 127.0.0.1, at the upgrade and on the status
// endpoint; each refusal is a failed key attempt of the IP, so the 21st
// is IP_BLOCKED.
func TestAllowedCIDRs(t *testing.T) {
	c := newCluster(t)
	n := c.node(nodeOpts{trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	k := n.createKey(keyapi.CreateKeyRequest{Account: accountA, AllowedCIDRs: []string{"198.51.100.0/24", "2001:db8::/32"}})
	h := keyHeader(k.APIKey)
	h.Set("X-Forwarded-For", "198.51.100.9")
	n.dial(h).roundTrip(`{"method":"ping"}`, `{"channel":"pong","rl":{"r":299,"q":300,"t":1}}`)
	if r := call(t, n.n, "GET", pathStatus, nil, "PF-API-KEY", k.APIKey, "X-Forwarded-For", "198.51.100.9"); r.status != 200 {
		t.Fatalf("status from an allowed IP: %d %s", r.status, r.code())
	}
	for i := 0; i < 20; i++ {
		if i%2 == 0 {
			_, status, body := n.tryDial(keyHeader(k.APIKey))
			if status != 403 || body != `{"error":"IP not allowed for this API key","code":"IP_NOT_ALLOWED"}`+"\n" {
				t.Fatalf("upgrade %d: %d %s", i, status, body)
			}
			continue
		}
		r := call(t, n.n, "GET", pathStatus, nil, "PF-API-KEY", k.APIKey)
		if r.status != 403 || r.code() != "IP_NOT_ALLOWED" || r.env.Error == nil || *r.env.Error != "IP not allowed for this API key" {
			t.Fatalf("status %d: %d %s", i, r.status, r.code())
		}
	}
	_, status, body := n.tryDial(keyHeader(k.APIKey))
	if status != 403 || !strings.Contains(body, "IP_BLOCKED") {
		t.Fatalf("21st attempt: %d %s", status, body)
	}
	// The allowed IP is not blocked.
	n.dial(h).roundTrip(`{"method":"ping"}`, fmt.Sprintf(`{"channel":"pong","rl":{"r":%d,"q":300,"t":1}}`, 298))
}
