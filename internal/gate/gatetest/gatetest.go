// Package gatetest starts in-process Floodgate nodes for tests, wired the
// way `floodgate serve` wires them: embedded NATS, a bbolt key store, the
// fan-out hub, the broker behind internal/gate with a limiter, key usage
// and connection events, control events over NATS, and the REST sidecar
// with /metrics on an API server. Several nodes of one Cluster share the
// NATS server and the key store, as a deployment shares NATS and Redis.
//
// Concurrency: a Cluster may start nodes from one test goroutine; every
// server and goroutine it starts is stopped by t.Cleanup.
package gatetest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"floodgate/auth"
	"floodgate/broker"
	"floodgate/fanout"
	"floodgate/internal/gate"
	"floodgate/limiter"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Cluster is one NATS server and one key store that nodes share.
type Cluster struct {
	// NATS is the embedded NATS server; publishers connect to its ClientURL.
	NATS *server.Server
	// Store is the shared key store (bbolt in t.TempDir()).
	Store auth.Store
}

// NewCluster starts the NATS server and opens the store.
func NewCluster(t testing.TB) *Cluster {
	t.Helper()
	ns, err := fanout.StartEmbedded(fanout.EmbeddedOptions{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	st, err := auth.OpenBolt(t.TempDir(), auth.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &Cluster{NATS: ns, Store: st}
}

// NodeOptions configures a node. Zero values mean defaults.
type NodeOptions struct {
	// Limits are the limiter's numbers. Defaults to limiter.DefaultConfig.
	Limits *limiter.Config
	// TrustedProxies are passed to the gate. Defaults to none.
	TrustedProxies []netip.Prefix
	// Broker is the broker's options; Hub, Sources, Resolver, Admitter,
	// OnClose and Registerer are set by Node.
	Broker broker.Options
	// AdminToken enables the operator API. Defaults to "" (off).
	AdminToken string
	// NodeID names the node in connection events. Defaults to t.Name().
	NodeID string
}

// Node is one running broker with its API server.
type Node struct {
	Server   *broker.Server
	Gate     *gate.Gate
	Limiter  *limiter.Limiter
	Registry *prometheus.Registry
	// NATS is the node's own NATS connection.
	NATS *nats.Conn
	// WSURL is ws://.../ws; APIURL the sidecar's base URL; MetricsURL its
	// /metrics.
	WSURL, APIURL, MetricsURL string
	// APIClient talks to the API server.
	APIClient *http.Client
}

// Node starts a node on the cluster.
func (c *Cluster) Node(t testing.TB, o NodeOptions) *Node {
	t.Helper()
	nc, err := nats.Connect(c.NATS.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	cfg := limiter.DefaultConfig()
	if o.Limits != nil {
		cfg = *o.Limits
	}
	lim, err := limiter.New(limiter.Options{Config: &cfg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lim.Close() })
	if o.NodeID == "" {
		o.NodeID = t.Name()
	}
	keyring := auth.NewKeyring(auth.KeyringOptions{Store: c.Store})
	usage := auth.NewUsage(auth.UsageOptions{Store: c.Store})
	g := gate.New(gate.Options{Keyring: keyring, Store: c.Store, Limiter: lim, Usage: usage, TrustedProxies: o.TrustedProxies, NodeID: o.NodeID})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { g.Run(ctx); done <- struct{}{} }()
	go func() { usage.Run(ctx); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done })

	hub, err := fanout.NewHub(fanout.Options{Conn: nc})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hub.Close)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	bo := o.Broker
	bo.Hub = hub
	bo.Sources, _ = fanout.NewSources(fanout.SourcesConfig{})
	bo.Resolver, bo.Admitter, bo.OnClose = g, g, g.OnClose
	bo.Registerer = reg
	srv, err := broker.New(bo)
	if err != nil {
		t.Fatal(err)
	}
	stop, err := g.Watch(nc, srv)
	if err != nil {
		t.Fatal(err)
	}
	sidecar, err := auth.NewSidecar(auth.Options{Store: c.Store, Keyring: keyring, Usage: usage,
		Notifier: auth.NewNATSNotifier(nc), LiveUsage: g, AdminToken: o.AdminToken})
	if err != nil {
		t.Fatal(err)
	}
	wsMux := http.NewServeMux()
	wsMux.Handle("/ws", srv)
	ws := httptest.NewServer(wsMux)
	apiMux := http.NewServeMux()
	apiMux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	apiMux.Handle("/", sidecar)
	api := httptest.NewServer(apiMux)
	t.Cleanup(func() {
		stop()
		_ = srv.Close()
		ws.Close()
		api.Close()
	})
	return &Node{
		Server: srv, Gate: g, Limiter: lim, Registry: reg, NATS: nc,
		WSURL:  "ws" + strings.TrimPrefix(ws.URL, "http") + "/ws",
		APIURL: api.URL, MetricsURL: api.URL + "/metrics", APIClient: api.Client(),
	}
}
