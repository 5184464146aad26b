package loadtest_test

import (
	"context"
	"strings"
	"testing"

	"floodgate/broker"
	"floodgate/internal/gate/gatetest"
	"floodgate/limiter"
	"floodgate/loadtest"
)

const testAdminToken = "loadtest-admin-token"

// testNode is a real broker wired like `floodgate serve` (internal/gate/
// gatetest): embedded NATS, fanout hub, gate with a limiter, bbolt key
// store, the sidecar's operator API and /metrics.
type testNode struct {
	natsURL    string
	wsURL      string
	apiURL     string
	metricsURL string
	srv        *broker.Server
}

type testNodeOptions struct {
	limits *limiter.Config // nil: limiter.DefaultConfig
	broker broker.Options  // Hub, Sources, Resolver, Admitter and OnClose are set here
}

func startNode(t testing.TB, o testNodeOptions) *testNode {
	t.Helper()
	c := gatetest.NewCluster(t)
	n := c.Node(t, gatetest.NodeOptions{Limits: o.limits, Broker: o.broker, AdminToken: testAdminToken, NodeID: "loadtest"})
	return &testNode{natsURL: c.NATS.ClientURL(), wsURL: n.WSURL, apiURL: n.APIURL, metricsURL: n.MetricsURL, srv: n.Server}
}

// createKeys makes n keys on the node through loadtest.CreateKeys.
func (n *testNode) createKeys(t testing.TB, count int) []string {
	t.Helper()
	keys, err := loadtest.CreateKeys(context.Background(), loadtest.KeyOptions{AdminURL: n.apiURL, AdminToken: testAdminToken, N: count})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// keyPrefix is the public prefix of a full key.
func keyPrefix(key string) string {
	p, _, _ := strings.Cut(key, "_")
	return p
}
