package broker_test

import (
	"context"
	"testing"

	"floodgate/broker"
	"floodgate/fanout"

	"github.com/coder/websocket"
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

// slowReplayHub is a real hub whose channels all have history and whose
// replays wait for release, then recover nothing new (since is the
// latest).
type slowReplayHub struct {
	*fanout.Hub
	started, release chan struct{}
}

func (slowReplayHub) HasHistory(*fanout.Source) bool { return true }
func (h slowReplayHub) Replay(_ context.Context, _ *fanout.Subscription, since uint64, _ fanout.JoinInfo, _ func(int) error) (fanout.ReplayResult, error) {
	h.started <- struct{}{}
	<-h.release
	return fanout.ReplayResult{Recovered: true, Last: since}, nil
}

// TestLiveFramesHeldDuringAReplayAreBounded: live frames that arrive while
// a replay runs wait for it, within the send queue's bounds: a channel
// that outruns the replay by a whole queue closes the connection 1013, as
// an overflowing queue does; the node stays fine for the others.
func TestLiveFramesHeldDuringAReplayAreBounded(t *testing.T) {
	ns, err := fanout.StartEmbedded(fanout.EmbeddedOptions{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	hub := slowReplayHub{started: make(chan struct{}, 1), release: make(chan struct{})}
	e := newEnvWrapped(t, ns.ClientURL(), fanout.Options{}, broker.Options{QueueFrames: 8},
		func(h *fanout.Hub) broker.Hub { hub.Hub = h; return hub })
	other := e.dial(nil)
	other.roundTrip(`{"method":"subscribe","params":{"source":"trades","symbol":"BTC"}}`,
		`{"channel":"subscribe","data":{"source":"trades","symbol":"BTC"}}`)
	c := e.dial(nil)
	c.send(`{"method":"subscribe","params":{"source":"trades","symbol":"BTC","since":1}}`)
	<-hub.started // joined, holding
	for i := 0; i < 9; i++ {
		e.publish("md.trades.BTC", `{}`)
		other.expect(`{"channel":"trades","data":{}}`)
	}
	close(hub.release)
	c.expectClose(websocket.StatusTryAgainLater, "slow consumer")
	e.publish("md.trades.BTC", `{"after":1}`)
	other.expect(`{"channel":"trades","data":{"after":1}}`)
}

// TestLiveFramesHeldDuringAReplayFollowTheAck: frames published while the
// replay runs reach the client after the ack, in order.
func TestLiveFramesHeldDuringAReplayFollowTheAck(t *testing.T) {
	ns, err := fanout.StartEmbedded(fanout.EmbeddedOptions{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	hub := slowReplayHub{started: make(chan struct{}, 1), release: make(chan struct{})}
	e := newEnvWrapped(t, ns.ClientURL(), fanout.Options{}, broker.Options{},
		func(h *fanout.Hub) broker.Hub { hub.Hub = h; return hub })
	c := e.dial(nil)
	c.send(`{"method":"subscribe","params":{"source":"trades","symbol":"BTC","since":1},"id":1}`)
	<-hub.started
	e.publish("md.trades.BTC", `{"n":1}`)
	e.publish("md.trades.BTC", `{"n":2}`)
	eventually(t, "the frames held", func() bool { return e.counter("floodgate_fanout_messages_out_total") == 2 })
	close(hub.release)
	c.expect(`{"channel":"subscribe","data":{"source":"trades","symbol":"BTC","since":1},"recovered":true,"id":1}`)
	c.expect(`{"channel":"trades","data":{"n":1}}`)
	c.expect(`{"channel":"trades","data":{"n":2}}`)
	e.publish("md.trades.BTC", `{"n":3}`)
	c.expect(`{"channel":"trades","data":{"n":3}}`)
}
