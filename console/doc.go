// Package console is the operator console: its page and the node-side data
// behind it.
//
// The page is a static web page (HTML, CSS, plain JavaScript modules and
// the vendored uPlot charts) embedded in the binary with go:embed and
// served by Handler under /admin/ on the API listener when an admin token
// is configured. Nothing is fetched from
// another origin at run time; the page talks only to the operator API
// (/admin/v1) with the admin token as a Bearer header, kept in the tab's
// sessionStorage (no cookie).
//
// Every answer carries a strict Content-Security-Policy (scripts, styles,
// images and fetches from the page's own origin only; no inline script or
// style; no framing), X-Content-Type-Options: nosniff, Referrer-Policy:
// no-referrer and Cache-Control: no-cache with an ETag per file.
//
// The data is a Backend, built by the node from Options (its Prometheus
// registry, its readiness, the broker's per-key counters, the NATS
// connection, a clock), one file per part:
//
//   - admin.go: Backend, its Run loop and the endpoints it mounts with the
//     page: GET /admin/v1/stats, /admin/v1/top-keys and /admin/v1/nodes,
//     in the REST envelope (keyapi.Envelope), 401 without the admin token.
//   - stats.go: a 10-minute ring of 2 s samples of the node's registry
//     (rates, the fan-out p99 from histogram bucket deltas): 300 samples.
//   - topkeys.go: the top keys of the last 10 minutes by traffic and by
//     refusals (30 s buckets of bounded space-saving summaries: 1,024 keys
//     for traffic, 128 for refusals per bucket).
//   - nodes.go: the heartbeats of the cluster's nodes on NodesSubject
//     (floodgate.ctl.nodes) every 5 s, listed for 15 s (at most 1,024
//     nodes, 64 KiB a heartbeat).
//
// static/vendor holds uPlot from npm, copied by scripts/vendor-console.sh
// (make console-vendor) from the committed package.json and
// package-lock.json.
//
// # Concurrency
//
// The handler is immutable after Handler and safe for concurrent use. A
// Backend is safe for concurrent use: Run (one goroutine) samples and
// publishes, the handlers read, the broker's goroutines call Closed and
// Refused.
//
// # Hot path
//
// Backend.Refused runs on a refused frame of a key: a short scan of a
// fixed array under a lock, 0 allocations, no I/O. Closed runs once per
// ended session (one map update). The page is loaded once per operator
// session; each answer is a lookup in a map built by Handler and one
// write.
package console
