package node_test

import (
	"strings"
	"testing"

	"floodgate/keyapi"
	"floodgate/limiter"
	"floodgate/node"
)

// TestPerSourceCostsOverSockets: with limits.costs.subscribe {default: 1,
// book: 5, account_orders: 0}, a book subscribe lowers rl.r by 5, a
// trades subscribe by 1, an account_orders subscribe not at all, and the
// free frames still count toward the connection's message rate. The key
// status endpoint shows the same budget.
func TestPerSourceCostsOverSockets(t *testing.T) {
	lim := limiter.DefaultConfig()
	lim.Costs.Subscribe = limiter.SourceCosts{Default: 1, BySource: map[string]int64{"book": 5, "account_orders": 0}}
	lim.Costs.Unsubscribe = limiter.SourceCosts{Default: 1, BySource: map[string]int64{"account_orders": 0}}
	lim.Tiers.Key.ConnBurst = 6
	lim.Tiers.Key.ConnMessagesPerSecond = 0.01 // no refill while the test runs
	c := newCluster(t)
	n := c.node(nodeOpts{limits: &lim})
	k := n.createKey(keyapi.CreateKeyRequest{Account: accountA})
	cl := n.dial(keyHeader(k.APIKey))
	rlTrip(t, cl, `{"method":"subscribe","params":{"source":"book","symbol":"BTC","agg_level":1}}`,
		`{"channel":"subscribe","data":{"source":"book","symbol":"BTC","agg_level":1},"rl":{"r":295,"q":300,"t":`)
	rlTrip(t, cl, `{"method":"subscribe","params":{"source":"trades","symbol":"BTC"}}`,
		`{"channel":"subscribe","data":{"source":"trades","symbol":"BTC"},"rl":{"r":294,"q":300,"t":`)
	rlTrip(t, cl, `{"method":"subscribe","params":{"source":"account_orders","account":"`+accountA+`"}}`,
		`{"channel":"subscribe","data":{"source":"account_orders","account":"`+accountA+`"},"rl":{"r":294,"q":300,"t":`)
	rlTrip(t, cl, `{"method":"unsubscribe","params":{"source":"account_orders","account":"`+accountA+`"}}`,
		`{"channel":"unsubscribe","data":{"source":"account_orders","account":"`+accountA+`"},"rl":{"r":294,"q":300,"t":`)

	r := call(t, n.n, "GET", pathStatus, nil, "PF-API-KEY", k.APIKey)
	if r.status != 200 || !strings.Contains(string(r.env.Data), `"rate_limit":{"limit":300,"remaining":294,`) {
		t.Fatalf("status: %d %s", r.status, r.env.Data)
	}
	// 4 frames of the burst of 6 are spent; free subscribes use the last
	// two (the second is refused as ALREADY_SUBSCRIBED after the charge),
	// then the connection's message rate refuses them; credits never move.
	sub := `{"method":"subscribe","params":{"source":"account_orders","account":"` + accountA + `"}}`
	rlTrip(t, cl, sub, `{"channel":"subscribe","data":{"source":"account_orders","account":"`+accountA+`"},"rl":{"r":294,"q":300,"t":`)
	rlTrip(t, cl, sub, `{"channel":"error","data":{"code":"ALREADY_SUBSCRIBED","message":"already subscribed"},"rl":{"r":294,"q":300,"t":`)
	cl.send(sub)
	if got := cl.read(); !strings.HasPrefix(got, `{"channel":"error","data":{"code":"RATE_LIMITED","message":"Rate limit exceeded: connection message rate","retry_after_ms":`) ||
		!strings.Contains(got, `"rl":{"r":294,"q":300,`) {
		t.Fatalf("a free frame over the message rate: %s", got)
	}
}

// rlTrip sends req and checks that the reply starts with want (the rl.t
// that follows depends on the wall clock).
func rlTrip(t *testing.T, cl *client, req, want string) {
	t.Helper()
	cl.send(req)
	if got := cl.read(); !strings.HasPrefix(got, want) {
		t.Fatalf("%s\n got  %s\n want %s...", req, got, want)
	}
}

// TestReloadRebuildsCosts: a reload changes the per-source costs of live
// connections; one naming an unknown source changes nothing.
func TestReloadRebuildsCosts(t *testing.T) {
	c := newCluster(t)
	n := c.node(nodeOpts{})
	k := n.createKey(keyapi.CreateKeyRequest{Account: accountA})
	cl := n.dial(keyHeader(k.APIKey))
	cl.roundTrip(`{"method":"subscribe","params":{"source":"book","symbol":"BTC","agg_level":1}}`,
		`{"channel":"subscribe","data":{"source":"book","symbol":"BTC","agg_level":1},"rl":{"r":299,"q":300,"t":1}}`)
	f := node.DefaultFile()
	f.Limits.Costs.Subscribe = limiter.SourceCosts{Default: 1, BySource: map[string]int64{"bokk": 5}}
	if err := n.n.Reload(f); err == nil || err.Error() != "limiter: invalid config: costs.subscribe.bokk: no such source" {
		t.Fatalf("reload with an unknown source: %v", err)
	}
	f.Limits.Costs.Subscribe = limiter.SourceCosts{Default: 1, BySource: map[string]int64{"book": 10}}
	if err := n.n.Reload(f); err != nil {
		t.Fatal(err)
	}
	rlTrip(t, cl, `{"method":"subscribe","params":{"source":"book","symbol":"ETH","agg_level":1}}`,
		`{"channel":"subscribe","data":{"source":"book","symbol":"ETH","agg_level":1},"rl":{"r":289,"q":300,"t":`)
}
