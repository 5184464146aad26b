//go:build cluster

package cluster_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"floodgate/internal/testdeps"
)

// TestClusterNATSRestart: with the cluster on a dedicated nats-server
// child (restarting the shared one would disturb its other users), stopping
// that server and starting it again on the same port makes every node
// resubscribe and deliver to its existing clients within 5 s of the
// restart, exactly once. Without nats-server on PATH the test fails in CI
// and skips elsewhere (testdeps.StartNATS).
func TestClusterNATSRestart(t *testing.T) {
	redisURL := testdeps.RedisURL(t)
	srv := testdeps.StartNATS(t, nil)
	c := startCluster(t, srv.URL(), redisURL)
	key := createKey(t, c.nodes[0], newAccount(t), nil)
	var clients []*wsClient
	for i, n := range c.nodes {
		cl := mustDial(t, n, i, key.APIKey)
		cl.subscribeTrades(t)
		clients = append(clients, cl)
	}
	nc := publisher(t, srv.URL())
	awaitProbes(t, nc, c.subject(), randomToken(4), clients, 5*time.Second)
	nc.Close()

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	// Every node notices: /readyz turns 503 (NATS not connected).
	deadline := time.Now().Add(10 * time.Second)
	for _, n := range c.nodes {
		for {
			status, _, err := admin(n, "GET", "/readyz", nil)
			if err == nil && status == http.StatusServiceUnavailable {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s still ready 10 s after nats-server stopped: %d %v", n.id, status, err)
			}
			time.Sleep(20 * time.Millisecond) // poll interval
		}
	}

	restart := time.Now()
	if err := srv.Restart(); err != nil { // same port
		t.Fatal(err)
	}
	var pub *nats.Conn
	for {
		var err error
		if pub, err = nats.Connect(srv.URL(), nats.Name("floodgate cluster test")); err == nil {
			break
		}
		if time.Since(restart) > 5*time.Second {
			t.Fatalf("publisher cannot connect to the restarted nats-server: %v", err)
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
	t.Cleanup(pub.Close)
	got := awaitProbes(t, pub, c.subject(), randomToken(4), clients, 10*time.Second)
	var worst time.Duration
	for i, at := range got {
		d := at.Sub(restart)
		worst = max(worst, d)
		t.Logf("NATS recovery node%d: delivering again %v after the nats-server restart", clients[i].node+1, d.Round(time.Millisecond))
	}
	t.Logf("NATS recovery time (all nodes): %v", worst.Round(time.Millisecond))
	if worst > 5*time.Second {
		t.Errorf("nodes delivered again only after %v, want within 5 s", worst)
	}
	// No node subscribed twice: every message arrives exactly once.
	expectSeries(t, pub, c.subject(), clients, 100)
	for _, n := range c.nodes {
		if status, env, err := admin(n, "GET", "/readyz", nil); err != nil || status != http.StatusOK {
			t.Errorf("%s not ready after NATS returned: %d %+v %v", n.id, status, env, err)
		}
	}
}
