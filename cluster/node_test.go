//go:build cluster

package cluster_test

import (
	"fmt"
	"testing"

	"floodgate/internal/testdeps/procnode"
)

// nodeCount is the size of every cluster.
const nodeCount = 3

// cluster is the nodes of one test on one NATS and one Redis.
type cluster struct {
	nodes   []*procnode.Node
	natsURL string
	prefix  string // subject prefix, random per cluster
}

// subject is the NATS subject of source trades, symbol BTC.
func (c *cluster) subject() string { return c.prefix + ".trades.BTC" }

// startCluster starts nodeCount nodes against natsURL and redisURL, in
// parallel, and waits until all serve.
func startCluster(t *testing.T, natsURL, redisURL string) *cluster {
	t.Helper()
	c := &cluster{natsURL: natsURL, prefix: "ct" + procnode.RandomToken(6)}
	specs := make([]procnode.Spec, nodeCount)
	for i := range specs {
		specs[i] = procnode.Spec{ID: fmt.Sprintf("node%d", i+1), NATSURL: natsURL, RedisURL: redisURL,
			Prefix: c.prefix, ClusterNodes: nodeCount}
	}
	c.nodes = suite.StartNodes(t, specs...)
	t.Logf("cluster: subject prefix %s, nats %s", c.prefix, natsURL)
	return c
}
