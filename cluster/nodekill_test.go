//go:build cluster

package cluster_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"floodgate/internal/testdeps/procnode"
	"floodgate/keyapi"
)

// TestClusterSIGKILLLosesNoKeys: after node 2 is killed with SIGKILL, every
// key created (and changed) through any node before is visible, in its
// acknowledged state, through the operator API of the others; the others
// keep delivering market data to their clients and admit the keys.
func TestClusterSIGKILLLosesNoKeys(t *testing.T) {
	natsURL, redisURL := env(t)
	c := startCluster(t, natsURL, redisURL)
	account := procnode.NewAccount() // for the deactivated and revoked keys
	type want struct {
		key    keyapi.CreatedKey
		status string
	}
	var keys []want
	for i := range 12 {
		// At most 5 active keys per account: one account per key.
		n := c.nodes[i%nodeCount]
		keys = append(keys, want{key: n.CreateKey(t, procnode.NewAccount(), nil), status: "active"})
	}
	for i, st := range []string{"inactive", "revoked"} {
		n := c.nodes[(i+1)%nodeCount] // through node 2 and node 3
		k := n.CreateKey(t, account, nil)
		if status, env, err := n.Admin("PATCH", "/admin/v1/keys/"+k.Key.Prefix, map[string]any{"status": st}); err != nil || status != http.StatusOK {
			t.Fatalf("patch %s: %d %+v %v", st, status, env, err)
		}
		keys = append(keys, want{key: k, status: st})
	}

	subKey := c.nodes[0].CreateKey(t, procnode.NewAccount(), nil)
	var clients []*wsClient
	for i, n := range c.nodes {
		cl := mustDial(t, n, i, subKey.APIKey)
		cl.subscribeTrades(t)
		clients = append(clients, cl)
	}
	nc := publisher(t, natsURL)
	awaitProbes(t, nc, c.subject(), procnode.RandomToken(4), clients, 5*time.Second)

	victim := c.nodes[1]
	start := time.Now()
	victim.Kill()
	select {
	case <-clients[1].done:
	case <-time.After(5 * time.Second):
		t.Fatal("the killed node's client is still connected")
	}
	t.Logf("node kill: node2 SIGKILLed; its client saw the connection end after %v", clients[1].closedAt.Sub(start).Round(time.Millisecond))
	survivors := []*procnode.Node{c.nodes[0], c.nodes[2]}
	live := []*wsClient{clients[0], clients[2]}

	for _, n := range survivors {
		for _, k := range keys {
			status, env, err := n.Admin("GET", "/admin/v1/keys/"+k.key.Key.Prefix, nil)
			if err != nil || status != http.StatusOK {
				t.Fatalf("key %s lost after SIGKILL of node2 (GET on %s): %d %+v %v", k.key.Key.Prefix, n.ID(), status, env, err)
			}
			var v struct {
				Prefix string `json:"prefix"`
				Status string `json:"status"`
			}
			if err := json.Unmarshal(env.Data, &v); err != nil || v.Status != k.status {
				t.Fatalf("key %s on %s: status %q (%v), want %s", k.key.Key.Prefix, n.ID(), v.Status, err, k.status)
			}
		}
		if status, env, err := n.Admin("GET", "/readyz", nil); err != nil || status != http.StatusOK {
			t.Errorf("%s not ready after node2 died: %d %+v %v", n.ID(), status, env, err)
		}
	}
	t.Logf("node kill: all %d keys visible with their status through node1 and node3", len(keys))

	// The survivors keep serving: subscribed clients get every message
	// once, and the keys created before the kill (also through node2) are
	// admitted by new connections.
	const n = 100
	expectSeries(t, nc, c.subject(), live, n)
	fresh := []*wsClient{}
	for i, sn := range survivors {
		k := keys[1+i*3] // created through node2
		cl := mustDial(t, sn, []int{0, 2}[i], k.key.APIKey)
		cl.subscribeTrades(t)
		fresh = append(fresh, cl)
	}
	awaitProbes(t, nc, c.subject(), procnode.RandomToken(4), fresh, 5*time.Second)
	expectSeries(t, nc, c.subject(), append(live, fresh...), n)
	t.Logf("node kill: node1 and node3 delivered %d messages exactly once to old and new clients after node2 died", n)
}
