package fanout

import (
	"github.com/nats-io/nats.go"
	dto "github.com/prometheus/client_model/go"
)

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

// SequencedDelivererForTest is DelivererForTest for a channel with
// history: each message carries the next seq and the previous one as prev.
func SequencedDelivererForTest(h *Hub, src *Source, subs []Subscriber, compressed bool) func(payload []byte) {
	ch := &channel{hub: h, shard: &shard{}, subject: "bench", envelope: src.envelope}
	ch.sequenced.Store(true)
	for _, s := range subs {
		ch.addLocked(&Subscription{ch: ch, s: s, compressed: compressed})
	}
	comp := newCompressor(h.opts.Compression)
	var seq uint64 = 1 << 40
	return func(payload []byte) {
		m := message{payload: payload, seq: seq + 1, prev: seq}
		seq++
		ch.deliver(&m, comp)
	}
}

func ConnForTest(h *Hub) *nats.Conn { return h.nc }

// FromMemory is the number of replays served from a channel's recent tail.
func (h *History) FromMemory() int {
	var m dto.Metric
	_ = h.m.fromMemory.Write(&m)
	return int(m.GetCounter().GetValue())
}

// RecentTails is the number of channels keeping recent frames.
func (h *History) RecentTails() int { return int(h.tails.Load()) }
