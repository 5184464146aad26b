package broker_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"floodgate/broker"
	"floodgate/fanout"
	"floodgate/internal/proto"

	"github.com/coder/websocket"
)

func TestSubscribeReceivesExactFrame(t *testing.T) {
	e := newEnv(t, broker.Options{})
	c := e.dial(nil)
	c.roundTrip(`{"method":"subscribe","params":{"source":"trades","symbol":"BTC"},"id":1}`,
		`{"channel":"subscribe","data":{"source":"trades","symbol":"BTC"},"id":1}`)
	e.publish("md.trades.BTC", `[{"h":1,"s":"BTC","a":"0.1","p":"90000","d":"open_long","tc":"normal","t":1765018379085,"li":7}]`)
	c.expect(`{"channel":"trades","data":[{"h":1,"s":"BTC","a":"0.1","p":"90000","d":"open_long","tc":"normal","t":1765018379085,"li":7}]}`)
	// Canonical echo: numbers for int params, table order, string ids kept.
	c.roundTrip(`{"id":"book-1","params":{"agg_level":1,"symbol":"ETH","source":"book"},"method":"subscribe"}`,
		`{"channel":"subscribe","data":{"source":"book","symbol":"ETH","agg_level":1},"id":"book-1"}`)
	e.publish("md.book.ETH.1", `{"l":[[],[]],"s":"ETH","t":1}`)
	c.expect(`{"channel":"book","data":{"l":[[],[]],"s":"ETH","t":1}}`)
	c.roundTrip(`{"method":"subscribe","params":{"source":"prices"}}`, `{"channel":"subscribe","data":{"source":"prices"}}`)
	c.roundTrip(`{"method":"ping"}`, `{"channel":"pong"}`)
	c.roundTrip(`{"method":"ping","id":42}`, `{"channel":"pong","id":42}`)
}

func TestUnsubscribeStopsDeliveryAndDropsNATSSubscription(t *testing.T) {
	e := newEnv(t, broker.Options{})
	a, b := e.dial(nil), e.dial(nil)
	sub := `{"method":"subscribe","params":{"source":"bbo","symbol":"SOL"}}`
	unsub := `{"method":"unsubscribe","params":{"source":"bbo","symbol":"SOL"}}`
	a.roundTrip(sub, `{"channel":"subscribe","data":{"source":"bbo","symbol":"SOL"}}`)
	b.roundTrip(sub, `{"channel":"subscribe","data":{"source":"bbo","symbol":"SOL"}}`)
	if st := e.hub.Stats(); st.NATSSubscriptions != 1 || st.Subscriptions != 2 {
		t.Fatalf("stats %+v, want one NATS subscription for two subscribers", st)
	}
	a.roundTrip(unsub, `{"channel":"unsubscribe","data":{"source":"bbo","symbol":"SOL"}}`)
	if st := e.hub.Stats(); st.NATSSubscriptions != 1 {
		t.Fatalf("NATS subscription dropped while b is still subscribed: %+v", st)
	}
	e.publish("md.bbo.SOL", `{"s":"SOL","n":1}`)
	b.expect(`{"channel":"bbo","data":{"s":"SOL","n":1}}`)
	// a is not subscribed any more: its next frame is the pong, not bbo.
	a.roundTrip(`{"method":"ping"}`, `{"channel":"pong"}`)
	b.roundTrip(unsub, `{"channel":"unsubscribe","data":{"source":"bbo","symbol":"SOL"}}`)
	if st := e.hub.Stats(); st.NATSSubscriptions != 0 || st.Channels != 0 {
		t.Fatalf("after the last unsubscribe: %+v, want no channel and no NATS subscription", st)
	}
	if n := e.nc.NumSubscriptions(); n != 0 {
		t.Fatalf("broker NATS connection still has %d subscriptions", n)
	}
	e.publish("md.bbo.SOL", `{"s":"SOL","n":2}`)
	b.roundTrip(`{"method":"ping"}`, `{"channel":"pong"}`)
	a.roundTrip(`{"method":"ping"}`, `{"channel":"pong"}`)
}

func TestTwoClientsReceiveEveryMessageInOrder(t *testing.T) {
	e := newEnv(t, broker.Options{})
	clients := []*client{e.dial(nil), e.dial(nil)}
	for _, c := range clients {
		c.roundTrip(`{"method":"subscribe","params":{"source":"trades","symbol":"ETH"}}`, `{"channel":"subscribe","data":{"source":"trades","symbol":"ETH"}}`)
	}
	const n = 500
	for i := 0; i < n; i++ {
		if err := e.pub.Publish("md.trades.ETH", []byte(fmt.Sprintf(`{"seq":%d}`, i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.pub.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, c := range clients {
		for i := 0; i < n; i++ {
			c.expect(fmt.Sprintf(`{"channel":"trades","data":{"seq":%d}}`, i))
		}
	}
}

func TestInvalidPayloadIsDroppedAndCounted(t *testing.T) {
	e := newEnv(t, broker.Options{})
	c := e.dial(nil)
	c.roundTrip(`{"method":"subscribe","params":{"source":"prices"}}`, `{"channel":"subscribe","data":{"source":"prices"}}`)
	e.publish("md.prices", `not json`)
	e.publish("md.prices", `{"half":`)
	e.publish("md.prices", ``)
	e.publish("md.prices", `[{"symbol":"BTC"}]`)
	c.expect(`{"channel":"prices","data":[{"symbol":"BTC"}]}`)
	if got := e.counter("floodgate_fanout_invalid_payloads_total"); got != 3 {
		t.Fatalf("invalid payloads counted %v, want 3", got)
	}
}

// TestErrorReplies checks every error code of the protocol that does not
// involve rate limits, with the exact reply, and that the connection keeps
// working after each.
func TestErrorReplies(t *testing.T) {
	e := newEnv(t, broker.Options{Admitter: capSubs{2}})
	c := e.dial(nil)
	cases := []struct{ name, req, want string }{
		{"not json", `{"method":`, `{"channel":"error","data":{"code":"BAD_REQUEST","message":"frame is not valid JSON"}}`},
		{"not object", `["ping"]`, `{"channel":"error","data":{"code":"BAD_REQUEST","message":"frame must be a JSON object"}}`},
		{"no method", `{"id":3}`, `{"channel":"error","data":{"code":"BAD_REQUEST","message":"missing method"},"id":3}`},
		{"unknown method", `{"method":"subscribe_all","id":"x"}`, `{"channel":"error","data":{"code":"BAD_REQUEST","message":"unknown method"},"id":"x"}`},
		{"bad id", `{"method":"ping","id":{"a":1}}`, `{"channel":"error","data":{"code":"BAD_REQUEST","message":"id must be a string of at most 128 bytes or a number"}}`},
		{"no params", `{"method":"subscribe"}`, `{"channel":"error","data":{"code":"BAD_REQUEST","message":"missing params"}}`},
		{"params not object", `{"method":"subscribe","params":"trades"}`, `{"channel":"error","data":{"code":"BAD_REQUEST","message":"missing params"}}`},
		{"no source", `{"method":"subscribe","params":{"symbol":"BTC"}}`, `{"channel":"error","data":{"code":"BAD_REQUEST","message":"missing params.source"}}`},
		{"unknown source", `{"method":"subscribe","params":{"source":"orders"},"id":9}`, `{"channel":"error","data":{"code":"UNKNOWN_SOURCE","message":"unknown source \"orders\""},"id":9}`},
		{"missing param", `{"method":"subscribe","params":{"source":"trades"}}`, `{"channel":"error","data":{"code":"INVALID_PARAMS","message":"missing param \"symbol\""}}`},
		{"unknown param", `{"method":"subscribe","params":{"source":"trades","symbol":"BTC","depth":5}}`, `{"channel":"error","data":{"code":"INVALID_PARAMS","message":"unknown param \"depth\""}}`},
		{"wildcard *", `{"method":"subscribe","params":{"source":"trades","symbol":"*"}}`, `{"channel":"error","data":{"code":"INVALID_PARAMS","message":"invalid param \"symbol\""}}`},
		{"wildcard >", `{"method":"subscribe","params":{"source":"trades","symbol":">"}}`, `{"channel":"error","data":{"code":"INVALID_PARAMS","message":"invalid param \"symbol\""}}`},
		{"dotted", `{"method":"subscribe","params":{"source":"trades","symbol":"BTC.>"}}`, `{"channel":"error","data":{"code":"INVALID_PARAMS","message":"invalid param \"symbol\""}}`},
		{"space", `{"method":"subscribe","params":{"source":"trades","symbol":"BTC ETH"}}`, `{"channel":"error","data":{"code":"INVALID_PARAMS","message":"invalid param \"symbol\""}}`},
		{"escaped dot", `{"method":"subscribe","params":{"source":"trades","symbol":"BTC\u002eX"}}`, `{"channel":"error","data":{"code":"INVALID_PARAMS","message":"invalid param \"symbol\""}}`},
		{"too long", `{"method":"subscribe","params":{"source":"trades","symbol":"` + strings.Repeat("A", 65) + `"}}`, `{"channel":"error","data":{"code":"INVALID_PARAMS","message":"invalid param \"symbol\""}}`},
		{"empty", `{"method":"subscribe","params":{"source":"trades","symbol":""}}`, `{"channel":"error","data":{"code":"INVALID_PARAMS","message":"invalid param \"symbol\""}}`},
		{"not a string", `{"method":"subscribe","params":{"source":"trades","symbol":["BTC"]}}`, `{"channel":"error","data":{"code":"INVALID_PARAMS","message":"invalid param \"symbol\""}}`},
		{"agg_level not allowed", `{"method":"subscribe","params":{"source":"book","symbol":"BTC","agg_level":2}}`, `{"channel":"error","data":{"code":"INVALID_PARAMS","message":"invalid param \"agg_level\""}}`},
		{"agg_level float", `{"method":"subscribe","params":{"source":"book","symbol":"BTC","agg_level":1.0}}`, `{"channel":"error","data":{"code":"INVALID_PARAMS","message":"invalid param \"agg_level\""}}`},
		{"interval not allowed", `{"method":"subscribe","params":{"source":"candle","symbol":"BTC","interval":"7m"}}`, `{"channel":"error","data":{"code":"INVALID_PARAMS","message":"invalid param \"interval\""}}`},
		{"duplicate param", `{"method":"subscribe","params":{"source":"trades","symbol":"BTC","symbol":"ETH"}}`, `{"channel":"error","data":{"code":"INVALID_PARAMS","message":"duplicate param \"symbol\""}}`},
		{"forbidden account", `{"method":"subscribe","params":{"source":"account_orders","account":"42trU9A5"}}`, `{"channel":"error","data":{"code":"FORBIDDEN","message":"account streams need an API key of that account"}}`},
		{"not subscribed", `{"method":"unsubscribe","params":{"source":"trades","symbol":"BTC"}}`, `{"channel":"error","data":{"code":"NOT_SUBSCRIBED","message":"not subscribed"}}`},
		{"subscribe", `{"method":"subscribe","params":{"source":"trades","symbol":"BTC"}}`, `{"channel":"subscribe","data":{"source":"trades","symbol":"BTC"}}`},
		{"already subscribed", `{"method":"subscribe","params":{"source":"trades","symbol":"BTC"}}`, `{"channel":"error","data":{"code":"ALREADY_SUBSCRIBED","message":"already subscribed"}}`},
		{"second", `{"method":"subscribe","params":{"source":"trades","symbol":"ETH"}}`, `{"channel":"subscribe","data":{"source":"trades","symbol":"ETH"}}`},
		{"subscription limit", `{"method":"subscribe","params":{"source":"trades","symbol":"SOL"}}`, `{"channel":"error","data":{"code":"SUBSCRIPTION_LIMIT","message":"subscription limit reached"}}`},
	}
	for _, tc := range cases {
		c.send(tc.req)
		if got := c.read(); got != tc.want {
			t.Errorf("%s:\n got  %s\n want %s", tc.name, got, tc.want)
		}
		c.roundTrip(`{"method":"ping"}`, `{"channel":"pong"}`) // the connection is unharmed
	}
	if st := e.hub.Stats(); st.Subscriptions != 2 || st.Channels != 2 {
		t.Fatalf("hub after errors: %+v, want the two good subscriptions only", st)
	}
	// The subscriptions still deliver.
	e.publish("md.trades.ETH", `{"ok":true}`)
	c.expect(`{"channel":"trades","data":{"ok":true}}`)
}

// capSubs admits everyone with an unlimited budget capped at n
// subscriptions.
type capSubs struct{ n int }

func (c capSubs) Admit(context.Context, *http.Request, time.Time) (broker.Identity, broker.Budget, *proto.Refusal) {
	return broker.Identity{}, cappedBudget(c), nil
}

type cappedBudget struct{ n int }

func (b cappedBudget) Charge(broker.Op, *fanout.Source, time.Time) broker.Decision {
	return broker.Decision{Allowed: true}
}
func (b cappedBudget) ChargeReplay(int, time.Time) broker.Decision {
	return broker.Decision{Allowed: true}
}
func (b cappedBudget) MaxSubscriptions() int { return b.n }
func (b cappedBudget) Release(time.Time)     {}

func TestOversizeFrameClosed1009(t *testing.T) {
	e := newEnv(t, broker.Options{})
	bystander := e.dial(nil)
	c := e.dial(nil)
	c.roundTrip(`{"method":"ping","id":"`+strings.Repeat("a", 100)+`"}`, `{"channel":"pong","id":"`+strings.Repeat("a", 100)+`"}`)
	c.send(`{"method":"ping","pad":"` + strings.Repeat("x", 4096) + `"}`)
	c.expectClose(websocket.StatusMessageTooBig, "frame too big")
	bystander.roundTrip(`{"method":"ping"}`, `{"channel":"pong"}`)
	eventually(t, "close counted", func() bool { return e.counter("floodgate_connections_closed_total", "reason", "frame_too_big") == 1 })
}

func TestFrameAtLimitAccepted(t *testing.T) {
	e := newEnv(t, broker.Options{})
	c := e.dial(nil)
	prefix := `{"method":"ping","pad":"`
	frame := prefix + strings.Repeat("x", 4096-len(prefix)-2) + `"}`
	if len(frame) != 4096 {
		t.Fatal(len(frame))
	}
	c.roundTrip(frame, `{"channel":"pong"}`)
}

func TestBinaryFrameClosed1003(t *testing.T) {
	e := newEnv(t, broker.Options{})
	bystander := e.dial(nil)
	c := e.dial(nil)
	ctx := t.Context()
	if err := c.c.Write(ctx, websocket.MessageBinary, []byte(`{"method":"ping"}`)); err != nil {
		t.Fatal(err)
	}
	c.expectClose(websocket.StatusUnsupportedData, "binary frames not supported")
	bystander.roundTrip(`{"method":"ping"}`, `{"channel":"pong"}`)
}

// TestIDEchoIsAlwaysValidJSON: ids with control characters, quotes or
// invalid UTF-8 are re-escaped, never echoed raw.
func TestIDEchoIsAlwaysValidJSON(t *testing.T) {
	e := newEnv(t, broker.Options{})
	c := e.dial(nil)
	c.roundTrip(`{"method":"ping","id":"a\u0007b"}`, `{"channel":"pong","id":"a\u0007b"}`)
	c.roundTrip(`{"method":"ping","id":"q\"\u0001"}`, `{"channel":"pong","id":"q\"\u0001"}`)
	c.send("{\"method\":\"ping\",\"id\":\"bad\xffutf8\"}")
	if got := c.read(); got != `{"channel":"pong","id":"bad\ufffdutf8"}` {
		t.Fatalf("invalid UTF-8 id echoed as %q", got)
	}
}
