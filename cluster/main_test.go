//go:build cluster

// Package cluster_test is the three-node cluster harness of issue 6
// (`make test-cluster`). It builds the floodgate binary once, starts three
// `floodgate serve` child processes on one NATS and one Redis on free local
// ports, and drives them through the public websocket protocol and the
// operator API. The servers come from internal/testdeps: in CI a private
// nats-server and redis-server per test (a missing binary fails the test);
// outside CI NATS_URL and REDIS_URL when set, else private servers, else a
// skip that names the missing binary. The tests:
//
//   - TestClusterFanoutExactlyOnce: a message published once on NATS
//     reaches the clients of every node exactly once, in order.
//   - TestClusterCreditsHoldAcrossNodes: a key's credits, spent unevenly
//     over the three nodes, stay within 5 % of the ideal admission.
//   - TestClusterRevokeClosesEverywhere: a revoke on node 1 closes the key's
//     connections on every node within 1 s.
//   - TestClusterSIGKILLLosesNoKeys: a node killed with SIGKILL loses no keys
//     and the others keep serving.
//   - TestClusterNATSRestart: after a restart of (a dedicated) nats-server,
//     every node delivers again within 5 s.
//
// # Isolation
//
// Each test starts its own cluster with a random subject prefix, and
// creates keys for fresh random accounts (the Redis store has no namespace
// flag), so runs and other users of the same NATS and Redis do not collide.
// The NATS restart test always runs its own nats-server child
// (testdeps.StartNATS) on a free port, so a shared server is never
// disturbed.
//
// # Concurrency
//
// Every websocket client has one reader goroutine feeding a buffered
// channel; the test goroutine consumes it. Child processes and clients are
// stopped in t.Cleanup; TestMain checks for leaked goroutines.
//
// # Hot path
//
// None: this is a test harness. It measures and logs (t.Logf) revoke
// latency per node, credit accuracy and NATS recovery time.
package cluster_test

import (
	"os"
	"testing"

	"floodgate/internal/testdeps"
	"floodgate/internal/testdeps/procnode"
)

// suite runs the nodes of every test; TestMain sets it before any test
// runs.
var suite *procnode.Suite

func TestMain(m *testing.M) {
	os.Exit(procnode.Main(m, procnode.Options{}, &suite))
}

// env returns the NATS and Redis URLs of a test (testdeps.NATSURL and
// testdeps.RedisURL: private servers in CI), failing or skipping the test
// as testdeps decides when they cannot be had.
func env(t *testing.T) (natsURL, redisURL string) {
	t.Helper()
	return testdeps.NATSURL(t), testdeps.RedisURL(t)
}
