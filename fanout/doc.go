// Package fanout is Floodgate's NATS side: it maps a client's (source,
// params) to a NATS subject, keeps one NATS subscription per active channel
// per node, turns every NATS message into one ready-to-write websocket frame
// and offers that frame to every local subscriber.
//
// The pieces: [Sources] is the table of streams clients may subscribe to and
// the strict validation of their params (values match ^[A-Za-z0-9_-]{1,64}$,
// so no NATS wildcard or token separator can reach a subject). [Hub] owns the
// channel registry: channels live in a power-of-two array of shards picked by
// subject hash; a channel is created with its NATS subscription when its
// first local subscriber arrives and dropped, with the subscription, when
// its last one leaves. [Frame] is an encoded outbound message.
// [StartEmbedded] runs nats-server in process for the single-node default
// and for tests. The synthetic demo market lives in the sub-package
// demofeed.
//
// # Concurrency
//
// [Hub] and [Sources] are safe for concurrent use. Subscribe and Unsubscribe
// serialise per channel (they may send SUB/UNSUB and flush the NATS
// connection, a local round trip, only when a channel starts or ends).
// Delivery runs on the NATS subscription's goroutine, one per channel, so the
// frames of one channel reach each subscriber in publish order. A [Frame] is
// immutable once built and may be shared by any number of goroutines.
//
// # Hot path
//
// Per NATS message: one JSON validation pass over the payload, two
// allocations (the frame struct and its bytes: websocket header, envelope
// and payload in one slice), then a walk of the channel's subscriber slice
// under the shard's read lock calling [Subscriber.Deliver], which must not
// block. Nothing is allocated or copied
// per subscriber; the cost of a delivery is one interface call plus whatever
// Deliver does (in Floodgate: append a pointer to a bounded queue).
// Subscriber sets are copy-on-write, so joining or leaving a channel of n
// subscribers costs O(n) and deliveries on a shard run concurrently.
package fanout
