package loadtest_test

import (
	"net"
	"testing"
	"time"

	"floodgate/loadtest"
)

func BenchmarkConn_ReadMessage_200B(b *testing.B) {
	c := loadtest.NewConnForTest(&loopConn{data: stream(200)}, 64<<10, 16<<20)
	fn := func([]byte) {}
	b.ReportAllocs()
	b.SetBytes(230)
	for b.Loop() {
		if err := c.ReadMessage(fn); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkConn_ReadMessage_Assembled16KiB(b *testing.B) {
	data := serverFrame(0x1, true, marketFrame(1, 1, 16<<10))
	c := loadtest.NewConnForTest(&loopConn{data: data}, 4096, 16<<20)
	fn := func([]byte) {}
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if err := c.ReadMessage(fn); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkConn_ReadMessage_TCP reads 200-byte market frames from a real
// loopback socket fed by a writer goroutine: one client's ceiling.
func BenchmarkConn_ReadMessage_TCP(b *testing.B) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	var block []byte
	for len(block) < 256<<10 {
		block = append(block, serverFrame(0x1, true, marketFrame(1_700_000_000_000_000_000, 1, 200))...)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s, err := l.Accept()
		if err != nil {
			return
		}
		defer s.Close()
		for {
			if _, err := s.Write(block); err != nil {
				return
			}
		}
	}()
	nc, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	c := loadtest.NewConnForTest(nc, 64<<10, 16<<20)
	fn := func([]byte) {}
	b.ReportAllocs()
	b.SetBytes(230)
	for b.Loop() {
		if err := c.ReadMessage(fn); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	_ = nc.Close()
	<-done
}

func BenchmarkSession_OnFrame(b *testing.B) {
	start := time.Now()
	onFrame, _ := loadtest.SessionOnFrameForTest(start)
	frame := marketFrame(start.UnixNano(), 1, 200)
	b.ReportAllocs()
	for b.Loop() {
		onFrame(frame)
	}
}

func BenchmarkConn_WriteText_Subscribe(b *testing.B) {
	c := loadtest.NewConnForTest(&loopConn{data: []byte{0}}, 4096, 4096)
	msg := []byte(`{"method":"subscribe","params":{"source":"trades","symbol":"LOAD0"}}`)
	b.ReportAllocs()
	for b.Loop() {
		if err := c.WriteText(msg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendPayload_200B(b *testing.B) {
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = loadtest.AppendPayload(buf[:0], 1_700_000_000_000_000_000, 42, 200)
	}
}

func BenchmarkExtractInt_TS(b *testing.B) {
	p := marketFrame(1_700_000_000_000_000_000, 1, 200)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := loadtest.ExtractInt(p, `"ts":`); !ok {
			b.Fatal("no ts")
		}
	}
}
