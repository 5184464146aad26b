package fanout_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"floodgate/fanout"

	"github.com/nats-io/nats.go"
)

// sink is a Subscriber that records frames.
type sink struct {
	mu     sync.Mutex
	frames []string
	full   bool
}

func (s *sink) Deliver(f *fanout.Frame) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.full {
		return false
	}
	s.frames = append(s.frames, string(f.Wire()))
	return true
}

func (s *sink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.frames)
}

func startNATS(t testing.TB) (*nats.Conn, *nats.Conn) {
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
	pub, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pub.Close)
	return nc, pub
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestHubOneNATSSubscriptionPerChannel(t *testing.T) {
	nc, pub := startNATS(t)
	hub, err := fanout.NewHub(fanout.Options{Conn: nc})
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	srcs, _ := fanout.NewSources(fanout.SourcesConfig{})
	trades := srcs.Lookup([]byte("trades"))
	a, b := &sink{}, &sink{}
	joined := 0
	for _, s := range []*sink{a, b} {
		if err := hub.Subscribe(trades, "md.trades.BTC", s, func() { joined++ }); err != nil {
			t.Fatal(err)
		}
	}
	if joined != 2 || nc.NumSubscriptions() != 1 {
		t.Fatalf("joined %d, NATS subscriptions %d", joined, nc.NumSubscriptions())
	}
	// Subscribe returned, so the interest is at the server: no wait needed.
	for i := 0; i < 3; i++ {
		if err := pub.Publish("md.trades.BTC", []byte(fmt.Sprintf(`{"i":%d}`, i))); err != nil {
			t.Fatal(err)
		}
	}
	pub.Flush()
	waitFor(t, "3 frames each", func() bool { return a.count() == 3 && b.count() == 3 })
	text := `{"channel":"trades","data":{"i":2}}`
	if got := a.frames[2]; got != "\x81"+string(rune(len(text)))+text {
		t.Fatalf("wire %q", got)
	}
	hub.Unsubscribe("md.trades.BTC", a)
	if nc.NumSubscriptions() != 1 {
		t.Fatal("dropped too early")
	}
	hub.Unsubscribe("md.trades.BTC", a) // twice: no effect
	hub.Unsubscribe("md.trades.BTC", b)
	if st := hub.Stats(); st.Channels != 0 || st.NATSSubscriptions != 0 || nc.NumSubscriptions() != 0 {
		t.Fatalf("after last unsubscribe: %+v, nats %d", st, nc.NumSubscriptions())
	}
}

func TestHubCloseRefusesSubscribe(t *testing.T) {
	nc, _ := startNATS(t)
	hub, _ := fanout.NewHub(fanout.Options{Conn: nc})
	srcs, _ := fanout.NewSources(fanout.SourcesConfig{})
	s := &sink{}
	if err := hub.Subscribe(srcs.Lookup([]byte("prices")), "md.prices", s, nil); err != nil {
		t.Fatal(err)
	}
	hub.Close()
	if nc.NumSubscriptions() != 0 {
		t.Fatal("close left a NATS subscription")
	}
	if err := hub.Subscribe(srcs.Lookup([]byte("prices")), "md.prices", s, nil); err != fanout.ErrClosed {
		t.Fatalf("err %v", err)
	}
}

func TestHubSubscribeFailsOnClosedConn(t *testing.T) {
	nc, _ := startNATS(t)
	hub, _ := fanout.NewHub(fanout.Options{Conn: nc})
	defer hub.Close()
	srcs, _ := fanout.NewSources(fanout.SourcesConfig{})
	nc.Close()
	if err := hub.Subscribe(srcs.Lookup([]byte("prices")), "md.prices", &sink{}, nil); err == nil {
		t.Fatal("subscribe on a closed connection succeeded")
	}
	if st := hub.Stats(); st.Channels != 0 {
		t.Fatalf("failed subscribe left a channel: %+v", st)
	}
}

func TestConcurrentSubscribeUnsubscribe(t *testing.T) {
	nc, _ := startNATS(t)
	hub, _ := fanout.NewHub(fanout.Options{Conn: nc, Shards: 4})
	defer hub.Close()
	srcs, _ := fanout.NewSources(fanout.SourcesConfig{})
	trades := srcs.Lookup([]byte("trades"))
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			s := &sink{}
			for i := 0; i < 50; i++ {
				subj := fmt.Sprintf("md.trades.S%d", i%5)
				if err := hub.Subscribe(trades, subj, s, nil); err != nil {
					t.Error(err)
					return
				}
				hub.Unsubscribe(subj, s)
			}
		}(g)
	}
	wg.Wait()
	if st := hub.Stats(); st.Channels != 0 || st.NATSSubscriptions != 0 || nc.NumSubscriptions() != 0 {
		t.Fatalf("leftovers: %+v nats %d", st, nc.NumSubscriptions())
	}
}

// gate is a Subscriber whose first Deliver blocks until released.
type gate struct {
	entered, release chan struct{}
	once             sync.Once
	mu               sync.Mutex
	log              []string
}

func (g *gate) Deliver(f *fanout.Frame) bool {
	g.once.Do(func() {
		g.entered <- struct{}{}
		<-g.release
	})
	g.mu.Lock()
	g.log = append(g.log, "frame")
	g.mu.Unlock()
	return true
}

// TestNoFrameAfterUnsubscribeReturns: a delivery walk in progress finishes
// before Unsubscribe returns, so nothing of the channel reaches a
// subscriber after its unsubscribe ack.
func TestNoFrameAfterUnsubscribeReturns(t *testing.T) {
	nc, pub := startNATS(t)
	hub, _ := fanout.NewHub(fanout.Options{Conn: nc})
	defer hub.Close()
	srcs, _ := fanout.NewSources(fanout.SourcesConfig{})
	g := &gate{entered: make(chan struct{}), release: make(chan struct{})}
	if err := hub.Subscribe(srcs.Lookup([]byte("prices")), "md.prices", g, nil); err != nil {
		t.Fatal(err)
	}
	pub.Publish("md.prices", []byte(`{}`))
	pub.Flush()
	<-g.entered // the walk is inside Deliver
	done := make(chan struct{})
	go func() {
		hub.Unsubscribe("md.prices", g)
		g.mu.Lock()
		g.log = append(g.log, "unsubscribed")
		g.mu.Unlock()
		close(done)
	}()
	close(g.release)
	<-done
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.log) != 2 || g.log[0] != "frame" || g.log[1] != "unsubscribed" {
		t.Fatalf("order %v: a frame was delivered after Unsubscribe returned", g.log)
	}
}
