package fanout_test

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
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

func (s *sink) last() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.frames) == 0 {
		return ""
	}
	return s.frames[len(s.frames)-1]
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

func newHub(t testing.TB, opts fanout.Options) (*fanout.Hub, *nats.Conn, *fanout.Sources) {
	t.Helper()
	nc, pub := startNATS(t)
	opts.Conn = nc
	hub, err := fanout.NewHub(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hub.Close)
	srcs, err := fanout.NewSources(fanout.SourcesConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return hub, pub, srcs
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

func join(t testing.TB, hub *fanout.Hub, srcs *fanout.Sources, source, subject string, s fanout.Subscriber) *fanout.Subscription {
	t.Helper()
	sub, err := hub.Subscribe(s, fanout.Join{Source: srcs.Lookup([]byte(source)), Subject: subject})
	if err != nil {
		t.Fatal(err)
	}
	return sub
}

func TestHubOneNATSSubscriptionPerChannel(t *testing.T) {
	hub, pub, srcs := newHub(t, fanout.Options{})
	nc := fanout.ConnForTest(hub)
	trades := srcs.Lookup([]byte("trades"))
	a, b := &sink{}, &sink{}
	joined := 0
	var subs []*fanout.Subscription
	for _, s := range []*sink{a, b} {
		sub, err := hub.Subscribe(s, fanout.Join{Source: trades, Subject: "md.trades.BTC", Joined: func(fanout.JoinInfo) { joined++ }})
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, sub)
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
	if got := a.last(); got != "\x81"+string(rune(len(text)))+text {
		t.Fatalf("wire %q", got)
	}
	hub.Unsubscribe(subs[0])
	if nc.NumSubscriptions() != 1 {
		t.Fatal("dropped too early")
	}
	hub.Unsubscribe(subs[0]) // twice: no effect
	hub.Unsubscribe(subs[1])
	if st := hub.Stats(); st.Channels != 0 || st.NATSSubscriptions != 0 || nc.NumSubscriptions() != 0 {
		t.Fatalf("after last unsubscribe: %+v, nats %d", st, nc.NumSubscriptions())
	}
}

func TestHubCloseRefusesSubscribe(t *testing.T) {
	hub, _, srcs := newHub(t, fanout.Options{})
	join(t, hub, srcs, "prices", "md.prices", &sink{})
	hub.Close()
	if fanout.ConnForTest(hub).NumSubscriptions() != 0 {
		t.Fatal("close left a NATS subscription")
	}
	if _, err := hub.Subscribe(&sink{}, fanout.Join{Source: srcs.Lookup([]byte("prices")), Subject: "md.prices"}); err != fanout.ErrClosed {
		t.Fatalf("err %v", err)
	}
}

func TestHubSubscribeFailsOnClosedConn(t *testing.T) {
	hub, _, srcs := newHub(t, fanout.Options{})
	fanout.ConnForTest(hub).Close()
	if _, err := hub.Subscribe(&sink{}, fanout.Join{Source: srcs.Lookup([]byte("prices")), Subject: "md.prices"}); err == nil {
		t.Fatal("subscribe on a closed connection succeeded")
	}
	if st := hub.Stats(); st.Channels != 0 {
		t.Fatalf("failed subscribe left a channel: %+v", st)
	}
}

func TestConcurrentSubscribeUnsubscribe(t *testing.T) {
	hub, _, srcs := newHub(t, fanout.Options{Shards: 4})
	trades := srcs.Lookup([]byte("trades"))
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			s := &sink{}
			for i := 0; i < 50; i++ {
				subj := fmt.Sprintf("md.trades.S%d", i%5)
				sub, err := hub.Subscribe(s, fanout.Join{Source: trades, Subject: subj, Owner: fmt.Sprint("o", g), Interval: fanout.Interval(i % 3)})
				if err != nil {
					t.Error(err)
					return
				}
				hub.Unsubscribe(sub)
			}
		}(g)
	}
	wg.Wait()
	if st := hub.Stats(); st.Channels != 0 || st.NATSSubscriptions != 0 || fanout.ConnForTest(hub).NumSubscriptions() != 0 {
		t.Fatalf("leftovers: %+v nats %d", st, fanout.ConnForTest(hub).NumSubscriptions())
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
	g.note("frame")
	return true
}

func (g *gate) note(s string) {
	g.mu.Lock()
	g.log = append(g.log, s)
	g.mu.Unlock()
}

// blockedIn reports whether some goroutine is blocked on a mutex with fn
// on its stack.
func blockedIn(fn string) bool {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		head, _, _ := strings.Cut(g, "\n")
		if strings.Contains(head, "sync.Mutex.Lock") && strings.Contains(g, fn) {
			return true
		}
	}
	return false
}

// TestNoFrameAfterUnsubscribeReturns: a delivery walk in progress finishes
// before Unsubscribe returns, so nothing of the channel reaches a
// subscriber after its unsubscribe ack. Deterministic: the walk is held
// inside Deliver until Unsubscribe is seen waiting for the channel's lock;
// if Unsubscribe returns while the walk is still inside Deliver (the
// ordering broken), the test fails at once.
func TestNoFrameAfterUnsubscribeReturns(t *testing.T) {
	hub, pub, srcs := newHub(t, fanout.Options{})
	g := &gate{entered: make(chan struct{}), release: make(chan struct{})}
	sub := join(t, hub, srcs, "prices", "md.prices", g)
	other := &sink{}
	join(t, hub, srcs, "prices", "md.prices", other) // keeps the channel open
	pub.Publish("md.prices", []byte(`{}`))
	pub.Flush()
	<-g.entered // the walk is inside Deliver
	done := make(chan struct{})
	go func() {
		hub.Unsubscribe(sub)
		g.note("unsubscribed")
		close(done)
	}()
	for !blockedIn("(*Hub).Unsubscribe") {
		select {
		case <-done:
			close(g.release)
			t.Fatal("Unsubscribe returned while a delivery to the subscriber was in progress")
		case <-time.After(time.Millisecond):
		}
	}
	close(g.release)
	<-done
	pub.Publish("md.prices", []byte(`{"after":1}`))
	pub.Flush()
	waitFor(t, "the next frame at the other subscriber", func() bool { return other.count() == 2 })
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.log) != 2 || g.log[0] != "frame" || g.log[1] != "unsubscribed" {
		t.Fatalf("order %v: a frame was delivered after Unsubscribe returned", g.log)
	}
}

// TestJoinedPrecedesFirstFrame: the Joined callback runs before the first
// frame is offered, even while the channel streams.
func TestJoinedPrecedesFirstFrame(t *testing.T) {
	hub, pub, srcs := newHub(t, fanout.Options{})
	keep := join(t, hub, srcs, "trades", "md.trades.X", &sink{})
	defer hub.Unsubscribe(keep)
	stop := make(chan struct{})
	var pubWG sync.WaitGroup
	pubWG.Add(1)
	go func() {
		defer pubWG.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			_ = pub.Publish("md.trades.X", []byte(`{}`))
			if i%100 == 0 {
				_ = pub.Flush()
			}
		}
	}()
	defer func() { close(stop); pubWG.Wait() }()
	for i := 0; i < 200; i++ {
		o := &orderSink{}
		sub, err := hub.Subscribe(o, fanout.Join{Source: srcs.Lookup([]byte("trades")), Subject: "md.trades.X", Joined: o.joined})
		if err != nil {
			t.Fatal(err)
		}
		hub.Unsubscribe(sub)
		if o.bad.Load() {
			t.Fatal("a frame was offered before Joined ran")
		}
	}
}

type orderSink struct {
	ack bool // written under the channel lock by Joined, read by Deliver under it
	bad atomicBool
}

func (o *orderSink) joined(fanout.JoinInfo) { o.ack = true }
func (o *orderSink) Deliver(*fanout.Frame) bool {
	if !o.ack {
		o.bad.Store(true)
	}
	return true
}

type atomicBool struct {
	mu sync.Mutex
	v  bool
}

func (b *atomicBool) Store(v bool) { b.mu.Lock(); b.v = v; b.mu.Unlock() }
func (b *atomicBool) Load() bool   { b.mu.Lock(); defer b.mu.Unlock(); return b.v }

// TestChannelCaps: with MaxChannels 10 (so 1 per identity), a second new
// channel of one owner and an eleventh channel are refused and make no
// NATS subscription; joining an open channel is always fine.
func TestChannelCaps(t *testing.T) {
	hub, _, srcs := newHub(t, fanout.Options{MaxChannels: 10})
	nc := fanout.ConnForTest(hub)
	trades := srcs.Lookup([]byte("trades"))
	sub := func(owner, sym string) error {
		_, err := hub.Subscribe(&sink{}, fanout.Join{Source: trades, Subject: "md.trades." + sym, Owner: owner})
		return err
	}
	if err := sub("a", "A0"); err != nil {
		t.Fatal(err)
	}
	if err := sub("a", "A1"); !errors.Is(err, fanout.ErrOwnerChannelLimit) {
		t.Fatalf("second channel of one owner: %v", err)
	}
	for i := 1; i < 10; i++ {
		if err := sub(fmt.Sprint("o", i), fmt.Sprint("S", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := sub("z", "Z"); !errors.Is(err, fanout.ErrChannelLimit) {
		t.Fatalf("eleventh channel: %v", err)
	}
	if err := sub("z", "A0"); err != nil {
		t.Fatalf("joining an open channel: %v", err)
	}
	if n := nc.NumSubscriptions(); n != 10 {
		t.Fatalf("%d NATS subscriptions, want 10", n)
	}
}

// TestChannelsCostNoGoroutine: 500 channels add no goroutine (NATS
// delivery goes through the hub's fixed dispatchers).
func TestChannelsCostNoGoroutine(t *testing.T) {
	hub, pub, srcs := newHub(t, fanout.Options{})
	before := runtime.NumGoroutine()
	s := &sink{}
	for i := 0; i < 500; i++ {
		join(t, hub, srcs, "trades", fmt.Sprintf("md.trades.S%d", i), s)
	}
	if after := runtime.NumGoroutine(); after > before+2 {
		t.Fatalf("goroutines %d -> %d for 500 channels", before, after)
	}
	for i := 0; i < 500; i++ {
		_ = pub.Publish(fmt.Sprintf("md.trades.S%d", i), []byte(`{}`))
	}
	pub.Flush()
	waitFor(t, "a frame of every channel", func() bool { return s.count() == 500 })
}

// TestPerChannelOrderAcrossDispatchers: many channels published in
// interleaved order, each subscriber sees its channel in order.
func TestPerChannelOrderAcrossDispatchers(t *testing.T) {
	hub, pub, srcs := newHub(t, fanout.Options{Dispatchers: 3})
	sinks := make([]*sink, 20)
	for i := range sinks {
		sinks[i] = &sink{}
		join(t, hub, srcs, "trades", fmt.Sprintf("md.trades.S%d", i), sinks[i])
	}
	const n = 200
	for j := 0; j < n; j++ {
		for i := range sinks {
			_ = pub.Publish(fmt.Sprintf("md.trades.S%d", i), []byte(fmt.Sprintf(`{"n":%d}`, j)))
		}
	}
	pub.Flush()
	for i, s := range sinks {
		waitFor(t, "all frames", func() bool { return s.count() == n })
		for j, f := range s.frames {
			if !strings.Contains(f, fmt.Sprintf(`{"n":%d}`, j)) {
				t.Fatalf("channel %d frame %d: %q", i, j, f)
			}
		}
	}
}

// TestConflatedSubscriberGetsLatestAtMostOncePerInterval: at 250 ms, a
// channel publishing every 10 ms reaches the subscriber about 4 times a
// second, the last frame being the last message; a live subscriber of the
// same channel gets everything.
func TestConflatedSubscriberGetsLatestAtMostOncePerInterval(t *testing.T) {
	hub, pub, srcs := newHub(t, fanout.Options{})
	book := srcs.Lookup([]byte("book"))
	slow, live := &stampSink{}, &sink{}
	if _, err := hub.Subscribe(slow, fanout.Join{Source: book, Subject: "md.book.BTC.1", Interval: fanout.Every250ms}); err != nil {
		t.Fatal(err)
	}
	join(t, hub, srcs, "book", "md.book.BTC.1", live)
	const n = 100 // 1 s at 100 msgs/s
	start := time.Now()
	for i := 1; i <= n; i++ {
		_ = pub.Publish("md.book.BTC.1", []byte(fmt.Sprintf(`{"n":%d}`, i)))
		_ = pub.Flush()
		time.Sleep(time.Until(start.Add(time.Duration(i) * 10 * time.Millisecond)))
	}
	waitFor(t, "the latest value", func() bool { return strings.Contains(slow.last(), fmt.Sprintf(`{"n":%d}`, n)) })
	waitFor(t, "every live frame", func() bool { return live.count() == n })
	times := slow.times()
	if len(times) < 4 || len(times) > 6 {
		t.Fatalf("%d conflated frames for 1 s at 250 ms", len(times))
	}
	for i := 1; i < len(times); i++ {
		if d := times[i].Sub(times[i-1]); d < 240*time.Millisecond {
			t.Fatalf("frames %d and %d only %v apart", i-1, i, d)
		}
	}
	if d := times[0].Sub(start); d > 300*time.Millisecond {
		t.Fatalf("first conflated frame after %v", d)
	}
}

type stampSink struct {
	sink
	at []time.Time
}

func (s *stampSink) Deliver(f *fanout.Frame) bool {
	s.mu.Lock()
	s.at = append(s.at, time.Now())
	s.mu.Unlock()
	return s.sink.Deliver(f)
}

func (s *stampSink) times() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.at...)
}

// TestRerouteKeepsSubscribersAndSequences: a channel moved to a sequenced
// route (as history will: JetStream's republished subject) keeps its
// subscribers and its frames carry seq and prev from the headers; moved
// back, they do not.
func TestRerouteKeepsSubscribersAndSequences(t *testing.T) {
	hub, pub, srcs := newHub(t, fanout.Options{})
	s := &sink{}
	join(t, hub, srcs, "trades", "md.trades.BTC", s)
	hist := func(_ *fanout.Source, subject string) fanout.Route {
		return fanout.Route{Subject: "floodgate.hist." + subject, Sequenced: true}
	}
	if err := hub.Reroute(hist); err != nil {
		t.Fatal(err)
	}
	_ = pub.Publish("md.trades.BTC", []byte(`{"raw":1}`)) // no longer routed
	msg := nats.NewMsg("floodgate.hist.md.trades.BTC")
	msg.Data = []byte(`{"h":1}`)
	msg.Header.Set("Nats-Sequence", "42")
	msg.Header.Set("Nats-Last-Sequence", "40")
	_ = pub.PublishMsg(msg)
	_ = pub.Flush()
	waitFor(t, "the sequenced frame", func() bool { return s.count() == 1 })
	if want := `{"channel":"trades","data":{"h":1},"seq":42,"prev":40}`; !strings.HasSuffix(s.last(), want) {
		t.Fatalf("frame %q, want %s", s.last(), want)
	}
	if err := hub.Reroute(fanout.RawRoute); err != nil {
		t.Fatal(err)
	}
	_ = pub.Publish("md.trades.BTC", []byte(`{"raw":2}`))
	_ = pub.Flush()
	waitFor(t, "the raw frame", func() bool { return s.count() == 2 })
	if want := `{"channel":"trades","data":{"raw":2}}`; !strings.HasSuffix(s.last(), want) {
		t.Fatalf("frame %q, want %s", s.last(), want)
	}
	if n := fanout.ConnForTest(hub).NumSubscriptions(); n != 1 {
		t.Fatalf("%d NATS subscriptions after two reroutes", n)
	}
}
