// Package broker is Floodgate's front door: it upgrades HTTP requests to
// websocket sessions, asks an identity resolver and an admission check
// before accepting, and runs each session's client protocol (subscribe,
// unsubscribe, ping) against a fan-out hub.
//
// A session has two halves. The read loop runs on the upgrade's own
// goroutine: it reads one text frame at a time (4 KiB limit), parses it with
// a pooled fastjson parser, charges the connection's [Budget] and executes
// it. The writer is a goroutine that exists only while the session has
// something to send: the first frame queued on an empty queue starts it; it
// drains everything queued, copies it into one pooled buffer and writes it
// with one syscall (frames are already complete websocket frames, built once
// per node by the fan-out), then looks again and exits when the queue is
// empty. A busy connection therefore costs one write per batch, not per
// frame, and an idle one holds no writer goroutine and no write buffer.
// Control frames (pong replies, close) are written by coder/websocket; every
// socket write, ours and the library's, goes through one per-connection
// mutex, so frames never interleave.
//
// Timers are not per connection: one sweeper goroutine per [Server] visits
// every session each SweepInterval to enforce the idle timeout, send server
// pings, check pong deadlines, announce and enforce the connection lifetime
// and key expiry.
//
// # Concurrency
//
// [Server] is safe for concurrent use. Its exported methods may be called
// from any goroutine. Sessions are internal; their fields are grouped by the
// goroutine that owns them. Close stops the sweeper and every session and
// waits for their goroutines.
//
// # Hot path
//
// Per client frame: a strict JSON validation of the whole frame (nothing is
// echoed from a frame that is not JSON, such as an id of NaN), parse (0
// allocs, pooled parser valid until the frame is handled), Budget.Charge (the interface's own cost; 0 allocs for the
// default), and for ping a pooled reply frame (0 allocs in steady state).
// Subscribe allocates the subject string and the subscription entry once.
// Per market frame and subscriber: Deliver checks one atomic flag (set
// only around a replay, when it takes the subscription's mutex to hold or
// drop the frame), appends the frame to the bounded send queue under the
// session mutex and never blocks; it allocates nothing
// once the queue has grown (its capacity is dropped again when the session
// goes idle). Waking an idle session starts its writer goroutine (a
// pre-bound method value: no heap allocation; the runtime reuses goroutine
// stacks). A batch of one frame is written straight from the shared frame;
// larger batches are copied into a pooled 64 KiB buffer first. Past the
// high-water mark (half of 1024 frames or 4 MiB by default), a frame of a
// conflatable channel (prices, bbo, book, candles) replaces that channel's
// pending frame in the queue (latest value wins, counted as dropped
// "conflated"); only frames of other channels overflowing the queue close
// the session with 1013 "slow consumer", without delaying the caller.
// With Options.MeterDelivery, a key session's writer counts the channel
// frames of each written batch and their bytes as written in the pass that
// recycles the batch, then adds them with two atomic adds per batch
// (meter.go; TakeDelivered hands them to the node once a second): 0
// allocations, within 1 % of the instructions per delivery of no metering
// (docs/benchmarks.md).
//
// Compression: a client that offers permessage-deflate gets it without
// context takeover (coder/websocket negotiates and inflates its frames;
// the 4 KiB limit applies to the inflated size). Market frames are
// compressed once per node by the fan-out; a compressed session's Deliver
// queues the compressed bytes (RSV1 set) of frames that have them. Direct
// replies are never compressed.
//
// Unsubscribing a channel the connection has not joined (or naming no
// channel) is charged as [OpUnsubscribeNotJoined], refusable like any
// frame; only a real unsubscribe ([OpUnsubscribe]) is never refused.
//
// Server.EndSubscriptions ends chosen subscriptions of a key's live
// sessions from any goroutine (a scope change, a used-up quota): under the
// session's subscription lock it leaves the channel, then queues the
// SUBSCRIPTION_ENDED notice, so no frame of the channel follows it. The
// read loop takes that lock (uncontended, no allocation) only on
// subscribe and unsubscribe, never per market frame.
//
// History (docs/protocol.md): the subscribe ack carries the JoinInfo the
// hub hands to Join.Joined (seq, epoch), queued with the snapshot frame,
// if asked, under the channel lock, so both precede every live frame. A
// subscribe with since joins the channel with its subscription holding
// live frames (bounded like the send queue: overflowing closes 1013), asks
// the hub to replay (charging [Budget.ChargeReplay] once the number of
// messages is known, before any is read), then splices on the read loop:
// the ack with "recovered", the replayed frames (outside the queue's
// bounds, which a replay's own bounds replace), the held frames past the
// replay's last seq, then live, frames at or below it dropped as
// duplicates. The read loop waits for the replay, so a connection runs one
// at a time.
//
// Memory per idle connection: the coder/websocket Conn, a 1 KiB read
// buffer, a 256-byte control-frame buffer, the read goroutine's stack and
// the session struct; see docs/benchmarks.md for the measured total.
package broker
