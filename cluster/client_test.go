//go:build cluster

package cluster_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"

	"floodgate/internal/testdeps/procnode"
)

// frame is one server frame.
type frame struct {
	Channel string          `json:"channel"`
	Data    json.RawMessage `json:"data"`
}

// wsClient is a websocket client with one reader goroutine.
type wsClient struct {
	// Immutable after dial
	node   int // index of the node it is connected to
	conn   *websocket.Conn
	frames chan frame
	cancel context.CancelFunc

	// Written by the reader before done is closed
	done     chan struct{}
	err      error
	closedAt time.Time
}

// dial connects to n with the API key (none when key is ""); the client is
// closed in t.Cleanup.
func dial(t *testing.T, n *procnode.Node, idx int, key string) (*wsClient, error) {
	t.Helper()
	conn, err := n.Dial(key)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &wsClient{node: idx, conn: conn, frames: make(chan frame, 8192), cancel: cancel, done: make(chan struct{})}
	go c.read(ctx)
	t.Cleanup(func() {
		cancel()
		_ = conn.CloseNow()
		<-c.done
	})
	return c, nil
}

// mustDial is dial failing the test on error.
func mustDial(t *testing.T, n *procnode.Node, idx int, key string) *wsClient {
	t.Helper()
	c, err := dial(t, n, idx, key)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *wsClient) read(ctx context.Context) {
	defer close(c.done)
	for {
		_, b, err := c.conn.Read(ctx)
		if err != nil {
			c.err, c.closedAt = err, time.Now()
			return
		}
		var f frame
		if err := json.Unmarshal(b, &f); err != nil {
			c.err, c.closedAt = fmt.Errorf("bad frame %q: %w", b, err), time.Now()
			return
		}
		select {
		case c.frames <- f:
		case <-ctx.Done():
			c.err, c.closedAt = ctx.Err(), time.Now()
			return
		}
	}
}

// errClosed is returned by next once the connection has ended.
var errClosed = errors.New("connection closed")

// next returns the next frame, errClosed once the connection ended, or an
// error after timeout.
func (c *wsClient) next(timeout time.Duration) (frame, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case f := <-c.frames:
		return f, nil
	case <-c.done:
		select {
		case f := <-c.frames:
			return f, nil
		default:
		}
		return frame{}, fmt.Errorf("%w: %v", errClosed, c.err)
	case <-timer.C:
		return frame{}, fmt.Errorf("no frame within %v", timeout)
	}
}

// send writes one text frame.
func (c *wsClient) send(msg string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.conn.Write(ctx, websocket.MessageText, []byte(msg))
}

// subscribeTrades subscribes to trades BTC and waits for the ack.
func (c *wsClient) subscribeTrades(t *testing.T) {
	t.Helper()
	if err := c.send(`{"method":"subscribe","params":{"source":"trades","symbol":"BTC"}}`); err != nil {
		t.Fatal(err)
	}
	f, err := c.next(5 * time.Second)
	if err != nil || f.Channel != "subscribe" {
		t.Fatalf("subscribe on node%d: %+v %v", c.node+1, f, err)
	}
}

// ping sends a ping and waits for the pong; it fails the test otherwise.
func (c *wsClient) ping(t *testing.T) {
	t.Helper()
	if err := c.send(`{"method":"ping"}`); err != nil {
		t.Fatal(err)
	}
	f, err := c.next(5 * time.Second)
	if err != nil || f.Channel != "pong" {
		t.Fatalf("ping on node%d: %s %s %v", c.node+1, f.Channel, f.Data, err)
	}
}

// closeStatus is the close code and reason the connection ended with.
func (c *wsClient) closeStatus() (websocket.StatusCode, string) {
	var ce websocket.CloseError
	if errors.As(c.err, &ce) {
		return ce.Code, ce.Reason
	}
	return -1, ""
}

// publisher connects to natsURL; it is closed in t.Cleanup.
func publisher(t *testing.T, natsURL string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(natsURL, nats.Name("floodgate cluster test"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// trade is the payload the tests publish.
type trade struct {
	Run   string `json:"run"`             // random per call, to tell apart phases
	Seq   int    `json:"seq,omitempty"`   // 1..n in a numbered series
	Probe int    `json:"probe,omitempty"` // warm-up or recovery probe number
}

func publishTrade(t *testing.T, nc *nats.Conn, subject string, tr trade) {
	t.Helper()
	b, _ := json.Marshal(tr)
	if err := nc.Publish(subject, b); err != nil {
		t.Fatal(err)
	}
}

// tradeOf decodes a trades frame ("", false for other frames).
func tradeOf(f frame) (trade, bool) {
	var tr trade
	if f.Channel != "trades" || json.Unmarshal(f.Data, &tr) != nil {
		return tr, false
	}
	return tr, true
}

// awaitProbes publishes probe messages tagged run every 50 ms until every
// client has received one (a node's NATS subscription can trail the
// subscribe ack). It returns, per client, when its first probe arrived, or
// fails after timeout. Other frames are dropped.
func awaitProbes(t *testing.T, nc *nats.Conn, subject, run string, clients []*wsClient, timeout time.Duration) []time.Time {
	t.Helper()
	got := make([]time.Time, len(clients))
	left := len(clients)
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for probe := 1; left > 0; probe++ {
		publishTrade(t, nc, subject, trade{Run: run, Probe: probe})
		_ = nc.Flush()
		for {
			progress := false
			for i, c := range clients {
				if !got[i].IsZero() {
					continue
				}
				select {
				case f := <-c.frames:
					progress = true
					if tr, ok := tradeOf(f); ok && tr.Run == run && tr.Probe > 0 {
						got[i] = time.Now()
						left--
					}
				default:
				}
			}
			if !progress {
				break
			}
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			var missing []string
			for i, c := range clients {
				if got[i].IsZero() {
					missing = append(missing, fmt.Sprintf("client %d on node%d (err %v)", i, c.node+1, c.err))
				}
			}
			t.Fatalf("no probe within %v for %v", timeout, missing)
		}
		<-tick.C
	}
	return got
}

// expectSeries publishes n numbered messages once each and checks that
// every client receives each exactly once and in order: a last message
// (seq n+1) marks the end, and NATS keeps one publisher's order, so a
// duplicate or a gap shows before it.
func expectSeries(t *testing.T, nc *nats.Conn, subject string, clients []*wsClient, n int) {
	t.Helper()
	run := procnode.RandomToken(4)
	for i := 1; i <= n+1; i++ {
		publishTrade(t, nc, subject, trade{Run: run, Seq: i})
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	for ci, c := range clients {
		want := 1
		for want <= n+1 {
			f, err := c.next(10 * time.Second)
			if err != nil {
				t.Fatalf("client %d on node%d: waiting for seq %d: %v", ci, c.node+1, want, err)
			}
			tr, ok := tradeOf(f)
			if !ok || tr.Run != run {
				continue // a late probe of an earlier phase
			}
			if tr.Seq != want {
				t.Fatalf("client %d on node%d: got seq %d, want %d (duplicate or gap)", ci, c.node+1, tr.Seq, want)
			}
			want++
		}
	}
}
