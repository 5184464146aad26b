package broker_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"floodgate/broker"
	"floodgate/fanout"
	"floodgate/internal/proto"

	"github.com/coder/websocket"
)

// keyAdmitter admits everyone as the key named by the X-Key header, with
// an unlimited budget capped at n subscriptions.
type keyAdmitter struct{ n int }

func (a keyAdmitter) Admit(_ context.Context, r *http.Request, _ time.Time) (broker.Identity, broker.Budget, *proto.Refusal) {
	k := r.Header.Get("X-Key")
	return broker.Identity{Kind: broker.KeyHolder, ID: "key:" + k, KeyPrefix: k}, cappedBudget(a), nil
}

func (e *env) dialKey(prefix string) *client {
	e.t.Helper()
	h := http.Header{}
	h.Set("X-Key", prefix)
	return e.dialH(h)
}

// TestEndSubscriptions: the node ends one subscription of a key's live
// sessions; the client gets the notice, no frame of that channel after
// it, its other subscriptions continue, another key is untouched, the
// subscription slot is free again and the channel can be subscribed again.
func TestEndSubscriptions(t *testing.T) {
	e := newEnv(t, broker.Options{Admitter: keyAdmitter{2}})
	a, other := e.dialKey("pfA"), e.dialKey("pfB")
	for _, c := range []*client{a, other} {
		c.roundTrip(`{"method":"subscribe","params":{"source":"trades","symbol":"BTC"}}`, `{"channel":"subscribe","data":{"source":"trades","symbol":"BTC"}}`)
		c.roundTrip(`{"method":"subscribe","params":{"agg_level":10,"source":"book","symbol":"ETH"}}`, `{"channel":"subscribe","data":{"source":"book","symbol":"ETH","agg_level":10}}`)
	}
	a.roundTrip(`{"method":"subscribe","params":{"source":"prices"}}`, `{"channel":"error","data":{"code":"SUBSCRIPTION_LIMIT","message":"subscription limit reached"}}`)

	var seen []string
	n := e.srv.EndSubscriptions("pfA", func(ch *fanout.Channel) bool {
		seen = append(seen, ch.Source.Name+":"+string(ch.Values[0]))
		return ch.Source.Name == "book"
	}, proto.QuotaExceeded)
	if n != 1 || len(seen) != 2 {
		t.Fatalf("ended %d, saw %v; want 1 ended of 2", n, seen)
	}
	a.expect(`{"channel":"notice","data":{"code":"SUBSCRIPTION_ENDED","source":"book","params":{"source":"book","symbol":"ETH","agg_level":10},"reason":"QUOTA_EXCEEDED"}}`)
	if st := e.hub.Stats(); st.Subscriptions != 3 {
		t.Fatalf("hub subscriptions %d, want 3", st.Subscriptions)
	}
	if got := e.counter("floodgate_subscriptions"); got != 3 {
		t.Fatalf("floodgate_subscriptions %v, want 3", got)
	}
	// No frame of the ended channel: the book message reaches only the
	// other key; the trades channel continues. (Channels are delivered
	// independently: the book frame has reached the other key before the
	// trade is published, so a book frame to a would come first.)
	e.publish("md.book.ETH.10", `{"n":1}`)
	other.expect(`{"channel":"book","data":{"n":1}}`)
	e.publish("md.trades.BTC", `{"n":2}`)
	a.expect(`{"channel":"trades","data":{"n":2}}`)
	other.expect(`{"channel":"trades","data":{"n":2}}`)
	// The channel is no longer the client's; the slot is free again.
	a.roundTrip(`{"method":"unsubscribe","params":{"source":"book","symbol":"ETH","agg_level":10}}`, `{"channel":"error","data":{"code":"NOT_SUBSCRIBED","message":"not subscribed"}}`)
	a.roundTrip(`{"method":"subscribe","params":{"source":"book","symbol":"ETH","agg_level":10}}`, `{"channel":"subscribe","data":{"source":"book","symbol":"ETH","agg_level":10}}`)
	e.publish("md.book.ETH.10", `{"n":3}`)
	a.expect(`{"channel":"book","data":{"n":3}}`)
	// An unknown or empty prefix ends nothing.
	if n := e.srv.EndSubscriptions("", func(*fanout.Channel) bool { return true }, "X"); n != 0 {
		t.Fatalf("empty prefix ended %d", n)
	}
	if n := e.srv.EndSubscriptions("nope", func(*fanout.Channel) bool { return true }, "X"); n != 0 {
		t.Fatalf("unknown prefix ended %d", n)
	}
}

// closingAdmitter admits a key and, before returning, has the key closed
// (as a revoke landing between a connection's admission and its start).
type closingAdmitter struct{ srv **broker.Server }

func (a closingAdmitter) Admit(ctx context.Context, r *http.Request, now time.Time) (broker.Identity, broker.Budget, *proto.Refusal) {
	id, b, ref := keyAdmitter{10}.Admit(ctx, r, now)
	if r.Header.Get("X-Close") != "" {
		(*a.srv).CloseKey(id.KeyPrefix, broker.ReasonKeyRevoked)
	}
	if r.Header.Get("X-Account-Only") != "" {
		(*a.srv).SetKeyScopes(id.KeyPrefix, proto.ScopeAccount)
	}
	return id, b, ref
}

// TestCloseKeyRacingANewConnection: a key closed after a connection's
// admission but before its session is live still closes that connection
// (1008 "api key revoked"); a connection admitted after the close is not
// affected, and neither is another key.
func TestCloseKeyRacingANewConnection(t *testing.T) {
	var srv *broker.Server
	e := newEnv(t, broker.Options{Admitter: closingAdmitter{&srv}})
	srv = e.srv
	h := http.Header{}
	h.Set("X-Key", "pfRace")
	h.Set("X-Close", "1")
	e.dialH(h).expectClose(websocket.StatusPolicyViolation, "api key revoked")
	later := e.dialKey("pfRace")
	later.roundTrip(`{"method":"ping"}`, `{"channel":"pong"}`)
	e.dialKey("pfOther").roundTrip(`{"method":"ping"}`, `{"channel":"pong"}`)
}

// TestScopeChangeRacingANewConnection: a scope change made after a
// connection's admission but before its session is live applies to that
// connection (its admission saw the old scopes).
func TestScopeChangeRacingANewConnection(t *testing.T) {
	var srv *broker.Server
	e := newEnv(t, broker.Options{Admitter: closingAdmitter{&srv}})
	srv = e.srv
	h := http.Header{}
	h.Set("X-Key", "pfScope")
	h.Set("X-Account-Only", "1")
	e.dialH(h).roundTrip(`{"method":"subscribe","params":{"source":"trades","symbol":"BTC"}}`,
		`{"channel":"error","data":{"code":"FORBIDDEN","message":"API key lacks scope \"market\""}}`)
}
