package broker_test

import (
	"context"
	"testing"

	"floodgate/broker"
	"floodgate/fanout"
)

// busyHub is a real hub whose channels all have history and whose replays
// all find the node's replay limit reached.
type busyHub struct{ *fanout.Hub }

func (busyHub) HasHistory(*fanout.Source) bool { return true }
func (busyHub) Replay(context.Context, *fanout.Subscription, uint64, fanout.JoinInfo, func(int) error) (fanout.ReplayResult, error) {
	return fanout.ReplayResult{}, fanout.ErrReplayBusy
}

// TestReplayLimitOfTheNodeIsRateLimited: a subscribe with since while the
// node runs its maximum of replays gets RATE_LIMITED with retry_after_ms,
// is not subscribed (it may retry), and the connection stays usable.
func TestReplayLimitOfTheNodeIsRateLimited(t *testing.T) {
	ns, err := fanout.StartEmbedded(fanout.EmbeddedOptions{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	e := newEnvWrapped(t, ns.ClientURL(), fanout.Options{}, broker.Options{}, func(h *fanout.Hub) broker.Hub { return busyHub{h} })
	c := e.dial(nil)
	c.roundTrip(`{"method":"subscribe","params":{"source":"trades","symbol":"BTC","since":5},"id":"r"}`,
		`{"channel":"error","data":{"code":"RATE_LIMITED","message":"replay limit of the node reached","retry_after_ms":100},"id":"r"}`)
	// Not subscribed: the same channel without since is accepted.
	c.roundTrip(`{"method":"subscribe","params":{"source":"trades","symbol":"BTC"}}`,
		`{"channel":"subscribe","data":{"source":"trades","symbol":"BTC"}}`)
	e.publish("md.trades.BTC", `{"ok":1}`)
	c.expect(`{"channel":"trades","data":{"ok":1}}`)
}
