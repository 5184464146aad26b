// Package gate connects the broker's seams to the key store and the
// limiter: it resolves an upgrade's identity from its API key (PF-API-KEY,
// X-API-Key, a "key.<key>" subprotocol, or ?api_key= when allowed) or its
// client IP, admits the connection against the limiter, adapts a limiter
// connection to a broker Budget, counts key usage, records per-key
// connection events, and applies key control events (revoke, deactivate,
// expire, update) to live sessions.
//
// # Concurrency
//
// Gate is safe for concurrent use. Run owns the goroutine that writes
// connection events to the store; Watch owns a NATS subscription that Stop
// ends.
//
// # Hot path
//
// Budget.Charge is the per-frame path: one limiter charge (0 allocs, tens of
// ns) and one usage count (0 allocs) for key connections. Resolve and Admit
// run once per upgrade: a warm keyring lookup (0 allocs, < 2 µs) and a
// limiter admission (one Redis round trip in cluster mode).
package gate
