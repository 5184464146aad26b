//go:build cluster

package cluster_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"floodgate/internal/testdeps"
	"floodgate/internal/testdeps/procnode"
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
	key := c.nodes[0].CreateKey(t, procnode.NewAccount(), nil)
	var clients []*wsClient
	for i, n := range c.nodes {
		cl := mustDial(t, n, i, key.APIKey)
		cl.subscribeTrades(t)
		clients = append(clients, cl)
	}
	nc := publisher(t, srv.URL())
	awaitProbes(t, nc, c.subject(), procnode.RandomToken(4), clients, 5*time.Second)
	nc.Close()

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	// Every node notices: /readyz turns 503 (NATS not connected).
	stopped := time.Now()
	for _, n := range c.nodes {
		var status int
		var err error
		if _, ok := procnode.Poll(stopped, 10*time.Second, func() bool {
			status, _, err = n.Admin("GET", "/readyz", nil)
			return err == nil && status == http.StatusServiceUnavailable
		}); !ok {
			t.Fatalf("%s still ready 10 s after nats-server stopped: %d %v", n.ID(), status, err)
		}
	}

	restart := time.Now()
	if err := srv.Restart(); err != nil { // same port
		t.Fatal(err)
	}
	var pub *nats.Conn
	var err error
	if _, ok := procnode.Poll(restart, 5*time.Second, func() bool {
		pub, err = nats.Connect(srv.URL(), nats.Name("floodgate cluster test"))
		return err == nil
	}); !ok {
		t.Fatalf("publisher cannot connect to the restarted nats-server: %v", err)
	}
	t.Cleanup(pub.Close)
	got := awaitProbes(t, pub, c.subject(), procnode.RandomToken(4), clients, 10*time.Second)
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
		if status, env, err := n.Admin("GET", "/readyz", nil); err != nil || status != http.StatusOK {
			t.Errorf("%s not ready after NATS returned: %d %+v %v", n.ID(), status, env, err)
		}
	}
}
