package loadtest_test

import (
	"context"
	"strings"
	"testing"

	"floodgate/broker"
	"floodgate/limiter"
	"floodgate/loadtest"
	"floodgate/node"
	"floodgate/node/nodetest"
)

const testAdminToken = "loadtest-admin-token-0123456789"

// testNode is a real node built by node.New, as `floodgate serve` builds
// it: embedded NATS, fanout hub, limiter, bbolt key store, the sidecar's
// operator API and /metrics.
type testNode struct {
	natsURL    string
	wsURL      string
	apiURL     string
	metricsURL string
	srv        *broker.Server
}

type testNodeOptions struct {
	limits *limiter.Config // nil: limiter.DefaultConfig
}

func startNode(t testing.TB, o testNodeOptions) *testNode {
	t.Helper()
	file := node.DefaultFile()
	if o.limits != nil {
		file.Limits = *o.limits
	}
	n := nodetest.Start(t, node.Config{File: &file, AdminToken: testAdminToken, NodeID: "loadtest"})
	return &testNode{natsURL: n.NATSURL, wsURL: n.WSURL, apiURL: n.APIURL, metricsURL: n.APIURL + "/metrics", srv: n.Broker()}
}

// startRoomyNode starts a node whose anonymous tier has credits to spare
// (1,000,000 a window), for scenarios that measure delivery, not the
// limiter.
func startRoomyNode(t testing.TB) *testNode {
	t.Helper()
	limits := limiter.DefaultConfig()
	limits.Tiers.Anonymous.Credits = 1_000_000
	return startNode(t, testNodeOptions{limits: &limits})
}

// target is cfg aimed at n: its websocket, NATS and /metrics URLs.
func (n *testNode) target(cfg loadtest.Config) loadtest.Config {
	cfg.URL, cfg.NATSURL, cfg.MetricsURL = n.wsURL, n.natsURL, n.metricsURL
	return cfg
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

// wantExact checks an exact run: conns connected, the measured published
// count within [minPub, maxPub], perChannel subscribers per message all
// delivered in order, no error frame and no disconnect.
func wantExact(t *testing.T, rep loadtest.Report, conns int, perChannel, minPub, maxPub uint64) {
	t.Helper()
	if rep.ConnectionsOK != conns || rep.ConnectionsFailed != 0 {
		t.Fatalf("connections ok %d failed %d %v", rep.ConnectionsOK, rep.ConnectionsFailed, rep.ConnectFailures)
	}
	if rep.Published < minPub || rep.Published > maxPub {
		t.Fatalf("published %d measured messages, want %d..%d", rep.Published, minPub, maxPub)
	}
	if rep.ExpectedDeliveries != perChannel*rep.Published {
		t.Fatalf("expected %d, want %d × %d", rep.ExpectedDeliveries, perChannel, rep.Published)
	}
	if rep.Delivered != rep.ExpectedDeliveries || rep.LossPct != 0 {
		t.Fatalf("delivered %d of %d (loss %v%%)", rep.Delivered, rep.ExpectedDeliveries, rep.LossPct)
	}
	if rep.OutOfOrder != 0 || rep.ErrorFrames != 0 || len(rep.Disconnects) != 0 {
		t.Fatalf("out of order %d, error frames %d, disconnects %v", rep.OutOfOrder, rep.ErrorFrames, rep.Disconnects)
	}
}
