//go:build chaos

package chaos_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"

	"floodgate/internal/testdeps/procnode"
)

// attempt is one websocket upgrade.
type attempt struct {
	at         time.Time
	took       time.Duration
	status     int    // 101 when it was accepted
	code       string // the refusal's code
	retryAfter string // the refusal's Retry-After header
	err        error  // a transport error (no HTTP answer)
}

// upgrade dials n (with key unless ""), measures the handshake and closes
// the connection at once.
func upgrade(n *procnode.Node, key string) attempt {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a := attempt{at: time.Now()}
	conn, resp, err := n.Upgrade(ctx, key)
	a.took = time.Since(a.at)
	if err == nil {
		a.status = http.StatusSwitchingProtocols
		_ = conn.CloseNow()
		return a
	}
	if resp == nil {
		a.err = err
		return a
	}
	a.status = resp.StatusCode
	a.retryAfter = resp.Header.Get("Retry-After")
	var body struct {
		Code string `json:"code"`
	}
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &body)
	a.code = body.Code
	return a
}

// upgrades dials n every gap until stop is closed and returns what it saw.
func upgrades(n *procnode.Node, key string, gap time.Duration, stop <-chan struct{}) []attempt {
	var out []attempt
	t := time.NewTicker(gap)
	defer t.Stop()
	for {
		out = append(out, upgrade(n, key))
		select {
		case <-stop:
			return out
		case <-t.C:
		}
	}
}

// latencies summarises the handshake times of attempts: p50, p99, max.
func latencies(as []attempt) (p50, p99, worst time.Duration) {
	if len(as) == 0 {
		return 0, 0, 0
	}
	d := make([]time.Duration, len(as))
	for i, a := range as {
		d[i] = a.took
	}
	slices.Sort(d)
	q := func(p float64) time.Duration { return d[min(int(p*float64(len(d))), len(d)-1)] }
	return q(0.5), q(0.99), d[len(d)-1]
}

// statuses counts the answers of attempts by status (0: transport error).
func statuses(as []attempt) map[int]int {
	m := map[int]int{}
	for _, a := range as {
		m[a.status]++
	}
	return m
}

// stream is a websocket client subscribed to the trades of one symbol
// that records when each trade arrives, and how the connection ends.
type stream struct {
	// Immutable after openStream
	name   string
	conn   *websocket.Conn
	cancel context.CancelFunc
	done   chan struct{} // closed when the reader has returned

	// Guarded by mu
	mu       sync.Mutex
	arrivals []time.Time
	closeErr error
	closedAt time.Time
}

// openStream dials n (with key unless ""), subscribes to the trades of
// symbol and starts the reader; the client is closed in t.Cleanup.
func openStream(t *testing.T, n *procnode.Node, key, symbol, name string) *stream {
	t.Helper()
	conn, err := n.Dial(key)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer dcancel()
	conn.SetReadLimit(1 << 20)
	if err := conn.Write(dctx, websocket.MessageText, []byte(`{"method":"subscribe","params":{"source":"trades","symbol":"`+symbol+`"}}`)); err != nil {
		t.Fatalf("%s: subscribe: %v", name, err)
	}
	_, b, err := conn.Read(dctx)
	var f struct {
		Channel string `json:"channel"`
	}
	if err != nil || json.Unmarshal(b, &f) != nil || f.Channel != "subscribe" {
		t.Fatalf("%s: subscribe answered %s %v", name, b, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &stream{name: name, conn: conn, cancel: cancel, done: make(chan struct{})}
	go s.read(ctx)
	t.Cleanup(func() {
		cancel()
		_ = conn.CloseNow()
		<-s.done
	})
	return s
}

func (s *stream) read(ctx context.Context) {
	defer close(s.done)
	for {
		_, b, err := s.conn.Read(ctx)
		now := time.Now()
		if err != nil {
			s.mu.Lock()
			s.closeErr, s.closedAt = err, now
			s.mu.Unlock()
			return
		}
		var f struct {
			Channel string `json:"channel"`
		}
		if json.Unmarshal(b, &f) == nil && f.Channel == "trades" {
			s.mu.Lock()
			s.arrivals = append(s.arrivals, now)
			s.mu.Unlock()
		}
	}
}

// firstAfter returns when the first trade after t arrived (false: none
// yet).
func (s *stream) firstAfter(t time.Time) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, _ := slices.BinarySearchFunc(s.arrivals, t, func(a, b time.Time) int { return a.Compare(b) })
	if i == len(s.arrivals) {
		return time.Time{}, false
	}
	return s.arrivals[i], true
}

// maxGap is the longest time between two trades (or from..first, last..to
// edges excluded) arriving within [from, to].
func (s *stream) maxGap(from, to time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	var worst time.Duration
	var prev time.Time
	for _, a := range s.arrivals {
		if a.Before(from) {
			prev = a
			continue
		}
		if a.After(to) {
			break
		}
		if !prev.IsZero() {
			worst = max(worst, a.Sub(prev))
		}
		prev = a
	}
	return worst
}

// count is the number of trades received.
func (s *stream) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.arrivals)
}

// closed returns the close code and reason and when they came (ok false:
// still open).
func (s *stream) closed() (code websocket.StatusCode, reason string, at time.Time, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closeErr == nil {
		return 0, "", time.Time{}, false
	}
	var ce websocket.CloseError
	if errors.As(s.closeErr, &ce) {
		return ce.Code, ce.Reason, s.closedAt, true
	}
	return -1, s.closeErr.Error(), s.closedAt, true
}

// symbols are the markets the publisher feeds.
var symbols = []string{"BTC", "ETH"}

// publisher publishes a trade of every symbol (subject
// <prefix>.trades.<symbol>) every 10 ms until the test ends, over its own
// NATS connection (which notices a hung server within 1.5 s and buffers
// nothing while disconnected).
type publisher struct {
	nc     *nats.Conn
	cancel context.CancelFunc
	done   chan struct{}
}

func startPublisher(t *testing.T, natsURL, prefix string) *publisher {
	t.Helper()
	nc, err := nats.Connect(natsURL, nats.Name("floodgate chaos publisher"), nats.MaxReconnects(-1),
		nats.ReconnectWait(100*time.Millisecond), nats.Timeout(500*time.Millisecond),
		nats.PingInterval(500*time.Millisecond), nats.MaxPingsOutstanding(2), nats.ReconnectBufSize(-1))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &publisher{nc: nc, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for seq := 1; ; seq++ {
			select {
			case <-ctx.Done():
				return
			case now := <-tick.C:
				for _, sym := range symbols {
					_ = nc.Publish(prefix+".trades."+sym, fmt.Appendf(nil, `{"seq":%d,"t":%d}`, seq, now.UnixNano()))
				}
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-p.done
		nc.Close()
	})
	return p
}
