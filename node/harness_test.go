package node_test

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
	"floodgate/keyapi"
	"floodgate/limiter"
	"floodgate/node"
	"floodgate/node/nodetest"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

const adminToken = "test-admin-token-0123456789"

// cluster is what the nodes of one test share when they share anything: a
// NATS server and a Redis (miniredis), as in a deployment.
type cluster struct {
	t      *testing.T
	shared *nodetest.Shared // nil until a node asks for it
}

func newCluster(t *testing.T) *cluster { return &cluster{t: t} }

// store is a key store on the shared Redis, for changes behind the nodes'
// back (no control event).
func (c *cluster) store() auth.Store {
	c.t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: c.sharedDeps().Redis.Addr()})
	c.t.Cleanup(func() { rdb.Close() })
	return auth.NewRedisStore(rdb, auth.RedisOptions{})
}

func (c *cluster) sharedDeps() *nodetest.Shared {
	if c.shared == nil {
		c.shared = nodetest.NewShared(c.t)
	}
	return c.shared
}

// testNode is one node (node.New, as the binary builds it) with its
// operator API client.
type testNode struct {
	t     *testing.T
	n     *nodetest.Node
	srv   *broker.Server
	admin *keyapi.AdminClient
	reg   *prometheus.Registry
	wsURL string
}

type nodeOpts struct {
	limits  *limiter.Config
	trusted []netip.Prefix
	broker  broker.Options
	recheck time.Duration
	// shared puts the node on the cluster's NATS and Redis (otherwise it
	// has its own embedded NATS and bbolt store).
	shared bool
	// history is the node's --history; "" is off here (these tests check
	// exact acks without seq), history_test.go turns it on.
	history string
	// edit, when set, changes the config file (history section...).
	edit func(*node.File)
	// natsURL puts the node on that NATS server instead of an embedded one.
	natsURL string
}

func (c *cluster) node(o nodeOpts) *testNode {
	c.t.Helper()
	file := node.DefaultFile()
	if o.limits != nil {
		file.Limits = *o.limits
	}
	if o.edit != nil {
		o.edit(&file)
	}
	if o.history == "" {
		o.history = node.HistoryOff
	}
	cfg := node.Config{File: &file, TrustedProxies: o.trusted, Sessions: o.broker, AdminToken: adminToken, RecheckInterval: o.recheck,
		History: o.history}
	if o.shared {
		cfg = c.sharedDeps().Config(cfg)
	}
	if o.natsURL != "" {
		cfg.NATSURL = o.natsURL
	}
	n := nodetest.Start(c.t, cfg)
	return &testNode{t: c.t, n: n, srv: n.Broker(), reg: n.Registry(), wsURL: n.WSURL,
		admin: keyapi.NewAdminClient(n.APIURL, adminToken, nil)}
}

// createKey makes a key through the operator API.
func (n *testNode) createKey(req keyapi.CreateKeyRequest) keyapi.CreatedKey {
	n.t.Helper()
	k, err := n.admin.CreateKey(context.Background(), req)
	if err != nil {
		n.t.Fatal(err)
	}
	return k
}

// dial connects with headers; it fails the test unless the upgrade works.
func (n *testNode) dial(h http.Header) *client {
	n.t.Helper()
	c, status, body := n.tryDial(h)
	if c == nil {
		n.t.Fatalf("dial refused: %d %s", status, body)
	}
	return c
}

// tryDial returns the client, or the refusal's status and body.
func (n *testNode) tryDial(h http.Header) (*client, int, string) {
	c, resp, err := n.dialResp(h)
	if err != nil {
		if resp == nil || resp.StatusCode == http.StatusSwitchingProtocols {
			n.t.Fatalf("dial: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		return nil, resp.StatusCode, string(b)
	}
	return c, 101, ""
}

// dialResp dials and returns the handshake response as well.
func (n *testNode) dialResp(h http.Header) (*client, *http.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	opts := &websocket.DialOptions{HTTPHeader: h.Clone()}
	if p := h.Get("Sec-WebSocket-Protocol"); p != "" {
		// Offer subprotocols the way browsers do.
		opts.HTTPHeader.Del("Sec-WebSocket-Protocol")
		for s := range strings.SplitSeq(p, ",") {
			opts.Subprotocols = append(opts.Subprotocols, strings.TrimSpace(s))
		}
	}
	c, resp, err := websocket.Dial(ctx, n.wsURL, opts)
	if err != nil {
		return nil, resp, err
	}
	n.t.Cleanup(func() { c.CloseNow() })
	return &client{t: n.t, c: c}, resp, nil
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
