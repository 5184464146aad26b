// Package fanout is Floodgate's NATS side: it maps a client's (source,
// params) to a NATS subject, keeps one NATS subscription per active channel
// per node, turns every NATS message into one ready-to-write websocket frame
// (compressed once when deflate subscribers want it) and offers that frame
// to every local subscriber, live or conflated.
//
// The pieces: [Sources] is the table of streams clients may subscribe to and
// the strict validation of their params (values match ^[A-Za-z0-9_-]{1,64}$,
// so no NATS wildcard or token separator can reach a subject), and which
// sources are conflatable. [Hub] owns the channel registry: channels live in
// a power-of-two array of shards picked by subject hash; a channel is
// created with its NATS subscription when its first local subscriber
// arrives (within the node's and the identity's channel caps,
// [ErrChannelLimit], [ErrOwnerChannelLimit]) and dropped, with the
// subscription, when its last one leaves. [Frame] is an encoded outbound
// message. [History] keeps the messages of the sources with history in a
// JetStream stream and gives their frames seq/prev, snapshots and replays.
// [StartEmbedded] runs nats-server in process for the single-node default
// and for tests. The synthetic demo market lives in the sub-package
// demofeed.
//
// # The NATS subscription layer
//
// One design serves live delivery, conflation and (later) history:
//
//   - Dispatchers, not a goroutine per channel. A channel subscribes with
//     ChanSubscribe into the queue of one of Options.Dispatchers goroutines,
//     picked by the hash of its subject. A channel costs a map entry, a
//     nats.Subscription and its member slices (about 1.3 KB,
//     BenchmarkChannelCost), no goroutine; one goroutine delivers all of a
//     channel's messages, so they stay in order.
//   - A channel's source is a [Route] (subject, sequenced) given by the
//     [Router] from the channel's source and subject. [Hub.Reroute] moves
//     every live channel to a new route without losing a subscriber: it
//     subscribes the new subject into the same dispatcher, makes it
//     effective (flush), switches the channel's current subscription
//     (messages of the old one are skipped from then on) and drops the old
//     one.
//   - History ([History], history.go) is the Router of a hub that has one:
//     the stream captures <prefix>.<source>[.>] of every source with
//     history and republishes each stored message to
//     floodgate.hist.<prefix>.<source>... (RePublish) with Nats-Sequence
//     and Nats-Last-Sequence, which are the frame's "seq" and "prev"
//     (identical on every node; nats-server 2.9.10 and 2.15 both set
//     them). Channels of those sources subscribe there while the stream is
//     available; two failed checks move every channel back to its raw
//     subject (Reroute), a passing one moves them again.
//   - A channel remembers its latest message (payload, seq) under its
//     lock, moved with each delivery walk, and looks it up in the stream
//     when it opens: a join's JoinInfo (the ack's seq, the snapshot frame,
//     built once per message and shared) is taken under the channel lock
//     as the subscriber joins, so the first live frame's prev is the ack's
//     seq. A conflation group does the same with the last frame it sent.
//   - Frames are built by one function (buildFrame) from a message
//     (payload, receive time, seq, prev, snapshot): {"channel":..,"data":..}
//     plus ,"seq":n,"prev":m when sequenced (,"seq":n,"snapshot":true for a
//     snapshot), then the compressed form when asked for. Replays
//     ([Hub.Replay], replay.go) read the stream after the subscriber
//     joined, with a short-lived consumer filtered to the channel from
//     since+1 (every call bounded, at most MaxReplays at once), and build
//     their frames with it too; the subscriber (the broker's session)
//     holds its live frames meanwhile and splices: replay, then the held
//     frames past the replay's last seq, then live, duplicates dropped by
//     seq. A channel keeps the frames of its last replay read, extended by
//     its live frames, while replays use it (recent.go), so a resume storm
//     reads the stream once.
//   - Conflation is per (channel, interval) group, shared by its members:
//     the dispatcher leaves each message in the group's pending slot; the
//     interval's conflator (one goroutine per interval, ticking only while
//     some group has something pending) builds one frame per group per
//     tick and offers it to the group. The group keeps the seq of the last
//     frame it sent, which becomes the next conflated frame's "prev".
//
// # Concurrency
//
// [Hub] and [Sources] are safe for concurrent use. Each channel has its own
// mutex guarding its member sets: a delivery walks a set under it, a join
// or a leave takes it for O(1) work (append; swap-remove through the
// [Subscription]'s index), so the subscribe ack queued by Join.Joined
// precedes every frame, nothing is offered after Unsubscribe returns, and
// a join storm on one channel never waits for another channel. The shard
// lock covers only the registry map and reference counts. Subscribe may
// send SUB and flush the NATS connection (a local round trip) only when a
// channel starts; Reroute does the same per channel. Dispatchers,
// conflators and Close are the hub's goroutines; Close stops them. A
// [Frame] is immutable once built and may be shared by any number of
// goroutines.
//
// # Hot path
//
// Per NATS message: one JSON validation pass over the payload, reading
// seq/prev from two headers when the channel is sequenced, two
// allocations (the frame struct and one slice holding the websocket frame,
// plus its compressed copy when a deflate subscriber is on the channel and
// the text is at least 256 bytes), then a walk of the channel's live
// member slice under its lock calling [Subscriber.Deliver], which must not
// block, and the channel's latest message (a struct copy) updated; a
// channel with a recent tail appends the frame to a ring. Nothing is allocated, copied or compressed per subscriber
// (TestDeliverAllocsDoNotGrowWithSubscribers); the cost of a delivery is
// one interface call plus whatever Deliver does (in Floodgate: append a
// pointer to a bounded queue). Joining or leaving allocates one
// Subscription, whatever the channel's size
// (TestJoinAllocsDoNotGrowWithChannelSize, BenchmarkJoinLeave_HotChannel).
package fanout
