package broker_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"floodgate/broker"
	"floodgate/fanout"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// env is one broker on an embedded NATS server, served over a real socket.
type env struct {
	t    *testing.T
	nc   *nats.Conn // the broker's connection
	pub  *nats.Conn // a separate publisher, like a real feed
	hub  *fanout.Hub
	srv  *broker.Server
	http *httptest.Server
	reg  *prometheus.Registry
	url  string
}

func newEnv(t *testing.T, opts broker.Options) *env {
	t.Helper()
	return newEnvHub(t, fanout.Options{}, opts)
}

// newEnvHub is newEnv with hub options (Conn and Registerer are set here).
func newEnvHub(t *testing.T, hubOpts fanout.Options, opts broker.Options) *env {
	t.Helper()
	ns, err := fanout.StartEmbedded(fanout.EmbeddedOptions{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return newEnvOn(t, ns.ClientURL(), hubOpts, opts)
}

// newEnvOn is newEnvHub on an existing NATS server (real NATS in
// integration tests).
func newEnvOn(t *testing.T, natsURL string, hubOpts fanout.Options, opts broker.Options) *env {
	t.Helper()
	return newEnvWrapped(t, natsURL, hubOpts, opts, nil)
}

// newEnvWrapped is newEnvOn with the broker's hub wrapped by wrap (nil:
// the hub itself), to change what some of its methods answer.
func newEnvWrapped(t *testing.T, natsURL string, hubOpts fanout.Options, opts broker.Options, wrap func(*fanout.Hub) broker.Hub) *env {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	pub, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pub.Close)
	reg := prometheus.NewRegistry()
	hubOpts.Conn, hubOpts.Registerer = nc, reg
	hub, err := fanout.NewHub(hubOpts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hub.Close)
	if opts.Sources == nil {
		opts.Sources, err = fanout.NewSources(fanout.SourcesConfig{})
		if err != nil {
			t.Fatal(err)
		}
	}
	opts.Hub = hub
	if wrap != nil {
		opts.Hub = wrap(hub)
	}
	opts.Registerer = reg
	srv, err := broker.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/ws", srv)
	hs := httptest.NewServer(mux)
	t.Cleanup(func() {
		_ = srv.Close()
		hs.Close()
	})
	return &env{t: t, nc: nc, pub: pub, hub: hub, srv: srv, http: hs, reg: reg, url: "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws"}
}

// client is a stock websocket client (coder/websocket).
type client struct {
	t *testing.T
	c *websocket.Conn
}

func (e *env) dial(opts *websocket.DialOptions) *client {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, e.url, opts)
	if err != nil {
		e.t.Fatalf("dial: %v (resp %v)", err, resp)
	}
	c.SetReadLimit(1 << 24)
	e.t.Cleanup(func() { _ = c.CloseNow() })
	return &client{t: e.t, c: c}
}

// dialH dials with extra request headers.
func (e *env) dialH(h http.Header) *client {
	e.t.Helper()
	return e.dial(&websocket.DialOptions{HTTPHeader: h})
}

func (c *client) send(s string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.c.Write(ctx, websocket.MessageText, []byte(s)); err != nil {
		c.t.Fatalf("send %s: %v", s, err)
	}
}

// read returns the next text frame, failing after 5 s.
func (c *client) read() string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	typ, b, err := c.c.Read(ctx)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	if typ != websocket.MessageText {
		c.t.Fatalf("frame type %v", typ)
	}
	return string(b)
}

// expect reads the next frame and compares it byte for byte.
func (c *client) expect(want string) {
	c.t.Helper()
	if got := c.read(); got != want {
		c.t.Fatalf("got  %s\nwant %s", got, want)
	}
}

// roundTrip sends req and expects the exact reply.
func (c *client) roundTrip(req, want string) {
	c.t.Helper()
	c.send(req)
	c.expect(want)
}

// expectClose reads until the connection ends and checks the close code
// and reason.
func (c *client) expectClose(code websocket.StatusCode, reason string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for {
		_, _, err := c.c.Read(ctx)
		if err == nil {
			continue
		}
		var ce websocket.CloseError
		if !errorsAs(err, &ce) {
			c.t.Fatalf("want close %d %q, got %v", code, reason, err)
		}
		if ce.Code != code || ce.Reason != reason {
			c.t.Fatalf("want close %d %q, got %d %q", code, reason, ce.Code, ce.Reason)
		}
		return
	}
}

// publish sends a market message as a feed would.
func (e *env) publish(subject, payload string) {
	e.t.Helper()
	if err := e.pub.Publish(subject, []byte(payload)); err != nil {
		e.t.Fatal(err)
	}
	if err := e.pub.Flush(); err != nil {
		e.t.Fatal(err)
	}
}

// eventually polls cond until it holds or 5 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (e *env) counter(name string, labels ...string) float64 {
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if matchLabels(m.GetLabel(), labels) {
				if m.Counter != nil {
					return m.Counter.GetValue()
				}
				if m.Gauge != nil {
					return m.Gauge.GetValue()
				}
			}
		}
	}
	return 0
}

// matchLabels reports whether the pairs contain every name=value of want
// (given as name, value, name, value...).
func matchLabels(have []*dto.LabelPair, want []string) bool {
	for i := 0; i+1 < len(want); i += 2 {
		found := false
		for _, lp := range have {
			if lp.GetName() == want[i] && lp.GetValue() == want[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }
