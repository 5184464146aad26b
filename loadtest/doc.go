// Package loadtest is the bundled load generator behind `floodgate load`: it
// drives a broker through its public websocket protocol like real clients,
// publishes into NATS with a timestamp in every payload, and reports what
// the clients actually received (README.md "Load testing").
//
// The pieces: [Conn] is a minimal websocket client over a net.Conn (a
// hand-written upgrade, masked writes, a frame reader on a large
// bufio.Reader); [Publisher] publishes at a steady rate; [Run] runs a
// scenario and returns a [Report] (JSON with stable snake_case names, a
// text table, and a --max-loss/--max-p99 gate); [CreateKeys] makes API keys
// through the operator API (keyapi.AdminClient).
//
// Scenarios: broadcast and fanout subscribe every connection to one of
// Config.Channels channels and count deliveries against what was
// published. Storm does the same for a steady population while
// Config.Ramp further connections per second dial, subscribe, hold for
// Config.Hold and close ([StormReport]: connects ok/failed by reason,
// connect and subscribe latency); the loss and latency figures are the
// steady population's. Throttle publishes nothing: Config.Identities
// identities ping above their credit budget, one ping in flight per
// connection, pausing after each refusal so the broker's "more than 10
// refusals in 10 s" close is not reached, and [ThrottleReport] compares
// each identity's admitted rate with the configured one (estimated between
// credit refusals, or from the replies' "rl" while the identity still
// spends its burst; see identityStats.admittedRate). Identities are API
// keys or, anonymous, source IPs: several anonymous identities need
// several Config.SourceAddrs (127.0.0.x against a loopback broker). Hot
// joins Config.Conns connections to one streaming channel at once beside a
// steady channel ([HotReport]). Resume ([ResumeReport]) needs a broker
// with history: Config.Conns connections read one channel, all disconnect
// for Config.Away, then all come back at once with "since" (retrying a
// RATE_LIMITED resubscribe after its retry_after_ms), and every frame's
// seq and prev are checked against what the client had: gaps, duplicates
// and lost messages (all must be 0), recovered acks, the time until the
// last client is live and the broker's CPU for the storm.
//
// # Concurrency
//
// Run is safe to call concurrently (nothing is shared between runs). A Conn
// has one reader: ReadMessage and ReadLoop must not be called from two
// goroutines; WriteText, Close and CloseWith are safe from any goroutine.
// A Publisher's Run is called once; Total is safe concurrently. CreateKeys
// is safe to call concurrently.
//
// # Hot path
//
// Per received market frame, on the connection's own goroutine: parse the
// frame header from the bufio.Reader, hand the payload to the callback
// straight from the reader's buffer (a frame larger than ReadBufferSize, or
// fragmented, is assembled in a reused per-connection buffer), classify the
// "channel" and extract "ts" and "seq" by scanning bytes (no JSON decode),
// add one to an uncontended atomic counter, and append the latency to a
// per-connection batch that is flushed under one of 16 shard locks every 64
// samples or 0.5 s: 0 allocations and no lock per frame (about 160 ns per
// frame here, plus the read syscall amortised over the whole read buffer).
// A ping is answered inline with a pong (one write under the connection's
// write mutex). Memory per connection:
// ReadBufferSize (32 KiB by default in Run) plus about 1 KiB and a
// goroutine stack. Storm and throttle connections are few or short-lived
// and use a 4 KiB read buffer; a throttle reply takes the identity's mutex
// (replies come at most at the send rate).
//
// With --self the broker runs in the generator's process, so the broker
// CPU and generator CPU figures are both that process's total; run
// `floodgate serve` separately to tell them apart.
package loadtest
