package broker_test

import (
	"testing"

	"floodgate/broker"
	"floodgate/fanout"
)

// TestMeterCountsWrittenChannelFrames: a metered session's writer counts
// the channel frames it wrote and their bytes as written; replies (a pong)
// are not deliveries; an unmetered session counts nothing.
func TestMeterCountsWrittenChannelFrames(t *testing.T) {
	srv := newHotServer(t)
	on, off := broker.NewTestWriterSession(srv, true), broker.NewTestWriterSession(srv, false)
	f := fanout.NewFrame("trades", []byte(`{"p":"1"}`))
	for _, s := range []*broker.TestSession{on, off} {
		s.Deliver(f) // one frame: the writer's no-copy path
		s.Write()
		for range 5 { // a batch
			s.Deliver(f)
		}
		s.Handle([]byte(`{"method":"ping"}`))
		s.Write()
	}
	if got, want := on.Delivered(), (broker.Delivered{Msgs: 6, Bytes: 6 * int64(len(f.Wire()))}); got != want {
		t.Fatalf("metered: %+v, want %+v", got, want)
	}
	if got := off.Delivered(); got != (broker.Delivered{}) {
		t.Fatalf("unmetered: %+v", got)
	}
}

// TestMeteredWriteAllocatesNothing: delivering and writing with metering
// on allocates nothing.
func TestMeteredWriteAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	s := broker.NewTestWriterSession(newHotServer(t), true)
	f := fanout.NewFrame("trades", []byte(`{"p":"1"}`))
	if n := testing.AllocsPerRun(100, func() {
		for range 32 {
			s.Deliver(f)
		}
		s.Write()
	}); n != 0 {
		t.Fatalf("metered deliver+write: %v allocs", n)
	}
}

// BenchmarkDeliverWrite_Metered and _Unmetered deliver one frame per op to
// a session and run its writer every 32 frames (one batch, one write to a
// discarding connection): the cost of delivery metering is their
// difference (docs/benchmarks.md).
func BenchmarkDeliverWrite_Metered(b *testing.B)   { benchDeliverWrite(b, true) }
func BenchmarkDeliverWrite_Unmetered(b *testing.B) { benchDeliverWrite(b, false) }

func benchDeliverWrite(b *testing.B, metered bool) {
	s := broker.NewTestWriterSession(newHotServer(b), metered)
	f := fanout.NewFrame("trades", []byte(`{"s":"BTC","p":"67012.5","q":"0.01"}`))
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		s.Deliver(f)
		if n++; n%32 == 0 {
			s.Write()
		}
	}
	s.Write()
}
