package fanout

import "github.com/nats-io/nats.go"

// DelivererForTest returns the hub's per-message path for a channel with
// the given live subscribers, without NATS; compressed marks every one as
// a deflate subscriber.
func DelivererForTest(h *Hub, src *Source, subs []Subscriber, compressed bool) func(payload []byte) {
	ch := &channel{hub: h, shard: &shard{}, subject: "bench", envelope: src.envelope}
	for _, s := range subs {
		ch.addLocked(&Subscription{ch: ch, s: s, compressed: compressed})
	}
	comp := newCompressor(h.opts.Compression)
	return func(payload []byte) {
		m := message{payload: payload}
		ch.deliver(&m, comp)
	}
}

func ConnForTest(h *Hub) *nats.Conn { return h.nc }
