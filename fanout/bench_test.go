package fanout_test

import (
	"fmt"
	"testing"

	"floodgate/fanout"
)

// counter is the cheapest possible Subscriber.
type counter struct{ n int }

func (c *counter) Deliver(*fanout.Frame) bool { c.n++; return true }

// BenchmarkDeliver_Subscribers delivers one 200-byte NATS payload to n
// local subscribers: allocs/op is the same for 1 and 1000 subscribers (the
// one frame per message), never per subscriber.
func BenchmarkDeliver_Subscribers(b *testing.B) {
	nc, _ := startNATS(b)
	hub, err := fanout.NewHub(fanout.Options{Conn: nc})
	if err != nil {
		b.Fatal(err)
	}
	defer hub.Close()
	srcs, _ := fanout.NewSources(fanout.SourcesConfig{})
	src := srcs.Lookup([]byte("trades"))
	payload := []byte(fmt.Sprintf(`[{"h":80062522,"s":"BTC","a":"0.00001","p":"89471","d":"open_long","tc":"normal","t":1765018379085,"li":1559885,"pad":"%0120d"}]`, 0))
	for _, n := range []int{1, 10, 1000} {
		subs := make([]fanout.Subscriber, n)
		for i := range subs {
			subs[i] = &counter{}
		}
		deliver := fanout.DelivererForTest(hub, src, subs)
		b.Run(fmt.Sprintf("%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				deliver(payload)
			}
		})
	}
}

func TestDeliverAllocationsDoNotGrowWithSubscribers(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	nc, _ := startNATS(t)
	hub, _ := fanout.NewHub(fanout.Options{Conn: nc})
	defer hub.Close()
	srcs, _ := fanout.NewSources(fanout.SourcesConfig{})
	src := srcs.Lookup([]byte("trades"))
	payload := []byte(`{"p":"1"}`)
	allocs := func(n int) float64 {
		subs := make([]fanout.Subscriber, n)
		for i := range subs {
			subs[i] = &counter{}
		}
		deliver := fanout.DelivererForTest(hub, src, subs)
		return testing.AllocsPerRun(200, func() { deliver(payload) })
	}
	one, thousand := allocs(1), allocs(1000)
	if one != thousand || one > 2 {
		t.Fatalf("allocs per message: %v with 1 subscriber, %v with 1000", one, thousand)
	}
}
