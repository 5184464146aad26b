// Package nodetest runs real Floodgate nodes (node.New, the composition
// root the binary uses) inside tests: ephemeral ports, the embedded NATS
// server, a bbolt store in t.TempDir() or a shared miniredis, a node's
// background work running, everything stopped by t.Cleanup.
//
// Concurrency: Start and NewShared may be called from the test goroutine;
// the nodes they return are safe for concurrent use.
package nodetest

import (
	"context"
	"strings"
	"testing"
	"time"

	"floodgate/fanout"
	"floodgate/node"

	"github.com/alicebob/miniredis/v2"
)

// Node is a running node and its addresses.
type Node struct {
	*node.Node
	// WSURL is ws://.../ws; APIURL the API listener's base URL; NATSURL
	// where publishers connect.
	WSURL, APIURL, NATSURL string
}

// Start builds and runs a node from cfg with test defaults for what cfg
// leaves empty: listeners and the embedded NATS on free loopback ports,
// DataDir in t.TempDir(), NodeID t.Name(), no shutdown grace. The node
// stops (and Run's error is checked) in t.Cleanup.
func Start(t testing.TB, cfg node.Config) *Node {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.APIListen == "" {
		cfg.APIListen = "127.0.0.1:0"
	}
	if cfg.EmbeddedNATSListen == "" {
		cfg.EmbeddedNATSListen = "127.0.0.1:0"
	}
	if cfg.DataDir == "" && cfg.RedisURL == "" {
		cfg.DataDir = t.TempDir()
	}
	if cfg.NodeID == "" {
		cfg.NodeID = strings.ReplaceAll(t.Name(), "/", "_")
	}
	if cfg.ShutdownGrace == 0 {
		cfg.ShutdownGrace = -1
	}
	n, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("node %s: %v", cfg.NodeID, err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("node %s did not stop within 30 s", cfg.NodeID)
		}
	})
	out := &Node{Node: n, APIURL: "http://" + n.APIAddr(), NATSURL: n.NATSURL()}
	if !cfg.Sidecar {
		out.WSURL = "ws://" + n.WSAddr() + "/ws"
	}
	return out
}

// Shared is what several nodes of one test share, as a deployment does: a
// NATS server and a Redis (miniredis).
type Shared struct {
	NATSURL  string
	RedisURL string
	Redis    *miniredis.Miniredis
}

// NewShared starts an embedded NATS server and a miniredis for nodes to
// share; both stop in t.Cleanup.
func NewShared(t testing.TB) *Shared {
	t.Helper()
	ns, err := fanout.StartEmbedded(fanout.EmbeddedOptions{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	mr := miniredis.RunT(t)
	return &Shared{NATSURL: ns.ClientURL(), RedisURL: "redis://" + mr.Addr(), Redis: mr}
}

// Config returns cfg pointed at the shared NATS and Redis.
func (s *Shared) Config(cfg node.Config) node.Config {
	cfg.NATSURL, cfg.RedisURL = s.NATSURL, s.RedisURL
	return cfg
}
