package gate_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"floodgate/auth"
	"floodgate/broker"
	"floodgate/fanout"
	"floodgate/internal/gate"
	"floodgate/limiter"

	"github.com/coder/websocket"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
)

const adminToken = "test-admin-token"

// cluster is one NATS server and one key store shared by nodes, as in a
// deployment.
type cluster struct {
	t     *testing.T
	ns    *server.Server
	store auth.Store
}

func newCluster(t *testing.T) *cluster {
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
	return &cluster{t: t, ns: ns, store: st}
}

// node is one broker with its sidecar, wired like `floodgate serve`.
type node struct {
	t     *testing.T
	srv   *broker.Server
	ws    *httptest.Server
	api   *httptest.Server
	admin *auth.AdminClient
	lim   *limiter.Limiter
	gate  *gate.Gate
	reg   *prometheus.Registry
	wsURL string
	nc    *nats.Conn
}

type nodeOpts struct {
	limits  *limiter.Config
	trusted []netip.Prefix
	broker  broker.Options
}

func (c *cluster) node(o nodeOpts) *node {
	t := c.t
	t.Helper()
	nc, err := nats.Connect(c.ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	cfg := limiter.DefaultConfig()
	if o.limits != nil {
		cfg = *o.limits
	}
	lim, err := limiter.New(limiter.Options{Config: &cfg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lim.Close() })
	keyring := auth.NewKeyring(auth.KeyringOptions{Store: c.store})
	usage := auth.NewUsage(auth.UsageOptions{Store: c.store})
	g := gate.New(gate.Options{Keyring: keyring, Store: c.store, Limiter: lim, Usage: usage, TrustedProxies: o.trusted, NodeID: t.Name()})
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
	bo := o.broker
	bo.Hub = hub
	bo.Sources, _ = fanout.NewSources(fanout.SourcesConfig{})
	bo.Resolver, bo.Admitter, bo.OnClose = g, g, g.OnClose
	reg := prometheus.NewRegistry()
	bo.Registerer = reg
	srv, err := broker.New(bo)
	if err != nil {
		t.Fatal(err)
	}
	stop, err := g.Watch(nc, srv)
	if err != nil {
		t.Fatal(err)
	}
	sidecar, err := auth.NewSidecar(auth.Options{Store: c.store, Keyring: keyring, Usage: usage,
		Notifier: auth.NewNATSNotifier(nc), LiveUsage: g, AdminToken: adminToken})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/ws", srv)
	ws := httptest.NewServer(mux)
	api := httptest.NewServer(sidecar)
	t.Cleanup(func() {
		stop()
		_ = srv.Close()
		ws.Close()
		api.Close()
	})
	return &node{t: t, srv: srv, ws: ws, api: api, lim: lim, nc: nc, gate: g, reg: reg,
		admin: auth.NewAdminClient(api.URL, adminToken, api.Client()),
		wsURL: "ws" + strings.TrimPrefix(ws.URL, "http") + "/ws"}
}

// createKey makes a key through the operator API.
func (n *node) createKey(req auth.CreateKeyRequest) auth.CreatedKey {
	n.t.Helper()
	k, err := n.admin.CreateKey(context.Background(), req)
	if err != nil {
		n.t.Fatal(err)
	}
	return k
}

// dial connects with headers; it fails the test unless the upgrade works.
func (n *node) dial(h http.Header) *client {
	n.t.Helper()
	c, status, body := n.tryDial(h)
	if c == nil {
		n.t.Fatalf("dial refused: %d %s", status, body)
	}
	return c
}

// tryDial returns the client, or the refusal's status and body.
func (n *node) tryDial(h http.Header) (*client, int, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	opts := &websocket.DialOptions{HTTPHeader: h.Clone()}
	if p := h.Get("Sec-WebSocket-Protocol"); p != "" {
		// Offer subprotocols the way browsers do.
		opts.HTTPHeader.Del("Sec-WebSocket-Protocol")
		for _, s := range strings.Split(p, ",") {
			opts.Subprotocols = append(opts.Subprotocols, strings.TrimSpace(s))
		}
	}
	c, resp, err := websocket.Dial(ctx, n.wsURL, opts)
	if err != nil {
		if resp == nil || resp.StatusCode == http.StatusSwitchingProtocols {
			n.t.Fatalf("dial: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		return nil, resp.StatusCode, string(b)
	}
	n.t.Cleanup(func() { c.CloseNow() })
	return &client{t: n.t, c: c}, 101, ""
}

func keyHeader(key string) http.Header {
	h := http.Header{}
	h.Set("PF-API-KEY", key)
	return h
}

type client struct {
	t *testing.T
	c *websocket.Conn
}

func (c *client) send(s string) {
	c.t.Helper()
	if err := c.c.Write(context.Background(), websocket.MessageText, []byte(s)); err != nil {
		c.t.Fatal(err)
	}
}

func (c *client) read() string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, b, err := c.c.Read(ctx)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return string(b)
}

func (c *client) roundTrip(req, want string) {
	c.t.Helper()
	c.send(req)
	if got := c.read(); got != want {
		c.t.Fatalf("%s\n got  %s\n want %s", req, got, want)
	}
}

// closed waits for the close and returns its code, reason and when it came.
func (c *client) closed(within time.Duration) (websocket.StatusCode, string, time.Time) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for {
		_, _, err := c.c.Read(ctx)
		if err == nil {
			continue
		}
		var ce websocket.CloseError
		if !errors.As(err, &ce) {
			c.t.Fatalf("want a close frame within %v, got %v", within, err)
		}
		return ce.Code, ce.Reason, time.Now()
	}
}
