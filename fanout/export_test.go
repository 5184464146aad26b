package fanout

// DelivererForTest returns the hub's per-message path for a channel with
// the given subscribers, without NATS.
func DelivererForTest(h *Hub, src *Source, subs []Subscriber) func(payload []byte) {
	ch := &channel{hub: h, shard: &shard{}, subject: "bench", envelope: src.envelope}
	ch.subs.Store(&subs)
	return ch.deliver
}
