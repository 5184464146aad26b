// Package auth owns Floodgate's API keys: their format and hashing, the
// durable Store (a bbolt file or Redis) with its audit log and replay
// entries, the upgrade-time key cache, in-memory usage counting, and the
// control events that revoke keys on every node. The REST API that
// manages keys is package keyapi, which imports this one (never the
// reverse).
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
//   - Keyring (NewKeyring): Verify(key, now) for websocket upgrades.
//   - Usage (NewUsage): per-key message counts, flushed in batches.
//   - BoltStore (OpenBolt) and RedisStore (NewRedisStore): the Store,
//     and its AuditLog (the operator actions keyapi records); TimedStore
//     wraps either with latency metrics.
//   - NATSNotifier and SubscribeEvents: control events on
//     "floodgate.ctl.keys".
//   - Record (with ValidateLimits, ValidateQuotas), Limits, Quotas,
//     CIDRs: what a key allows.
//
// # Indexes and retention
//
// Both stores keep, in the same transaction as the record, per-account
// indexes: the active keys (counted against Options.MaxActiveKeys), the
// aliases, and every key in creation order; plus every key in creation
// order and the revoked keys by revocation time. Creating, activating or
// renaming a key reads the first two only, so an account's revoked keys
// cost nothing however many there are; List reads one page from an index
// (Page: limit and an opaque cursor, the record's creation time and
// prefix). Store.Purge deletes keys revoked before a cutoff with their
// usage and events, through the revocation index (the node runs it every
// minute with a 30-day retention).
//
// # Redis key layout
//
// Every key starts with RedisOptions.Namespace (default "floodgate:"; no
// braces: ValidNamespace). Keys that must change together share a hash
// tag, so each script and transaction touches one slot of a Redis
// Cluster:
//
//	{ns}p:{<prefix>}              string  the key's account (the prefix's pointer; SET NX)
//	{ns}u:{<prefix>}              hash    count (request_count), last (last use, unix ms),
//	                                      day (UTC day of tm/tb/tc), tm tb tc (today's delivered
//	                                      messages, bytes, credits: every node's HINCRBY), m b c (totals)
//	{ns}e:{<prefix>}              list    JSON Event, oldest first, trimmed to 1000
//	{ns}a:{<account>}:k:<prefix>  string  JSON Record without usage
//	{ns}a:{<account>}:all         zset    every key of the account (members: sort key)
//	{ns}a:{<account>}:active      zset    its active keys (members: sort key)
//	{ns}a:{<account>}:alias       hash    alias -> prefix
//	{ns}index                     zset    every key (members: sort key)
//	{ns}revoked                   zset    revoked prefixes, score revoked_at (unix ms)
//	{ns}sig:<signature>           string  "1", PX until the signed request expires
//	{ns}schema                    string  layout version ("2"; Upgrade converts version 1)
//
// The sort key is the creation time (16 hex digits of unix µs) then ":"
// and the prefix; index members all score 0 and are read with
// ZRANGEBYLEX from a cursor. Create is SET NX of the pointer, then the
// global entries, then one script in the account's slot (limit, alias,
// record, account indexes); Update, Delete and Purge are WATCH/MULTI
// transactions in the account's slot (retried on conflict), then single
// commands on the prefix's slot and the global indexes. The global
// entries are written before the record and removed after it, and every
// reader checks them against the record, so a crash between steps leaves
// at most a harmless leftover. Usage and events are scripts in the
// prefix's slot (EXISTS of the pointer, then the write); replay
// protection is SET NX PX, so a signature is accepted once across the
// cluster and forgotten when its window ends.
//
// # Concurrency
//
// Keyring, Usage, both stores, TimedStore and NATSNotifier are safe for
// concurrent use. Usage.Run is the only goroutine the package starts; it
// returns after a final flush when its context ends.
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
//     Usage.AddCharged is the same with the frame's credits (one more
//     atomic add); delivered messages and bytes come in once per flush
//     (Usage.AddDelivered from UsageOptions.Collect), never per frame.
//
// Everything else is a store operation for keyapi's REST requests, the
// node's rechecks and the purge: a bbolt write is an fsync (a few ms) that
// completes before it returns; a Redis one is the few commands of "Redis
// key layout" above.
package auth
