//go:build cluster

package cluster_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"

	"floodgate/internal/testdeps/procnode"
)

// TestClusterRevokeClosesEverywhere: revoking a key through node 1's
// operator API closes the key's connections on every node within 1 s, with
// 1008 "api key revoked"; the key is refused afterwards on every node.
func TestClusterRevokeClosesEverywhere(t *testing.T) {
	natsURL, redisURL := env(t)
	c := startCluster(t, natsURL, redisURL)
	key := c.nodes[0].CreateKey(t, procnode.NewAccount(), nil)
	other := c.nodes[0].CreateKey(t, procnode.NewAccount(), nil) // must stay open
	const perNode = 2
	var clients, bystanders []*wsClient
	for i, n := range c.nodes {
		for range perNode {
			cl := mustDial(t, n, i, key.APIKey)
			cl.ping(t) // the session is live on that node
			clients = append(clients, cl)
		}
		b := mustDial(t, n, i, other.APIKey)
		b.ping(t)
		bystanders = append(bystanders, b)
	}

	start := time.Now()
	status, env, err := c.nodes[0].Admin("PATCH", "/admin/v1/keys/"+key.Key.Prefix, map[string]any{"status": "revoked"})
	if err != nil || status != http.StatusOK {
		t.Fatalf("revoke: %d %+v %v", status, env, err)
	}
	acked := time.Since(start)
	deadline := time.After(5 * time.Second)
	worst := make([]time.Duration, len(c.nodes))
	for i, cl := range clients {
		select {
		case <-cl.done:
		case <-deadline:
			t.Fatalf("client %d on node%d still open 5 s after the revoke", i, cl.node+1)
		}
		lat := cl.closedAt.Sub(start)
		worst[cl.node] = max(worst[cl.node], lat)
		if code, reason := cl.closeStatus(); code != websocket.StatusPolicyViolation || reason != "api key revoked" {
			t.Errorf("client %d on node%d closed with %d %q (%v), want 1008 \"api key revoked\"", i, cl.node+1, code, reason, cl.err)
		}
	}
	for i, w := range worst {
		t.Logf("revoke latency node%d: %v (slowest of %d connections, from the PATCH request on node1; PATCH answered in %v)",
			i+1, w.Round(100*time.Microsecond), perNode, acked.Round(100*time.Microsecond))
		if w > time.Second {
			t.Errorf("node%d closed the revoked key's connections after %v, want within 1 s", i+1, w)
		}
	}
	// Another key's connections are untouched.
	for _, b := range bystanders {
		b.ping(t)
	}
	// The revoked key is refused at the upgrade on every node.
	for i, n := range c.nodes {
		if _, err := dial(t, n, i, key.APIKey); err == nil {
			t.Errorf("node%d accepted the revoked key", i+1)
		}
	}
}
