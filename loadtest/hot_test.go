package loadtest_test

import (
	"context"
	"testing"
	"time"

	"floodgate/loadtest"
)

// TestHot_RealBroker: the hot scenario against a real node: every joiner
// joins and leaves, joiners receive the hot channel, the steady channel is
// measured in both windows, and the broker figures are sampled.
func TestHot_RealBroker(t *testing.T) {
	t.Parallel()
	n := startRoomyNode(t)
	rep, err := loadtest.Run(context.Background(), n.target(loadtest.Config{
		Scenario: loadtest.ScenarioHot,
		Conns:    150, SteadyConns: 10, Rate: 100, Duration: 300 * time.Millisecond, Hold: 200 * time.Millisecond,
	}))
	if err != nil {
		t.Fatal(err)
	}
	h := rep.Hot
	if h == nil || h.JoinedOK != 150 || h.JoinFailed != 0 || h.LeftOK != 150 || h.JoinS <= 0 || h.LeaveS <= 0 {
		t.Fatalf("hot report %+v", h)
	}
	if h.HotReceived == 0 || h.SteadyBefore.Samples == 0 || rep.ConnectionsOK != 10 {
		t.Fatalf("received %d hot frames, %d steady samples before, %d steady connections", h.HotReceived, h.SteadyBefore.Samples, rep.ConnectionsOK)
	}
	if h.StormCPUS <= 0 || h.StormAllocBytes <= 0 {
		t.Fatalf("broker figures: CPU %v, alloc %v", h.StormCPUS, h.StormAllocBytes)
	}
	if n.srv.Connections() != 0 {
		eventuallyZero(t, n)
	}
}

func eventuallyZero(t *testing.T, n *testNode) {
	deadline := time.Now().Add(5 * time.Second)
	for n.srv.Connections() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections left", n.srv.Connections())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestDeflate_RealBroker: clients offering permessage-deflate negotiate it,
// inflate what they receive (every delivery counted, in order), and book
// frames cost them fewer bytes on the wire than plain clients.
func TestDeflate_RealBroker(t *testing.T) {
	t.Parallel()
	n := startNode(t, testNodeOptions{})
	run := func(share float64) loadtest.Report {
		rep, err := loadtest.Run(context.Background(), loadtest.Config{
			URL: n.wsURL, NATSURL: n.natsURL, Conns: 10, Rate: 100, Payload: loadtest.PayloadBook,
			DeflateShare: share, Duration: 300 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		if rep.LossPct != 0 || rep.OutOfOrder != 0 || rep.Delivered == 0 {
			t.Fatalf("deflate share %v: loss %v, out of order %d, delivered %d", share, rep.LossPct, rep.OutOfOrder, rep.Delivered)
		}
		return rep
	}
	plain, deflated := run(0), run(1)
	if plain.DeflateConns != 0 || deflated.DeflateConns != 10 {
		t.Fatalf("deflate connections %d and %d", plain.DeflateConns, deflated.DeflateConns)
	}
	if 2*deflated.WireBytesPerFrame > plain.WireBytesPerFrame {
		t.Fatalf("book frames: %.0f bytes on the wire deflated, %.0f plain", deflated.WireBytesPerFrame, plain.WireBytesPerFrame)
	}
	t.Logf("book frame on the wire: %.0f bytes plain, %.0f deflated", plain.WireBytesPerFrame, deflated.WireBytesPerFrame)
}

// TestClassifyCentrifugo: Centrifugo JSON protocol frames.
func TestClassifyCentrifugo(t *testing.T) {
	for frame, want := range map[string]string{
		`{}`: "ping",
		`{"push":{"channel":"md.trades.LOAD0","pub":{"data":{"ts":1}}}}`:       "market",
		`{"id":1,"connect":{"client":"x"}}` + "\n" + `{"id":2,"subscribe":{}}`: "subscribe",
		`{"id":3,"unsubscribe":{}}`:                                            "unsubscribe",
		`{"id":2,"error":{"code":103,"message":"permission denied"}}`:          "error",
		`{"id":1,"connect":{"client":"x"}}`:                                    "unknown",
	} {
		if got := loadtest.ClassifyCentrifugoForTest([]byte(frame)); got != want {
			t.Errorf("%s: %s, want %s", frame, got, want)
		}
	}
}
