package broker_test

import (
	"context"
	"testing"

	"floodgate/broker"
	"floodgate/fanout"

	"github.com/valyala/fastjson"
)

var (
	subscribeFrame = []byte(`{"method":"subscribe","params":{"source":"book","symbol":"BTC","agg_level":1},"id":17}`)
	pingFrame      = []byte(`{"method":"ping","id":"p-1"}`)
)

func mustSources(tb testing.TB) *fanout.Sources {
	tb.Helper()
	s, err := fanout.NewSources(fanout.SourcesConfig{})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func BenchmarkParse_Subscribe(b *testing.B) {
	var p fastjson.Parser
	src := mustSources(b)
	scratch := make([]byte, 0, 256)
	b.ReportAllocs()
	b.SetBytes(int64(len(subscribeFrame)))
	for b.Loop() {
		_, code, subj, _ := broker.ParseFrame(&p, src, subscribeFrame, scratch)
		if code != "" || string(subj) != "md.book.BTC.1" {
			b.Fatal(code, string(subj))
		}
	}
}

func BenchmarkParse_Ping(b *testing.B) {
	var p fastjson.Parser
	src := mustSources(b)
	scratch := make([]byte, 0, 256)
	b.ReportAllocs()
	b.SetBytes(int64(len(pingFrame)))
	for b.Loop() {
		op, code, _, _ := broker.ParseFrame(&p, src, pingFrame, scratch)
		if code != "" || op != broker.OpPing {
			b.Fatal(code)
		}
	}
}

func TestParseAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	var p fastjson.Parser
	src := mustSources(t)
	scratch := make([]byte, 0, 256)
	for _, f := range [][]byte{subscribeFrame, pingFrame, []byte(`{"method":"unsubscribe","params":{"source":"trades","symbol":"SOL"}}`)} {
		if n := testing.AllocsPerRun(200, func() { broker.ParseFrame(&p, src, f, scratch) }); n != 0 {
			t.Errorf("%s: %v allocs", f, n)
		}
	}
}

// newHotServer is a Server whose sessions are never written, for hot-path
// measurements without sockets.
func newHotServer(tb testing.TB) *broker.Server {
	tb.Helper()
	srv, err := broker.New(broker.Options{Hub: nopHub{}, Sources: mustSources(tb)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = srv.Close() })
	return srv
}

type nopHub struct{}

func (nopHub) Subscribe(_ fanout.Subscriber, j fanout.Join) (*fanout.Subscription, error) {
	j.Joined(fanout.JoinInfo{})
	return nil, nil
}
func (nopHub) Unsubscribe(*fanout.Subscription)   {}
func (nopHub) HasHistory(src *fanout.Source) bool { return false }
func (nopHub) Replay(context.Context, *fanout.Subscription, uint64, fanout.JoinInfo, func(int) error) (fanout.ReplayResult, error) {
	return fanout.ReplayResult{}, fanout.ErrNoHistory
}

// TestHandlePingAllocatesNothing covers the whole ping path: parse, charge,
// build the pooled pong, queue it.
func TestHandlePingAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	s := broker.NewTestSession(newHotServer(t))
	out := make([]byte, 0, 4096)
	s.Handle(pingFrame)
	out = s.Drain(out[:0])
	// A final text frame (0x81), 29 bytes of payload, unmasked.
	if want := "\x81\x1d" + `{"channel":"pong","id":"p-1"}`; string(out) != want {
		t.Fatalf("pong wire %q, want %q", out, want)
	}
	if n := testing.AllocsPerRun(500, func() {
		s.Handle(pingFrame)
		out = s.Drain(out[:0])
	}); n != 0 {
		t.Fatalf("ping path: %v allocs", n)
	}
}

func BenchmarkHandle_Ping(b *testing.B) {
	s := broker.NewTestSession(newHotServer(b))
	out := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		s.Handle(pingFrame)
		out = s.Drain(out[:0])
	}
}

// TestDeliverAllocatesNothing: queuing a shared market frame to a session
// allocates nothing once the queue has grown.
func TestDeliverAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	s := broker.NewTestSession(newHotServer(t))
	f := fanout.NewFrame("trades", []byte(`{"p":"1"}`))
	buf := make([]byte, 0, 64<<10)
	for i := 0; i < 100; i++ {
		s.Deliver(f)
	}
	buf = s.Drain(buf[:0])
	if n := testing.AllocsPerRun(100, func() {
		for i := 0; i < 50; i++ {
			s.Deliver(f)
		}
		buf = s.Drain(buf[:0])
	}); n != 0 {
		t.Fatalf("deliver: %v allocs", n)
	}
}

// TestDeliverConflatedAllocatesNothing: a lagging session's conflatable
// frames replacing the pending one allocate nothing either.
func TestDeliverConflatedAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	s := broker.NewTestSession(newHotServer(t), true)
	f := fanout.NewFrame("book", []byte(`{"p":"1"}`))
	buf := make([]byte, 0, 64<<10)
	for i := 0; i < 1000; i++ { // past the high-water mark: replacing
		s.Deliver(f)
	}
	buf = s.Drain(buf[:0])
	if n := testing.AllocsPerRun(100, func() {
		for i := 0; i < 1000; i++ {
			s.Deliver(f)
		}
		buf = s.Drain(buf[:0])
	}); n != 0 {
		t.Fatalf("conflated deliver: %v allocs", n)
	}
}

// BenchmarkDeliver_1000Sessions delivers one frame to 1000 sessions through
// the Subscriber interface, as the hub does; allocs/op must stay at 0
// whatever the number of sessions.
func BenchmarkDeliver_1000Sessions(b *testing.B) {
	srv := newHotServer(b)
	sessions := make([]*broker.TestSession, 1000)
	for i := range sessions {
		sessions[i] = broker.NewTestSession(srv)
	}
	f := fanout.NewFrame("trades", []byte(`{"p":"1"}`))
	buf := make([]byte, 0, 64<<10)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		for _, s := range sessions {
			s.Deliver(f)
		}
		if n++; n%512 == 0 {
			for _, s := range sessions {
				buf = s.Drain(buf[:0])
			}
		}
	}
}
