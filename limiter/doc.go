// Package limiter enforces Floodgate's throttling budgets (the "Limits"
// section of docs/configuration.md): per-connection message rate,
// per-identity rolling credits, concurrent connections, connect rate,
// per-key quotas, repeated-violation cooldowns and the failed-key IP block,
// on one node or across a cluster over Redis.
//
// # Call sites
//
// The broker declares small interfaces over these methods:
//
//	// before resolving a key, and after a bad one
//	err := l.CheckIP(ip, now)                 // *Refusal 403 IP_BLOCKED or nil
//	err := l.FailedKey(ip, now)               // records; *Refusal 403 once blocked
//	// at the upgrade, before accepting
//	conn, err := l.Admit(ctx, limiter.Request{
//		Identity: limiter.KeyIdentity(prefix), // or limiter.AddrIdentity(ip)
//		IP: ip, Tier: limiter.TierKey, Limits: rec.Limits, Quotas: rec.Quotas,
//	}, now)
//	var ref *limiter.Refusal                  // errors.As: Status, Code, Message,
//	ref.SetHeaders(w.Header())                // Retry-After, RateLimit, RateLimit-Policy
//	defer conn.Release()
//	// per client frame, in the read loop
//	d := conn.Charge(cost, now)               // or Count(cost, now) for unsubscribe
//	// cost: l.Costs().Ping, or Subscribe/Unsubscribe priced by source
//	// (SourceCosts; the node keeps them in a slice by source index).
//	// A cost of 0 charges the connection's message rate only.
//	if !d.Allowed { reply error d.Code(), d.Message(), d.RetryAfterMs() }
//	rl := {r: d.Remaining, q: d.Limit, t: d.ResetSeconds()}
//	if d.Close { close 1008 d.CloseReason() }
//	conn.MaxSubscriptions()                   // SUBSCRIPTION_LIMIT cap, live
//	// operator PATCH, key status, /readyz
//	l.SetOverrides(prefix, limits, quotas, now)
//	u := l.Usage(ctx, req, now)
//	err := l.Health()
//
//	// REST endpoints, before any work
//	d := l.AllowAPI(limiter.APIAccount, ip, now) // or APIStatus
//	if d.Refusal != nil { d.Refusal.Write(w) }   // 429 RATE_LIMITED
//
// ClientIP finds the client address (X-Forwarded-For only from trusted
// proxies). Run(ctx) does the background work; Close stops it.
//
// Refusal order at Admit: IP block (403 IP_BLOCKED "IP temporarily
// blocked"), violation cooldown (429 RATE_LIMITED "Rate limit exceeded:
// cooldown"), connect rate (429 CONNECT_RATE), concurrent connections (429
// TOO_MANY_CONNECTIONS), quotas (401 QUOTA_EXCEEDED "Rate limit exceeded:
// quota daily"). A connect attempt that passes the connect-rate check uses
// a connect token even if a later check refuses it.
//
// # Budgets
//
// Credits, per-connection rate and connect rate are GCRA cells (one int64
// each: burst up to the quota, smooth refill over the window; exact to the
// nanosecond, rounded so that never more than q units pass per window).
// Charge checks the connection bucket (1 message), then quotas, then
// credits, and commits only if all allow. Count (unsubscribe) commits
// regardless, letting budgets go into at most one window of debt. Refusals
// of a connection are remembered (Violations.MaxRefusals+1 timestamps); the
// one that makes more than MaxRefusals within Window sets Decision.Close
// and starts the identity's cooldown (30 s, 2 min, 10 min, then 10 min
// again; forgotten after ForgetAfter without offence). A quota refusal also
// sets Close. Rolling quotas keep 60 buckets per window: usage leaves the
// window between W and W+W/60 after it happened (never early); Total is a
// lifetime counter. With Quotas.Calendar, daily, weekly and monthly are UTC
// calendar periods instead (CalendarPeriod: the day from 00:00, the week
// from Monday, the month from the 1st): one sum per window for the current
// period, started again in a new one; a refusal waits until the period
// ends. Both kinds are always counted, so switching keeps the use. Usage
// reports each quota's reset time. Locally, quota usage lives in memory
// (lost on restart); in cluster mode it lives in Redis (the quota hash of
// the identity holds the rolling buckets and, per window, the current
// calendar period's number and sum). Quotas count from when they are set.
//
// Overrides (Limits, Quotas) ride on every Admit and can be changed with
// SetOverrides; live connections see them on their next frame, the credits
// already used are kept (converted to the new rate).
//
// # API budgets
//
// AllowAPI is a small keyed budget for the REST API: one GCRA cell per
// endpoint group and client IP (IPv6 by /64), PerIPPerMinute requests per
// minute with the same burst (limits.account_api: create, revoke and list
// of the wallet-signed account endpoints share one budget, 30;
// limits.status_api: the key status endpoint, 120). The cells live in the
// identity table under "api:<group>:<ip identity>", are local to the node
// (no Redis: a cluster of N nodes behind a balancer allows up to N times
// the budget), take the numbers of the config in force, and are swept
// once full. The caller finds the client IP (trusted proxies) and records
// failed key attempts with FailedKey, so a status endpoint probed with
// bad keys blocks the IP exactly as upgrades do.
//
// # Memory
//
// Identities live in a table of power-of-two shards (Options.Shards, 64),
// each a map under its own mutex. An identity costs about 180 bytes (120-byte
// cell, map slot and its name; TestTable_MemoryPerIdentity and
// BenchmarkTable_Memory measure it), plus 88 bytes per failed-key history, ~1.5
// KiB for keys with quotas, 112 bytes for the cluster state. A Conn costs 96
// bytes plus 88 for its refusal history. Sweep (every SweepInterval in Run)
// evicts identities whose state is back to idle: no connection, budgets
// full, no cooldown, block or quota usage. An anonymous client that
// connected once and sent a few frames is evictable a few seconds later
// (one connect token refills in 1 s, one anonymous credit in 480 ms), so
// memory follows the rate of distinct clients over seconds, not their total
// count; a flood from 1 M distinct addresses costs about 180 MB until swept.
//
// # Cluster mode
//
// With Options.Redis, an identity's credits, connection count, connect rate
// and quotas hold across nodes. Admit makes one round trip (a Lua script:
// connect-rate GCRA, connection count per node, quota check, and a first
// lease of credits of one connection burst). The per-message path makes
// none: each node spends credits from a local lease taken from the Redis
// GCRA cell of the identity. The lease script takes at most
// ceil(available/(2*ExpectedNodes)) credits (and at most what quotas
// allow, counting them against the quotas as it grants), so near
// exhaustion leases shrink to single credits. A node refills a lease in the
// background (Run: every SyncInterval, and at once when a lease falls to
// half), returns a lease unused for IdleReturn (keeping 2 credits while the identity
// has live connections on the node, so the first frame after a pause is not
// refused), settles Count debts, and
// rewrites its live connection count every Heartbeat (counts of a node
// silent for 3 heartbeats are ignored; a release reaches Redis at the next
// round). All of a round is one pipelined round trip; planning it visits
// every identity in the table under its mutex (tens of ns each).
//
// Error bound: every admitted credit was granted by Redis, so the cluster
// never admits more than the limit (beyond clock skew between nodes: Redis
// uses the nodes' timestamps, and a skew of s admits at most s/t extra
// credits, t = window/limit). The only under-admission is credits parked in
// leases of nodes that do not spend them: at most ExpectedNodes leases of
// at most ceil(available/(2*ExpectedNodes)) each, returned within
// IdleReturn; credits refilled while a node waits for its next lease stay in
// the Redis cell and are not lost. TestCluster_CreditsAccuracy measures
// 3 nodes under skewed, shifting load: within 1 credit of the limit per
// window (bound: 5 %). Connection counts lag releases by one sync round
// (conservative); a crashed node's connections stop counting after 3
// heartbeats; its unspent lease is lost for one window (conservative).
//
// Redis outage: the first failing exchange (or RedisDown, when the caller
// found Redis unreachable first) marks the cluster down, logs once and
// switches every identity to local cells holding 1/ExpectedNodes of each
// budget (credits, connections, connect rate, quotas); Admit and Charge
// never wait for Redis again until Sync's probe (PING, on every master of
// a Redis Cluster; every ProbeInterval) succeeds, which logs once and
// resumes leases and counts. Health reports the outage for /readyz. Redis
// calls are bounded by RedisTimeout, which only a client with
// ContextTimeoutEnabled honours against a hung server; set its
// DialerRetries low so a dead server fails fast. Cooldowns and IP blocks
// are per node.
//
// Redis Cluster: every key of an identity carries the hash tag {identity}
// (KeyPrefix may not contain braces), so each script (admit, lease, beat,
// peek) touches one slot, pipelines split by shard, and identities spread
// over the shards. The cluster accuracy, connection and quota tests also
// run on a private three-shard Redis Cluster (integration tag).
//
// # Concurrency
//
// Limiter is safe for concurrent use. A Conn's Charge, Count and Release
// are meant for its session's read loop (one goroutine at a time);
// MaxSubscriptions and Identity are safe from any goroutine. Each identity
// has its own mutex; different identities never contend. No I/O happens
// under a lock.
//
// # Hot path
//
// Conn.Charge and Conn.Count: 0 allocations, one uncontended mutex, no I/O,
// never block on anything but that identity's mutex (held for tens of
// nanoseconds). About 55 ns on a 2-vCPU EPYC VM, where x/time/rate's Allow
// takes 65 ns; 22 ns per frame with two parallel callers on different
// identities (BenchmarkCharge_*). In cluster mode the lease path is the
// same plus a non-blocking wake of the refill goroutine when the lease runs
// low. Decision.Message, Code and CloseReason return constant strings.
package limiter
