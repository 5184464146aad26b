package gate_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"floodgate/auth"
	"floodgate/broker"
	"floodgate/internal/gate"
	"floodgate/internal/gate/gatetest"
	"floodgate/limiter"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
)

const adminToken = "test-admin-token"

// cluster is one NATS server and one key store shared by nodes, as in a
// deployment.
type cluster struct {
	t     *testing.T
	gc    *gatetest.Cluster
	store auth.Store
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	gc := gatetest.NewCluster(t)
	return &cluster{t: t, gc: gc, store: gc.Store}
}

// node is one broker with its sidecar, wired like `floodgate serve`.
type node struct {
	t     *testing.T
	srv   *broker.Server
	admin *auth.AdminClient
	gate  *gate.Gate
	reg   *prometheus.Registry
	wsURL string
}

type nodeOpts struct {
	limits  *limiter.Config
	trusted []netip.Prefix
	broker  broker.Options
}

func (c *cluster) node(o nodeOpts) *node {
	c.t.Helper()
	n := c.gc.Node(c.t, gatetest.NodeOptions{Limits: o.limits, TrustedProxies: o.trusted, Broker: o.broker, AdminToken: adminToken})
	return &node{t: c.t, srv: n.Server, gate: n.Gate, reg: n.Registry, wsURL: n.WSURL,
		admin: auth.NewAdminClient(n.APIURL, adminToken, n.APIClient)}
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
