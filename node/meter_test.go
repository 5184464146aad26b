package node_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"floodgate/auth"
	"floodgate/console"
	"floodgate/keyapi"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"
)

// keyStatus reads GET /api/v1/api_keys/status with key.
func keyStatus(t *testing.T, n *testNode, key string) keyapi.KeyStatus {
	t.Helper()
	req, _ := http.NewRequest("GET", n.n.APIURL+"/api/v1/api_keys/status", nil)
	req.Header.Set("PF-API-KEY", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var env keyapi.Envelope
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil || resp.StatusCode != 200 {
		t.Fatalf("status: %d %v", resp.StatusCode, err)
	}
	var st keyapi.KeyStatus
	if err := json.Unmarshal(env.Data, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// dialCompressed dials with permessage-deflate (no context takeover).
func dialCompressed(t *testing.T, n *testNode, key string) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, n.wsURL, &websocket.DialOptions{HTTPHeader: keyHeader(key),
		CompressionMode: websocket.CompressionNoContextTakeover})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return &client{t: t, c: c}
}

// publishN publishes n messages of payload on subject and has each
// client read them.
func publishN(t *testing.T, natsURL, subject string, payload []byte, n int, readers ...*client) {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	for range n {
		if err := nc.Publish(subject, payload); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range readers {
		for range n {
			r.read()
		}
	}
}

// waitStatus polls the status endpoint until ok or a 10 s deadline.
func waitStatus(t *testing.T, n *testNode, key string, ok func(keyapi.KeyStatus) bool) keyapi.KeyStatus {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := keyStatus(t, n, key)
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("status never matched: %+v", st)
		}
		time.Sleep(20 * time.Millisecond) // polling interval of a condition with a deadline
	}
}

// TestStatusShowsDeliveredUsage: after a stream of N trades over a real
// socket, the key status endpoint reports N messages delivered today (and
// their bytes) once the usage flusher ran (the node's own, every second:
// polled), the credits charged today (a subscribe, a ping), and the same
// totals; the operator API shows the same numbers.
func TestStatusShowsDeliveredUsage(t *testing.T) {
	c := newCluster(t)
	n := c.node(nodeOpts{})
	k := n.createKey(keyapi.CreateKeyRequest{Account: accountA})
	cl := n.dial(keyHeader(k.APIKey))
	cl.send(`{"method":"subscribe","params":{"source":"trades","symbol":"BTC"}}`)
	cl.read()
	const N = 25
	publishN(t, n.n.NATSURL, "md.trades.BTC", []byte(`[{"s":"BTC","p":"1"}]`), N, cl)
	cl.send(`{"method":"ping"}`)
	cl.read()
	st := waitStatus(t, n, k.APIKey, func(st keyapi.KeyStatus) bool {
		return st.UsageToday.MessagesDelivered == N && st.UsageToday.Credits == 2
	})
	if st.UsageToday.BytesDelivered <= N*int64(len(`[{"s":"BTC","p":"1"}]`)) || st.UsageTotal != st.UsageToday {
		t.Fatalf("usage today %+v total %+v", st.UsageToday, st.UsageTotal)
	}
	v, err := n.admin.GetKey(context.Background(), k.Key.Prefix)
	if err != nil {
		t.Fatal(err)
	}
	if v.UsageToday != st.UsageToday || v.UsageTotal != st.UsageTotal {
		t.Fatalf("operator view %+v %+v, status %+v", v.UsageToday, v.UsageTotal, st.UsageToday)
	}
	// The top keys: the live session's delivered frames.
	var top = n.srv.TopKeys(10)
	if len(top) != 1 || top[0].Delivered.Msgs != N || top[0].Delivered.Bytes != st.UsageToday.BytesDelivered {
		t.Fatalf("top keys %+v", top)
	}
	if got := gauge(t, n.reg, "floodgate_top_key_messages_delivered"); got != N {
		t.Fatalf("floodgate_top_key_messages_delivered %v", got)
	}
	n.n.SampleView(time.Now())
	var tv console.TopKeysView
	if code, body := adminGet(t, n.n.APIURL, "/admin/v1/top-keys", adminToken, &tv); code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	if len(tv.Traffic) != 1 || tv.Traffic[0].MessagesDelivered != N || tv.Traffic[0].BytesDelivered != st.UsageToday.BytesDelivered {
		t.Fatalf("top-keys traffic %+v", tv.Traffic)
	}
}

// TestDeflateCountsCompressedBytes: the same stream to a permessage-deflate
// connection counts fewer bytes (as written: compressed) than to a plain
// one; the sessions' last counts are kept when they end.
func TestDeflateCountsCompressedBytes(t *testing.T) {
	c := newCluster(t)
	n := c.node(nodeOpts{})
	plain := n.createKey(keyapi.CreateKeyRequest{Account: accountA})
	zipped := n.createKey(keyapi.CreateKeyRequest{Account: accountA})
	cp := n.dial(keyHeader(plain.APIKey))
	cz := dialCompressed(t, n, zipped.APIKey)
	for _, cl := range []*client{cp, cz} {
		cl.send(`{"method":"subscribe","params":{"source":"trades","symbol":"ETH"}}`)
		cl.read()
	}
	payload := []byte(`[` + strings.Repeat(`{"s":"ETH","p":"1234.5","q":"0.25","side":"buy"},`, 40) + `{"s":"ETH"}]`)
	const N = 10
	publishN(t, n.n.NATSURL, "md.trades.ETH", payload, N, cp, cz)
	cp.c.Close(websocket.StatusNormalClosure, "")
	cz.c.Close(websocket.StatusNormalClosure, "")
	if err := n.n.FlushUsage(time.Now()); err != nil {
		t.Fatal(err)
	}
	sp := waitStatus(t, n, plain.APIKey, func(st keyapi.KeyStatus) bool { return st.UsageToday.MessagesDelivered == N })
	sz := waitStatus(t, n, zipped.APIKey, func(st keyapi.KeyStatus) bool { return st.UsageToday.MessagesDelivered == N })
	if sp.UsageToday.BytesDelivered < N*int64(len(payload)) || sz.UsageToday.BytesDelivered*4 > sp.UsageToday.BytesDelivered {
		t.Fatalf("bytes: plain %d, deflate %d (payload %d x %d)", sp.UsageToday.BytesDelivered, sz.UsageToday.BytesDelivered, len(payload), N)
	}
}

// waitDelivered polls until the broker counted want frames written to the
// key's live sessions (the writer counts right after the socket write,
// which the client may read first).
func waitDelivered(t *testing.T, n *testNode, prefix string, want int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, k := range n.srv.TopKeys(100) {
			if k.Prefix == prefix && k.Delivered.Msgs >= want {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d deliveries never counted: %+v", want, n.srv.TopKeys(100))
		}
		time.Sleep(5 * time.Millisecond) // polling interval of a condition with a deadline
	}
}

// TestDeliveredDailyEndsPublicSubscriptions: a key with
// quotas.delivered_daily 5 gets 5 trades; at the next usage flush its
// public subscription ends with SUBSCRIPTION_ENDED reason QUOTA_EXCEEDED,
// its account source continues, pings and unsubscribes work, a new public
// subscribe is refused with retry_after_ms until 00:00 UTC; the flush of
// the next UTC day (fake clock) refills it.
func TestDeliveredDailyEndsPublicSubscriptions(t *testing.T) {
	c := newCluster(t)
	n := c.node(nodeOpts{})
	k := n.createKey(keyapi.CreateKeyRequest{Account: accountA, Quotas: &auth.Quotas{DeliveredDaily: 5}})
	if k.Key.Quotas.DeliveredDaily != 5 {
		t.Fatalf("quotas %+v", k.Key.Quotas)
	}
	cl := n.dial(keyHeader(k.APIKey))
	cl.send(`{"method":"subscribe","params":{"source":"trades","symbol":"BTC"}}`)
	cl.read()
	cl.send(`{"method":"subscribe","params":{"source":"account_orders","account":"` + accountA + `"}}`)
	cl.read()
	publishN(t, n.n.NATSURL, "md.trades.BTC", []byte(`{"n":1}`), 5, cl)
	waitDelivered(t, n, k.Key.Prefix, 5)
	now := time.Now()
	if err := n.n.FlushUsage(now); err != nil {
		t.Fatal(err)
	}
	if got, want := cl.read(), `{"channel":"notice","data":{"code":"SUBSCRIPTION_ENDED","source":"trades","params":{"source":"trades","symbol":"BTC"},"reason":"QUOTA_EXCEEDED"}}`; got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	// The status endpoint reports the quota as quotas.delivered_daily.
	st := keyStatus(t, n, k.APIKey)
	if q, ok := st.Quotas["delivered_daily"]; !ok || q.Limit != 5 || q.Used != 5 || q.ResetAt == nil || !q.ResetAt.Equal(auth.NextUTCMidnight(time.Now())) {
		t.Fatalf("status quotas %+v", st.Quotas)
	}
	// No trade follows; the account source continues.
	publishN(t, n.n.NATSURL, "md.trades.BTC", []byte(`{"n":2}`), 1)
	publishN(t, n.n.NATSURL, "md.account_orders."+accountA, []byte(`{"o":1}`), 1)
	if got := cl.read(); got != `{"channel":"account_orders","data":{"o":1}}` {
		t.Fatalf("after the notice: %s", got)
	}
	roundTripRL(cl, `{"method":"ping"}`, `{"channel":"pong","rl":{"r":297,"q":300`)
	roundTripRL(cl, `{"method":"unsubscribe","params":{"source":"account_orders","account":"`+accountA+`"}}`,
		`{"channel":"unsubscribe","data":{"source":"account_orders","account":"`+accountA+`"},"rl":{"r":296,"q":300`)
	// A new public subscribe is refused until 00:00 UTC.
	before := time.Now()
	cl.send(`{"method":"subscribe","params":{"source":"trades","symbol":"BTC"}}`)
	var e struct {
		Channel string `json:"channel"`
		Data    struct {
			Code         string `json:"code"`
			Message      string `json:"message"`
			RetryAfterMs int64  `json:"retry_after_ms"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(cl.read()), &e); err != nil {
		t.Fatal(err)
	}
	toMidnight := auth.NextUTCMidnight(before).Sub(before).Milliseconds()
	if e.Channel != "error" || e.Data.Code != "QUOTA_EXCEEDED" || e.Data.Message != "Rate limit exceeded: quota delivered_daily" ||
		e.Data.RetryAfterMs <= 0 || e.Data.RetryAfterMs > toMidnight+1 || e.Data.RetryAfterMs < toMidnight-5000 {
		t.Fatalf("refusal %+v, want QUOTA_EXCEEDED with retry_after_ms ~%d", e, toMidnight)
	}
	// The account source may still be subscribed.
	roundTripRL(cl, `{"method":"subscribe","params":{"source":"account_orders","account":"`+accountA+`"}}`,
		`{"channel":"subscribe","data":{"source":"account_orders","account":"`+accountA+`"},"rl":{"r":294,"q":300`)
	// 00:00 UTC: the flush of the new day refills the quota.
	if err := n.n.FlushUsage(auth.NextUTCMidnight(now)); err != nil {
		t.Fatal(err)
	}
	roundTripRL(cl, `{"method":"subscribe","params":{"source":"trades","symbol":"BTC"}}`,
		`{"channel":"subscribe","data":{"source":"trades","symbol":"BTC"},"rl":{"r":293,"q":300`)
	publishN(t, n.n.NATSURL, "md.trades.BTC", []byte(`{"n":3}`), 1)
	if got := cl.read(); got != `{"channel":"trades","data":{"n":3}}` {
		t.Fatalf("after the refill: %s", got)
	}
}

// roundTripRL sends req and checks the reply up to its rl's "t" (the
// seconds until the budget is full, which depend on timing).
func roundTripRL(c *client, req, want string) {
	c.t.Helper()
	c.send(req)
	if got := c.read(); !strings.HasPrefix(got, want) {
		c.t.Fatalf("%s\n got  %s\n want %s...", req, got, want)
	}
}

// TestDeliveredUsageSumsAcrossNodes: two nodes on one Redis each deliver
// a stream to the same key; the day's counters in the store are the sum,
// whichever node answers the status call.
func TestDeliveredUsageSumsAcrossNodes(t *testing.T) {
	c := newCluster(t)
	a, b := c.node(nodeOpts{shared: true}), c.node(nodeOpts{shared: true})
	k := a.createKey(keyapi.CreateKeyRequest{Account: accountA})
	onA, onB := a.dial(keyHeader(k.APIKey)), b.dial(keyHeader(k.APIKey))
	for _, cl := range []*client{onA, onB} {
		cl.send(`{"method":"subscribe","params":{"source":"trades","symbol":"SOL"}}`)
		cl.read()
	}
	// One NATS server: each publish reaches both nodes.
	publishN(t, a.n.NATSURL, "md.trades.SOL", []byte(`{"n":1}`), 7, onA, onB)
	waitStatus(t, b, k.APIKey, func(st keyapi.KeyStatus) bool {
		return st.UsageToday.MessagesDelivered == 14 && st.UsageTotal.MessagesDelivered == 14
	})
}
