package fanout_test

import (
	"bytes"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"

	"floodgate/fanout"

	"github.com/klauspost/compress/flate"
)

// counter is the cheapest possible Subscriber.
type counter struct{ n int }

func (c *counter) Deliver(*fanout.Frame) bool { c.n++; return true }

func subscribers(n int) []fanout.Subscriber {
	subs := make([]fanout.Subscriber, n)
	for i := range subs {
		subs[i] = &counter{}
	}
	return subs
}

var benchPayload = []byte(fmt.Sprintf(`[{"h":80062522,"s":"BTC","a":"0.00001","p":"89471","d":"open_long","tc":"normal","t":1765018379085,"li":1559885,"pad":"%0120d"}]`, 0))

// bookPayload is a book of 20 levels a side, about 1.6 KB.
func bookPayload() []byte {
	var b strings.Builder
	b.WriteString(`{"s":"BTC","l":[`)
	for side := 0; side < 2; side++ {
		if side > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('[')
		for i := 0; i < 20; i++ {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"p":"%d.%d","a":"%d.%04d","n":%d}`, 90000+i*(1-2*side), i%10, i+1, i*37%10000, i%7+1)
		}
		b.WriteByte(']')
	}
	b.WriteString(`],"t":1765018379085}`)
	return []byte(b.String())
}

// BenchmarkDeliver_Subscribers delivers one 200-byte NATS payload to n
// local subscribers: allocs/op is the same for 1 and 1000 subscribers (the
// one frame per message), never per subscriber.
func BenchmarkDeliver_Subscribers(b *testing.B) {
	hub, _, srcs := newHub(b, fanout.Options{})
	src := srcs.Lookup([]byte("trades"))
	for _, n := range []int{1, 10, 1000} {
		for _, hist := range []bool{false, true} {
			maker := fanout.DelivererForTest
			if hist {
				maker = fanout.SequencedDelivererForTest
			}
			deliver := maker(hub, src, subscribers(n), false)
			b.Run(fmt.Sprintf("%d/history=%v", n, hist), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					deliver(benchPayload)
				}
			})
		}
	}
}

// BenchmarkDeliver_Book1000Deflate is a 1.6 KB book frame to 1000
// subscribers, with and without deflate subscribers: the compression is
// per frame, not per subscriber.
func BenchmarkDeliver_Book1000Deflate(b *testing.B) {
	hub, _, srcs := newHub(b, fanout.Options{})
	src := srcs.Lookup([]byte("book"))
	book := bookPayload()
	for _, compressed := range []bool{false, true} {
		deliver := fanout.DelivererForTest(hub, src, subscribers(1000), compressed)
		b.Run(fmt.Sprintf("compressed=%v", compressed), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(book)))
			for b.Loop() {
				deliver(book)
			}
		})
	}
}

func TestDeliverAllocsDoNotGrowWithSubscribers(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	hub, _, srcs := newHub(t, fanout.Options{})
	src := srcs.Lookup([]byte("book"))
	for _, payload := range [][]byte{[]byte(`{"p":"1"}`), bookPayload()} {
		for _, compressed := range []bool{false, true} {
			// Live-only and with history (seq/prev in the frame): the same
			// two allocations per message.
			for _, maker := range []func(*fanout.Hub, *fanout.Source, []fanout.Subscriber, bool) func([]byte){
				fanout.DelivererForTest, fanout.SequencedDelivererForTest,
			} {
				allocs := func(n int) float64 {
					deliver := maker(hub, src, subscribers(n), compressed)
					deliver(payload) // the compressor's writer is made once
					return testing.AllocsPerRun(200, func() { deliver(payload) })
				}
				one, thousand := allocs(1), allocs(1000)
				if one != thousand || one > 2 {
					t.Fatalf("%d-byte payload, compressed %v: allocs per message %v with 1 subscriber, %v with 1000", len(payload), compressed, one, thousand)
				}
			}
		}
	}
}

// sizedSink records the wire bytes of each frame, plain and deflated.
type sizedSink struct{ plain, deflated []byte }

func (s *sizedSink) Deliver(f *fanout.Frame) bool {
	s.plain, s.deflated = f.Wire(), f.Deflated()
	return true
}

// TestDeflateOnceValidAndSmallFramesPlain: the deflated form is a single
// websocket frame with RSV1 whose payload, plus the RFC 7692 tail,
// inflates to the plain text; a book shrinks to at most half; a frame
// under 256 bytes is not compressed.
func TestDeflateOnceValidAndSmallFramesPlain(t *testing.T) {
	hub, _, srcs := newHub(t, fanout.Options{})
	s := &sizedSink{}
	deliver := fanout.DelivererForTest(hub, srcs.Lookup([]byte("book")), []fanout.Subscriber{s}, true)
	deliver(bookPayload())
	if s.deflated == nil {
		t.Fatal("book not compressed")
	}
	plainText := payloadOf(t, s.plain, false)
	text := inflate(t, payloadOf(t, s.deflated, true))
	if !bytes.Equal(text, plainText) {
		t.Fatalf("inflated %q\nwant %q", text, plainText)
	}
	if len(s.deflated)*2 > len(s.plain) {
		t.Fatalf("book %d bytes deflated to %d: more than half", len(s.plain), len(s.deflated))
	}
	deliver([]byte(`{"small":true}`))
	if s.deflated != nil || s.plain[0] != 0x81 {
		t.Fatalf("small frame compressed or RSV1 set: % x", s.plain[:2])
	}
}

// payloadOf checks a server frame's header (FIN, text, RSV1 as wanted)
// and returns its payload.
func payloadOf(t *testing.T, w []byte, rsv1 bool) []byte {
	t.Helper()
	want := byte(0x81)
	if rsv1 {
		want |= 0x40
	}
	if w[0] != want {
		t.Fatalf("first byte %#x, want %#x", w[0], want)
	}
	n, off := int(w[1]&0x7f), 2
	switch n {
	case 126:
		n, off = int(w[2])<<8|int(w[3]), 4
	case 127:
		t.Fatal("8-byte length in a test frame")
	}
	if len(w)-off != n {
		t.Fatalf("header says %d bytes, frame has %d", n, len(w)-off)
	}
	return w[off:]
}

func inflate(t *testing.T, p []byte) []byte {
	t.Helper()
	r := flate.NewReader(io.MultiReader(bytes.NewReader(p), strings.NewReader("\x00\x00\xff\xff")))
	var out bytes.Buffer
	if _, err := io.Copy(&out, r); err != nil && err != io.ErrUnexpectedEOF {
		t.Fatal(err)
	}
	return out.Bytes()
}

// BenchmarkJoinLeave_HotChannel joins and leaves one channel that already
// has n members: ns/op and allocs/op do not grow with n (O(1) per join).
func BenchmarkJoinLeave_HotChannel(b *testing.B) {
	for _, n := range []int{10, 1000, 20000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			hub, _, srcs := newHub(b, fanout.Options{})
			src := srcs.Lookup([]byte("prices"))
			for i := 0; i < n; i++ {
				if _, err := hub.Subscribe(&counter{}, fanout.Join{Source: src, Subject: "md.prices"}); err != nil {
					b.Fatal(err)
				}
			}
			s := &counter{}
			b.ReportAllocs()
			for b.Loop() {
				sub, _ := hub.Subscribe(s, fanout.Join{Source: src, Subject: "md.prices"})
				hub.Unsubscribe(sub)
			}
		})
	}
}

// TestJoinAllocsDoNotGrowWithChannelSize: joining and leaving a channel of
// 10,000 members allocates what it does on a channel of 10.
func TestJoinAllocsDoNotGrowWithChannelSize(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	allocs := func(n int) float64 {
		hub, _, srcs := newHub(t, fanout.Options{})
		src := srcs.Lookup([]byte("prices"))
		for i := 0; i < n; i++ {
			if _, err := hub.Subscribe(&counter{}, fanout.Join{Source: src, Subject: "md.prices"}); err != nil {
				t.Fatal(err)
			}
		}
		s := &counter{}
		return testing.AllocsPerRun(100, func() {
			sub, _ := hub.Subscribe(s, fanout.Join{Source: src, Subject: "md.prices"})
			hub.Unsubscribe(sub)
		})
	}
	small, big := allocs(10), allocs(10000)
	if small != big || small > 2 {
		t.Fatalf("join+leave allocs: %v on 10 members, %v on 10,000", small, big)
	}
}

// BenchmarkChannelCost opens b.N channels and reports the heap and
// goroutines each costs.
func BenchmarkChannelCost(b *testing.B) {
	hub, _, srcs := newHub(b, fanout.Options{MaxChannels: 1 << 30})
	src := srcs.Lookup([]byte("trades"))
	s := &counter{}
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	g0 := runtime.NumGoroutine()
	n := 0
	for b.Loop() {
		if _, err := hub.Subscribe(s, fanout.Join{Source: src, Subject: fmt.Sprintf("md.trades.S%d", n)}); err != nil {
			b.Fatal(err)
		}
		n++
	}
	runtime.GC()
	runtime.ReadMemStats(&m1)
	b.ReportMetric(float64(m1.HeapAlloc-m0.HeapAlloc)/float64(n), "heap-bytes/channel")
	b.ReportMetric(float64(runtime.NumGoroutine()-g0)/float64(n), "goroutines/channel")
}
