package loadtest_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"floodgate/auth"
	"floodgate/broker"
	"floodgate/fanout"
	"floodgate/internal/gate"
	"floodgate/limiter"
	"floodgate/loadtest"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const testAdminToken = "loadtest-admin-token"

// testNode is a real broker wired like `floodgate serve` (see
// internal/gate/harness_test.go): embedded NATS, fanout hub, gate with a
// limiter, bbolt key store, the sidecar's operator API and /metrics.
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
	ns, err := fanout.StartEmbedded(fanout.EmbeddedOptions{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	st, err := auth.OpenBolt(t.TempDir(), auth.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })

	cfg := limiter.DefaultConfig()
	if o.limits != nil {
		cfg = *o.limits
	}
	lim, err := limiter.New(limiter.Options{Config: &cfg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lim.Close() })
	keyring := auth.NewKeyring(auth.KeyringOptions{Store: st})
	usage := auth.NewUsage(auth.UsageOptions{Store: st})
	g := gate.New(gate.Options{Keyring: keyring, Store: st, Limiter: lim, Usage: usage, NodeID: "loadtest"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { g.Run(ctx); done <- struct{}{} }()
	go func() { usage.Run(ctx); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done })

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	hub, err := fanout.NewHub(fanout.Options{Conn: nc})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hub.Close)
	bo := o.broker
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
	sidecar, err := auth.NewSidecar(auth.Options{Store: st, Keyring: keyring, Usage: usage,
		Notifier: auth.NewNATSNotifier(nc), LiveUsage: g, AdminToken: testAdminToken})
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
	return &testNode{
		natsURL:    ns.ClientURL(),
		wsURL:      "ws" + strings.TrimPrefix(ws.URL, "http") + "/ws",
		apiURL:     api.URL,
		metricsURL: api.URL + "/metrics",
		srv:        srv,
	}
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
