package broker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"floodgate/node"
	"floodgate/node/nodetest"

	"github.com/coder/websocket"
)

// TestJunkUnsubscribesRefusedAndClosed (issue 11 figure): one anonymous
// connection sending 30,000 unsubscribes of channels it never joined, on a
// default node, is charged for each: refused with RATE_LIMITED once its
// budget is spent and closed 1008 by the violation rule, after about 20
// replies. A real unsubscribe is never refused, even with the budget spent.
func TestJunkUnsubscribesRefusedAndClosed(t *testing.T) {
	n := nodetest.Start(t, node.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// A real unsubscribe after the connection's budget is spent.
	real, _, err := websocket.Dial(ctx, n.WSURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer real.CloseNow()
	rt := func(req string) string {
		if err := real.Write(ctx, websocket.MessageText, []byte(req)); err != nil {
			t.Fatal(err)
		}
		_, b, err := real.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	rt(`{"method":"subscribe","params":{"source":"trades","symbol":"BTC"}}`)
	for !strings.Contains(rt(`{"method":"ping"}`), "RATE_LIMITED") {
	}
	if got := rt(`{"method":"unsubscribe","params":{"source":"trades","symbol":"BTC"}}`); !strings.HasPrefix(got, `{"channel":"unsubscribe"`) {
		t.Fatalf("real unsubscribe with the budget spent: %s", got)
	}
	real.Close(websocket.StatusNormalClosure, "")

	junk, _, err := websocket.Dial(ctx, n.WSURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer junk.CloseNow()
	writeErr := make(chan error, 1)
	go func() {
		for i := 0; i < 30000; i++ {
			if err := junk.Write(ctx, websocket.MessageText, []byte(`{"method":"unsubscribe","params":{"source":"trades","symbol":"JUNK`+string(rune('A'+i%26))+`"}}`)); err != nil {
				writeErr <- err
				return
			}
		}
		writeErr <- nil
	}()
	counts := map[string]int{}
	for {
		_, b, err := junk.Read(ctx)
		if err != nil {
			if websocket.CloseStatus(err) != websocket.StatusPolicyViolation || !strings.Contains(err.Error(), "rate limit exceeded") {
				t.Fatalf("connection ended with %v, want 1008 rate limit exceeded", err)
			}
			break
		}
		switch s := string(b); {
		case strings.Contains(s, `"NOT_SUBSCRIBED"`):
			counts["not_subscribed"]++
		case strings.Contains(s, `"RATE_LIMITED"`):
			counts["rate_limited"]++
		default:
			t.Fatalf("reply %s", s)
		}
	}
	<-writeErr // the writer stops when the node closes the connection
	if counts["rate_limited"] < 10 || counts["not_subscribed"]+counts["rate_limited"] > 100 {
		t.Fatalf("replies %v: want the budget spent, refusals, and a close after about 20", counts)
	}
	t.Logf("30,000 junk unsubscribes: %v, then closed 1008", counts)
}
