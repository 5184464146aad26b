//go:build chaos

// Package chaos_test is the chaos suite of issue 12 (`make test-chaos`):
// it runs `floodgate serve` child processes on private nats-server and
// redis-server processes (internal/testdeps, free ports, never the shared
// 4222 and 6379), makes those dependencies hang (SIGSTOP), come back
// (SIGCONT) and die (SIGKILL, then a restart on the same port) while
// clients stream, connect and change keys, and asserts the figures
// docs/operations.md promises:
//
//   - TestChaosRedisHang: with Redis stopped, every anonymous and
//     cached-key upgrade completes in <= 300 ms, an uncached key gets 503
//     UNAVAILABLE with Retry-After in <= 300 ms, a key revoked before the
//     outage stays refused (401), the limiter is on local budgets within 1 s,
//     /readyz is 503 `redis` within 2 s, the operator API answers within
//     1 s, streams do not stall; all of it recovers within 5 s of SIGCONT.
//   - TestChaosRedisKill: keys created while Redis is killed and restarted
//     (appendfsync always) are never lost once acknowledged, and the node
//     recovers within 5 s of the restart.
//   - TestChaosNATSHang: with NATS stopped, a revoke on node 1 answers
//     within 1 s and closes node 1's session of the key at once; both
//     nodes are not ready (`nats`, floodgate_nats_connected 0) within 15 s;
//     node 2 closes its session by the 5 s recheck; after SIGCONT every
//     node delivers again within 5 s and the event is published.
//   - TestChaosNATSKill: the same with SIGKILL and a restart.
//   - TestChaosRedisClusterBudgets: three nodes on a three-shard Redis
//     Cluster (--redis-mode cluster) hold one key's credits within 5 %; a
//     stopped shard makes /readyz say `redis` and the node recovers.
//   - TestChaosSentinel: a node on --redis-mode sentinel (a real
//     redis-server --sentinel) creates and admits keys.
//
// Each test logs its figures as "figure: ..." lines; docs/operations.md's
// failure-mode table records them. FLOODGATE_BINARY runs the suite
// against another build (for example today's main, to see it fail).
//
// # Concurrency
//
// Tests run one at a time (the figures are timings). Every client,
// publisher and poller has one goroutine that the test stops in
// t.Cleanup; the floodgate children (internal/testdeps/procnode) and the
// servers (internal/testdeps) are killed there too; TestMain checks for
// leaked goroutines.
//
// # Hot path
//
// None: this is a test suite.
package chaos_test

import (
	"os"
	"testing"

	"floodgate/internal/testdeps/procnode"
)

// suite runs the nodes of every test; TestMain sets it before any test
// runs. FLOODGATE_BINARY, when set, is the binary under test.
var suite *procnode.Suite

// chaosConfig lifts the connect rates out of the way: the tests open many
// connections from one IP and key on purpose.
const chaosConfig = `limits:
  tiers:
    anonymous: {connects: 100000, connect_window: 5m}
    key: {connects: 100000, connect_window: 5m}
`

func TestMain(m *testing.M) {
	os.Exit(procnode.Main(m, procnode.Options{Binary: os.Getenv("FLOODGATE_BINARY"), Config: chaosConfig}, &suite))
}
