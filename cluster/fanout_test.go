//go:build cluster

package cluster_test

import (
	"testing"
	"time"

	"floodgate/internal/testdeps/procnode"
)

// TestClusterFanoutExactlyOnce: a message published once on NATS reaches
// the subscribed clients of every node exactly once and in order.
func TestClusterFanoutExactlyOnce(t *testing.T) {
	natsURL, redisURL := env(t)
	c := startCluster(t, natsURL, redisURL)
	key := c.nodes[0].CreateKey(t, procnode.NewAccount(), nil)
	const perNode = 2
	var clients []*wsClient
	for i, n := range c.nodes {
		for range perNode {
			cl := mustDial(t, n, i, key.APIKey)
			cl.subscribeTrades(t)
			clients = append(clients, cl)
		}
	}
	nc := publisher(t, natsURL)
	awaitProbes(t, nc, c.subject(), procnode.RandomToken(4), clients, 5*time.Second)

	const n = 200
	start := time.Now()
	expectSeries(t, nc, c.subject(), clients, n)
	t.Logf("fanout: %d messages published once reached %d clients on %d nodes exactly once, in order, in %v",
		n, len(clients), len(c.nodes), time.Since(start).Round(time.Millisecond))
}
