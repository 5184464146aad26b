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
	"errors"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"floodgate/fanout"
	"floodgate/node"

	"github.com/alicebob/miniredis/v2"
	"github.com/nats-io/nats-server/v2/server"
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
// DataDir in t.TempDir() (the bbolt store and, with the history, the
// embedded JetStream), NodeID t.Name(), no shutdown grace. The node stops
// (and Run's error is checked) in t.Cleanup.
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
	if cfg.DataDir == "" {
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

// NewShared starts an embedded NATS server (with JetStream, for nodes
// that run the history: Config.History on) and a miniredis for nodes to
// share; both stop in t.Cleanup.
func NewShared(t testing.TB) *Shared {
	t.Helper()
	ns, err := fanout.StartEmbedded(fanout.EmbeddedOptions{Listen: "127.0.0.1:0", StoreDir: t.TempDir()})
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

// JetStreamLeaf is a NATS server with JetStream in domain "hub" and a leaf
// node server without JetStream connected to it. Nodes and publishers use
// the leaf (URL); a node reaches JetStream through the leaf connection
// (history.domain: hub). StopHub is a JetStream outage that leaves the
// leaf's core NATS up, as a JetStream cluster that lost its quorum looks
// to a node; StartHub ends it (same store, same stream).
type JetStreamLeaf struct {
	// URL is the leaf server's client URL.
	URL string

	t       testing.TB
	hubOpts *server.Options
	leaf    *server.Server

	// Guarded by mu: the running hub (nil while stopped).
	mu  sync.Mutex
	hub *server.Server
}

// NewJetStreamLeaf starts the hub and the leaf and waits until the leaf
// is connected; both stop in t.Cleanup.
func NewJetStreamLeaf(t testing.TB) *JetStreamLeaf {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	j := &JetStreamLeaf{t: t, hubOpts: &server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		JetStream: true, JetStreamDomain: "hub", StoreDir: t.TempDir(),
		LeafNode: server.LeafNodeOpts{Host: "127.0.0.1", Port: port}}}
	if err := j.StartHub(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(j.StopHub)
	u, _ := url.Parse("nats-leaf://127.0.0.1:" + strconv.Itoa(port))
	leaf, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		LeafNode: server.LeafNodeOpts{ReconnectInterval: 50 * time.Millisecond, Remotes: []*server.RemoteLeafOpts{{URLs: []*url.URL{u}}}}})
	if err != nil {
		t.Fatal(err)
	}
	go leaf.Start()
	if !leaf.ReadyForConnections(5 * time.Second) {
		t.Fatal("nodetest: leaf NATS server not ready")
	}
	t.Cleanup(func() { leaf.Shutdown(); leaf.WaitForShutdown() })
	j.leaf, j.URL = leaf, leaf.ClientURL()
	deadline := time.Now().Add(5 * time.Second)
	for leaf.NumLeafNodes() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("nodetest: the leaf did not connect to the hub")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return j
}

// StartHub starts the JetStream hub (again) on its leaf port and store.
func (j *JetStreamLeaf) StartHub() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.hub != nil {
		return nil
	}
	s, err := server.NewServer(j.hubOpts)
	if err != nil {
		return err
	}
	go s.Start()
	if !s.ReadyForConnections(5 * time.Second) {
		s.Shutdown()
		return errors.New("nodetest: JetStream hub not ready")
	}
	j.hub = s
	return nil
}

// StopHub shuts the JetStream hub down and waits for it.
func (j *JetStreamLeaf) StopHub() {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.hub != nil {
		j.hub.Shutdown()
		j.hub.WaitForShutdown()
		j.hub = nil
	}
}
