// Package node is Floodgate's composition root: it builds and runs one node
// (NATS or the embedded server, the key store, the limiter, the fan-out hub,
// the broker, the REST sidecar, both HTTP servers and every background job)
// from a Config. The binary and every end-to-end test build their nodes
// with New, so the tests run exactly what ships.
//
// Besides the wiring, the node owns the glue between the parts, one job per
// file:
//
//   - identity.go: the one place that turns an upgrade into who it is: the
//     presented API key (PF-API-KEY, X-API-Key, the key.<key> subprotocol,
//     ?api_key= when allowed) and the client address (trusted proxies).
//   - admit.go: the broker's Admitter: key verification, failed attempts
//     toward the IP block, the limiter's admission.
//   - budget.go: the per-frame budget of a connection (costs by source
//     from a price table swapped on reload, usage), and the charge of a
//     replay (limits.costs.replay per 100 messages).
//   - control.go: key control events (revoke, deactivate, expire, update)
//     applied to live sessions, and the periodic recheck of live keys
//     (every 5 s instead of 30 s while events may be missed).
//   - notify.go: the REST API's notifier: a change made through this node
//     applies to its own sessions at once, then goes to the others over
//     NATS in the background, retried.
//   - deps.go: what the node connects to: the Redis client of
//     --redis-mode (single, cluster, sentinel) with bounded calls, the NATS
//     connection (pings that find a hung server), the history
//     (--history auto|on|off, the JetStream store of the embedded server in
//     DataDir/nats; a failure leaves the node live-only and not ready) and
//     the demo feed.
//   - health.go: the background dependency check, /readyz's reasons, and
//     the store guard that keeps a hung Redis off the upgrade path.
//   - events.go: key connection events written to the store, in batches,
//     refusals coalesced per key, code and second.
//   - pending.go: the websocket listener's cap of sockets per IP that have
//     not sent a whole request (limits.node.max_pending_per_ip).
//   - purge.go: the job that deletes revoked keys past the retention.
//   - usage.go: a key's live budget for the status endpoint and operators;
//     delivery metering (the sessions' delivered frames and bytes folded
//     into the key's usage at each usage flush) and quotas.delivered_daily
//     (public subscriptions ended until 00:00 UTC).
//   - http.go: the two muxes, the /readyz handler, pprof (its cmdline
//     with secrets redacted), and the operator console (package console:
//     its page and its /admin/v1 endpoints) mounted behind the admin
//     token. The node builds the console's Backend from its registry, its
//     readiness, the broker's per-key counters and the NATS connection,
//     and feeds it the ended sessions and the refusals of keys.
//   - config.go: Config, the config file (one section per concern).
//
// Sidecar mode (Config.Sidecar) is the same node without the broker: the
// REST API alone against the shared store.
//
// # Concurrency
//
// New and Run are called once, from one goroutine; Run blocks until its
// context ends, then drains and releases everything. Every goroutine the
// node starts (HTTP servers, limiter sync, usage flushes, event writer,
// key recheck, dependency check, control event publisher, purge, demo
// feed, the console's sampler, NATS subscriptions, the history's check)
// is stopped before Run returns (the pending listener's reaper stops when its listener closes).
// Reload, the accessors and the HTTP handlers are safe for concurrent use.
//
// # Hot path
//
// The per-frame path through the node is budget.Charge: one limiter charge
// and one usage count, 0 allocations, no I/O; a refused frame of a key also
// counts in the console's refusal ranking (a short scan of a fixed array,
// 0 allocations). Admit runs once per upgrade:
// a warm key lookup (0 allocations) and the limiter's admission (one Redis
// round trip in cluster mode). Each Redis call on it is bounded by the
// client's read_timeout, and skipped while Redis is known down.
package node
