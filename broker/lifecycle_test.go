package broker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"floodgate/broker"

	"github.com/coder/websocket"
)

func TestIdleTimeoutAndPingKeepalive(t *testing.T) {
	e := newEnv(t, broker.Options{IdleTimeout: 400 * time.Millisecond, PingInterval: time.Hour, PongTimeout: time.Hour})
	idle := e.dial(nil)
	textPinger := e.dial(nil)
	wsPinger := e.dial(nil)
	start := time.Now()
	done := make(chan struct{})
	defer close(done)
	// textPinger sends protocol pings, wsPinger websocket ping frames; both
	// count as activity. wsPinger reads in the background so pongs arrive.
	go func() { _, _, _ = wsPinger.c.Read(context.Background()) }()
	for time.Since(start) < 1200*time.Millisecond {
		textPinger.roundTrip(`{"method":"ping"}`, `{"channel":"pong"}`)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if err := wsPinger.c.Ping(ctx); err != nil {
			cancel()
			t.Fatalf("websocket ping: %v", err)
		}
		cancel()
		select {
		case <-time.After(100 * time.Millisecond):
		case <-done:
		}
	}
	idle.expectClose(websocket.StatusNormalClosure, "idle timeout")
	textPinger.roundTrip(`{"method":"ping"}`, `{"channel":"pong"}`)
	eventually(t, "the two active clients left", func() bool { return e.srv.Connections() == 2 })
}

func TestServerPingsAndPingTimeout(t *testing.T) {
	e := newEnv(t, broker.Options{IdleTimeout: time.Hour, PingInterval: 50 * time.Millisecond, PongTimeout: 500 * time.Millisecond})
	var pings atomic.Int32
	// healthy answers pings (coder/websocket does while reading).
	healthy := e.dial(&websocket.DialOptions{OnPingReceived: func(context.Context, []byte) bool { pings.Add(1); return true }})
	// deaf receives pings but never answers them.
	deaf := e.dial(&websocket.DialOptions{OnPingReceived: func(context.Context, []byte) bool { return false }})
	go func() { _, _, _ = healthy.c.Read(context.Background()) }()
	deaf.expectClose(websocket.StatusGoingAway, "ping timeout")
	if n := pings.Load(); n < 3 {
		t.Fatalf("healthy client saw %d server pings, want several", n)
	}
	eventually(t, "only the healthy client left", func() bool { return e.srv.Connections() == 1 })
}

func TestLifetimeNoticeThenClose(t *testing.T) {
	e := newEnv(t, broker.Options{Lifetime: 600 * time.Millisecond, LifetimeNotice: 300 * time.Millisecond, SweepInterval: 10 * time.Millisecond})
	c := e.dial(nil)
	var n struct {
		Channel string `json:"channel"`
		Data    struct {
			Code string `json:"code"`
			InMs int64  `json:"in_ms"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(c.read()), &n); err != nil {
		t.Fatal(err)
	}
	if n.Channel != "notice" || n.Data.Code != "RECONNECT" || n.Data.InMs <= 0 || n.Data.InMs > 300 {
		t.Fatalf("notice %+v", n)
	}
	c.expectClose(websocket.StatusGoingAway, "lifetime exceeded")
}

func TestSlowConsumerClosed1013WhileHealthyClientGetsEverything(t *testing.T) {
	e := newEnv(t, broker.Options{QueueFrames: 64, QueueBytes: 1 << 20})
	slow, healthy := e.dial(nil), e.dial(nil)
	sub := `{"method":"subscribe","params":{"source":"trades","symbol":"BTC"}}`
	ack := `{"channel":"subscribe","data":{"source":"trades","symbol":"BTC"}}`
	slow.roundTrip(sub, ack)
	healthy.roundTrip(sub, ack)

	pad := strings.Repeat("x", 16<<10)
	progress := make(chan int, 1)
	received := make(chan error, 1)
	const total = 2000 // 32 MiB: far more than loopback socket buffers hold
	go func() {
		for i := 0; i < total; i++ {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, b, err := healthy.c.Read(ctx)
			cancel()
			if err != nil {
				received <- err
				return
			}
			want := fmt.Sprintf(`{"channel":"trades","data":{"seq":%d,"pad":"%s"}}`, i, pad)
			if string(b) != want {
				received <- fmt.Errorf("message %d out of order or corrupt (%d bytes)", i, len(b))
				return
			}
			if (i+1)%20 == 0 {
				progress <- i + 1
			}
		}
		received <- nil
	}()
	// Publish in steps of 20 and wait for the healthy client each time, so
	// it keeps up by construction while the slow one never reads.
	for i := 0; i < total; i += 20 {
		for j := i; j < i+20; j++ {
			if err := e.pub.Publish("md.trades.BTC", []byte(fmt.Sprintf(`{"seq":%d,"pad":"%s"}`, j, pad))); err != nil {
				t.Fatal(err)
			}
		}
		_ = e.pub.Flush()
		select {
		case <-progress:
		case err := <-received:
			t.Fatalf("healthy client after %d: %v", i, err)
		}
	}
	if err := <-received; err != nil {
		t.Fatalf("healthy client: %v", err)
	}
	eventually(t, "slow consumer close", func() bool { return e.counter("floodgate_slow_consumer_closes_total") == 1 })
	// The overflowing frame and the backlog are counted as drops, by
	// reason, never as delivered: accepted + dropped = offered.
	full := e.counter("floodgate_frames_dropped_total", "reason", "queue_full")
	backlog := e.counter("floodgate_frames_dropped_total", "reason", "slow_consumer_close")
	closing := e.counter("floodgate_frames_dropped_total", "reason", "closing")
	if full != 1 || backlog < 1 || backlog > 64 {
		t.Fatalf("drops: queue_full %v, slow_consumer_close %v (queue bound 64)", full, backlog)
	}
	if out := e.counter("floodgate_fanout_messages_out_total"); out+full+closing != 2*total {
		t.Fatalf("accepted %v + queue_full %v + closing %v != offered %d", out, full, closing, 2*total)
	}
	// The slow client finally reads: what was on the wire, then 1013.
	slow.expectClose(websocket.StatusTryAgainLater, "slow consumer")
	eventually(t, "close counted", func() bool {
		return e.counter("floodgate_connections_closed_total", "reason", "slow_consumer") == 1
	})
	healthy.roundTrip(`{"method":"ping"}`, `{"channel":"pong"}`)
}

func TestDrainNoticeRefuseAndClose(t *testing.T) {
	e := newEnv(t, broker.Options{})
	c := e.dial(nil)
	c.roundTrip(`{"method":"ping"}`, `{"channel":"pong"}`)
	drained := make(chan struct{})
	go func() { e.srv.Drain(300 * time.Millisecond); close(drained) }()
	c.expect(`{"channel":"notice","data":{"code":"RECONNECT","in_ms":300}}`)
	// New upgrades are refused while draining.
	req, _ := http.NewRequest(http.MethodGet, e.http.URL+"/ws", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || string(body) != `{"error":"server is draining, reconnect to another node","code":"DRAINING"}`+"\n" {
		t.Fatalf("upgrade while draining: %d %s", resp.StatusCode, body)
	}
	c.expectClose(websocket.StatusGoingAway, "going away")
	<-drained
	if !e.srv.Draining() || e.srv.Connections() != 0 {
		t.Fatalf("draining=%v connections=%d", e.srv.Draining(), e.srv.Connections())
	}
}

func TestCrossOriginRefusedUnlessAllowed(t *testing.T) {
	e := newEnv(t, broker.Options{AllowedOrigins: []string{"*.example.com"}})
	dial := func(origin string) (int, string) {
		h := http.Header{}
		h.Set("Origin", origin)
		c, resp, err := websocket.Dial(t.Context(), e.url, &websocket.DialOptions{HTTPHeader: h})
		if err == nil {
			c.CloseNow()
			return 101, ""
		}
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := dial("https://evil.test"); code != 403 || body != `{"error":"origin not allowed","code":"ORIGIN_NOT_ALLOWED"}`+"\n" {
		t.Fatalf("evil origin: %d %s", code, body)
	}
	if code, _ := dial("https://app.example.com"); code != 101 {
		t.Fatalf("allowed origin refused: %d", code)
	}
	if code, _ := dial(strings.Replace(e.http.URL, "127.0.0.1", "127.0.0.1", 1)); code != 101 {
		t.Fatalf("same origin refused: %d", code)
	}
}

func TestNotAnUpgrade(t *testing.T) {
	e := newEnv(t, broker.Options{})
	resp, err := http.Get(e.http.URL + "/ws")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUpgradeRequired || string(b) != `{"error":"websocket upgrade required","code":"BAD_REQUEST"}`+"\n" {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
}

// TestStalledFrameDoesNotHoldTheSession: a client that declares a huge
// frame, sends part of it and stops is closed within CloseTimeout, and
// Close does not hang on it.
func TestStalledFrameDoesNotHoldTheSession(t *testing.T) {
	e := newEnv(t, broker.Options{CloseTimeout: 300 * time.Millisecond})
	c := e.dial(nil)
	ctx := t.Context()
	w, err := c.c.Writer(ctx, websocket.MessageText)
	if err != nil {
		t.Fatal(err)
	}
	// One unfinished frame declaring 10000 bytes, of which the client's
	// buffer flushes about 8 KiB: over the limit, then silence.
	if _, err := w.Write([]byte(strings.Repeat("x", 10000))); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the stalled session to end as frame_too_big", func() bool {
		return e.srv.Connections() == 0 && e.counter("floodgate_connections_closed_total", "reason", "frame_too_big") == 1
	})
}
