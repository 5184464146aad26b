// Package auth owns Floodgate's API keys: their format and hashing, the
// durable Store (a bbolt file or Redis), wallet-signed requests, the REST
// sidecar that manages keys, the upgrade-time key cache, in-memory usage
// counting, and the control events that revoke keys on every node.
//
// # Keys
//
// A key is "{prefix}_{secret}": 8 random base58 characters (the public id
// used for lookup, logs and revocation), "_", then 16 random bytes in
// base58. Only SHA-256 of the full key is stored; hashes are compared in
// constant time; the full key is shown once, at creation, and never
// logged. At most Options.MaxActiveKeys (5) keys of an account are active.
//
// # Main types
//
//   - Sidecar (NewSidecar): the http.Handler of rest.md: wallet-signed
//     account endpoints, GET /api/v1/api_keys/status, the operator API
//     under /admin/v1 and GET /openapi.json (openapi.json in this
//     directory, embedded).
//   - Keyring (NewKeyring): Verify(key, now) for websocket upgrades.
//   - Usage (NewUsage): per-key message counts, flushed in batches.
//   - BoltStore (OpenBolt) and RedisStore (NewRedisStore): the Store.
//   - NATSNotifier and SubscribeEvents: control events on
//     "floodgate.ctl.keys".
//   - AdminClient: a client of the operator API (floodgate keys ...).
//
// # Redis key layout
//
// Every key starts with RedisOptions.Namespace (default "floodgate:"):
//
//	{ns}key:{prefix}     string  JSON Record without usage
//	{ns}usage:{prefix}   hash    count (request_count), last (last use, unix ms)
//	{ns}events:{prefix}  list    JSON Event, oldest first, trimmed to 1000
//	{ns}acct:{account}   set     prefixes of the account's keys
//	{ns}keys             set     every prefix
//	{ns}sig:{signature}  string  "1", PX until the signed request expires
//
// Create and Update run under WATCH on the record and the account's set
// and records, then MULTI/EXEC (retried on conflict); usage and events are
// Lua scripts; replay protection is SET NX PX, so a signature is accepted
// once across the cluster. On Redis Cluster, use a namespace with a hash
// tag ("{floodgate}:") so each transaction stays in one slot.
//
// # Concurrency
//
// Sidecar, Keyring, Usage, both stores, NATSNotifier and AdminClient are
// safe for concurrent use. Usage.Run is the only goroutine the package
// starts; it returns after a final flush when its context ends.
// SubscribeEvents calls its function on the NATS subscription's goroutine.
//
// # Hot path
//
// Two functions run per connection or per message:
//
//   - Keyring.Verify, once per upgrade: with the record cached, a map
//     lookup under a read lock, SHA-256 of the key (about 0.3 µs), and a
//     constant-time compare; 0 allocations, no I/O. A cold lookup reads the
//     store once per prefix however many upgrades wait (bbolt: ~15 µs, 24
//     allocations). Unknown prefixes are remembered for NegativeTTL.
//   - Usage.Add, once per client message: an atomic add after a map lookup
//     under a read lock; 0 allocations once the prefix is known; never
//     blocks on I/O. The store sees one batched write per second at most.
//
// Everything else (REST requests) costs one or two store operations; a
// bbolt write is an fsync (a few ms) that completes before the response.
package auth
