package loadtest_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"floodgate/loadtest"
)

// serverFrame encodes one unmasked server frame.
func serverFrame(op byte, fin bool, p []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	b := []byte{b0}
	switch n := len(p); {
	case n < 126:
		b = append(b, byte(n))
	case n < 1<<16:
		b = append(b, 126, byte(n>>8), byte(n))
	default:
		b = append(b, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return append(b, p...)
}

// marketFrame is a broker frame carrying a publisher payload of size bytes.
func marketFrame(ts int64, seq uint64, size int) []byte {
	b := []byte(`{"channel":"trades","data":`)
	b = loadtest.AppendPayload(b, ts, seq, size)
	return append(b, '}')
}

// loopConn is a net.Conn whose reads replay data forever and whose writes
// are counted and dropped.
type loopConn struct {
	net.Conn
	data   []byte
	off    int
	writes int
	wrote  []byte
}

func (c *loopConn) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		k := copy(p[n:], c.data[c.off:])
		n += k
		c.off = (c.off + k) % len(c.data)
	}
	return n, nil
}

func (c *loopConn) Write(p []byte) (int, error) {
	c.writes++
	if len(c.wrote) < 4096 {
		c.wrote = append(c.wrote, p...)
	}
	return len(p), nil
}
func (c *loopConn) SetWriteDeadline(time.Time) error { return nil }
func (c *loopConn) Close() error                     { return nil }

// readerConn is a net.Conn over a finite reader.
type readerConn struct {
	net.Conn
	r io.Reader
}

func (c *readerConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *readerConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *readerConn) SetWriteDeadline(time.Time) error { return nil }
func (c *readerConn) Close() error                     { return nil }

// stream is 10 market frames and a ping.
func stream(size int) []byte {
	var b []byte
	for i := range 10 {
		b = append(b, serverFrame(0x1, true, marketFrame(1_700_000_000_000_000_000+int64(i), uint64(i+1), size))...)
	}
	return append(b, serverFrame(0x9, true, []byte("hb"))...)
}

func TestConn_ReadMessage_ZeroAllocs(t *testing.T) {
	lc := &loopConn{data: stream(200)}
	c := loadtest.NewConnForTest(lc, 64<<10, 16<<20)
	var n int
	fn := func(p []byte) { n += len(p) }
	allocs := testing.AllocsPerRun(10_000, func() {
		if err := c.ReadMessage(fn); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("ReadMessage: %v allocs per message, want 0", allocs)
	}
	if lc.writes == 0 {
		t.Fatal("pings were not answered")
	}
	// The pong is a masked frame echoing "hb".
	w := lc.wrote
	if w[0] != 0x8a || w[1] != 0x80|2 {
		t.Fatalf("pong header % x", w[:2])
	}
	pl := append([]byte{}, w[6:8]...)
	loadtest.MaskBytes(pl, binary.BigEndian.Uint32(w[2:6]))
	if string(pl) != "hb" {
		t.Fatalf("pong payload %q", pl)
	}
}

// TestConn_ReadMessage_AssembledZeroAllocs: fragmented messages and
// messages larger than the read buffer reuse the assembly buffer.
func TestConn_ReadMessage_AssembledZeroAllocs(t *testing.T) {
	big := bytes.Repeat([]byte("z"), 10_000)
	var data []byte
	data = append(data, serverFrame(0x1, true, big)...)
	data = append(data, serverFrame(0x1, false, []byte("frag"))...)
	data = append(data, serverFrame(0xa, true, nil)...) // a pong between fragments
	data = append(data, serverFrame(0x0, true, []byte("ment"))...)
	c := loadtest.NewConnForTest(&loopConn{data: data}, 4096, 16<<20)
	var got []string
	for range 2 {
		if err := c.ReadMessage(func(p []byte) { got = append(got, string(p)) }); err != nil {
			t.Fatal(err)
		}
	}
	if got[0] != string(big) || got[1] != "fragment" {
		t.Fatalf("got %d and %q", len(got[0]), got[1])
	}
	fn := func([]byte) {}
	if allocs := testing.AllocsPerRun(1000, func() { _ = c.ReadMessage(fn) }); allocs != 0 {
		t.Fatalf("%v allocs per assembled message, want 0", allocs)
	}
}

func TestConn_ReadMessage_Errors(t *testing.T) {
	closeFrame := func(code uint16, reason string) []byte {
		return serverFrame(0x8, true, append(binary.BigEndian.AppendUint16(nil, code), reason...))
	}
	for _, c := range []struct {
		name string
		data []byte
		want func(error) bool
	}{
		{"close", closeFrame(1013, "slow consumer"), func(err error) bool {
			var ce *loadtest.CloseError
			return errors.As(err, &ce) && ce.Code == 1013 && ce.Reason == "slow consumer"
		}},
		{"close without code", serverFrame(0x8, true, nil), func(err error) bool {
			var ce *loadtest.CloseError
			return errors.As(err, &ce) && ce.Code == loadtest.CloseNoStatus
		}},
		{"reserved bits", []byte{0xc1, 0}, func(err error) bool { return errors.Is(err, loadtest.ErrProtocol) }},
		{"long ping", serverFrame(0x9, true, make([]byte, 126)), func(err error) bool { return errors.Is(err, loadtest.ErrProtocol) }},
		{"fragmented ping", serverFrame(0x9, false, nil), func(err error) bool { return errors.Is(err, loadtest.ErrProtocol) }},
		{"stray continuation", serverFrame(0x0, true, []byte("x")), func(err error) bool { return errors.Is(err, loadtest.ErrProtocol) }},
		{"text inside fragments", append(serverFrame(0x1, false, []byte("a")), serverFrame(0x1, true, []byte("b"))...),
			func(err error) bool { return errors.Is(err, loadtest.ErrProtocol) }},
		{"unknown opcode", serverFrame(0x3, true, nil), func(err error) bool { return errors.Is(err, loadtest.ErrProtocol) }},
		{"too large", serverFrame(0x1, true, make([]byte, 2000)), func(err error) bool { return errors.Is(err, loadtest.ErrMessageTooLarge) }},
		{"truncated", serverFrame(0x1, true, make([]byte, 300))[:100], func(err error) bool { return errors.Is(err, io.ErrUnexpectedEOF) }},
		{"eof", nil, func(err error) bool { return errors.Is(err, io.EOF) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn := loadtest.NewConnForTest(&readerConn{r: bytes.NewReader(c.data)}, 4096, 1024)
			err := conn.ReadMessage(func([]byte) {})
			if !c.want(err) {
				t.Fatalf("ReadMessage = %v", err)
			}
		})
	}
}

func TestExtractInt(t *testing.T) {
	for _, c := range []struct {
		in   string
		key  string
		want int64
		ok   bool
	}{
		{`{"channel":"trades","data":{"ts":1700000000000000000,"seq":5}}`, `"ts":`, 1700000000000000000, true},
		{`{"ts": 42}`, `"ts":`, 42, true},
		{`{"seq":7,"ts":1}`, `"seq":`, 7, true},
		{`{"ts":"1"}`, `"ts":`, 0, false},
		{`{"t":1}`, `"ts":`, 0, false},
		{`{"ts":99999999999999999999}`, `"ts":`, 0, false},
		{`{"ts":`, `"ts":`, 0, false},
	} {
		got, ok := loadtest.ExtractInt([]byte(c.in), c.key)
		if got != c.want || ok != c.ok {
			t.Errorf("ExtractInt(%s, %s) = %d, %v; want %d, %v", c.in, c.key, got, ok, c.want, c.ok)
		}
	}
}

func TestClassify(t *testing.T) {
	for in, want := range map[string]string{
		`{"channel":"trades","data":{}}`:                     "market",
		`{"channel":"prices","data":[]}`:                     "market",
		`{"channel":"subscribe","data":{"source":"trades"}}`: "subscribe",
		`{"channel":"unsubscribe","data":{}}`:                "unsubscribe",
		`{"channel":"pong"}`:                                 "pong",
		`{"channel":"error","data":{"code":"RATE_LIMITED"}}`: "error",
		`{"channel":"notice","data":{"code":"RECONNECT"}}`:   "notice",
		`{"id":1, "channel":"subscribe","data":{}}`:          "subscribe",
		`{"data":1}`:      "unknown",
		`{"channel":"tra`: "unknown",
	} {
		if got := loadtest.Classify([]byte(in)); got != want {
			t.Errorf("Classify(%s) = %s, want %s", in, got, want)
		}
	}
	if got := loadtest.ExtractString([]byte(`{"channel":"error","data":{"code": "FORBIDDEN"}}`), `"code":`); got != "FORBIDDEN" {
		t.Errorf("ExtractString = %q", got)
	}
}

func TestScan_ZeroAllocs(t *testing.T) {
	p := marketFrame(1_700_000_000_000_000_000, 12, 200)
	allocs := testing.AllocsPerRun(1000, func() {
		if loadtest.Classify(p) != "market" {
			t.Fatal("not market")
		}
		if _, ok := loadtest.ExtractInt(p, `"ts":`); !ok {
			t.Fatal("no ts")
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocs, want 0", allocs)
	}
}

// TestSession_OnFrame_ZeroAllocs covers the per-frame accounting: classify,
// extract ts and seq, count, batch the latency, flush a batch to a shard.
func TestSession_OnFrame_ZeroAllocs(t *testing.T) {
	start := time.Now()
	onFrame, counts := loadtest.SessionOnFrameForTest(start)
	early := marketFrame(start.Add(-time.Second).UnixNano(), 1, 200)
	onFrame(early) // published before measureFrom: not counted
	frame := marketFrame(start.UnixNano(), 2, 200)
	allocs := testing.AllocsPerRun(1000, func() { onFrame(frame) })
	if allocs != 0 {
		t.Fatalf("onFrame: %v allocs per frame, want 0", allocs)
	}
	d, samples := counts()
	if d != 1001 || samples != 1001 {
		t.Fatalf("delivered %d, samples %d; want 1001 each", d, samples)
	}
}

func FuzzConn_ReadMessage(f *testing.F) {
	f.Add(stream(60))
	f.Add(serverFrame(0x8, true, []byte{3, 0xe8, 'o', 'k'}))
	f.Add(append(serverFrame(0x1, false, []byte("a")), serverFrame(0x0, true, []byte("b"))...))
	f.Add([]byte{0x81, 0xfe, 0, 5, 1, 2, 3, 4, 'h', 'e', 'l', 'l', 'o'})
	f.Add([]byte{0x81, 127, 0x80, 0, 0, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		c := loadtest.NewConnForTest(&readerConn{r: bytes.NewReader(data)}, 256, 4096)
		for range len(data) + 1 {
			if err := c.ReadMessage(func(p []byte) {
				if len(p) > 4096 {
					t.Fatalf("message of %d bytes above the limit", len(p))
				}
			}); err != nil {
				return
			}
		}
		t.Fatal("ReadMessage did not stop at the end of the input")
	})
}

func FuzzExtractInt(f *testing.F) {
	f.Add([]byte(`{"ts":123,"seq":4}`))
	f.Add([]byte(`"ts": 99999999999999999999`))
	f.Fuzz(func(t *testing.T, p []byte) {
		v, ok := loadtest.ExtractInt(p, `"ts":`)
		i := bytes.Index(p, []byte(`"ts":`))
		if i < 0 {
			if ok {
				t.Fatal("ok without key")
			}
			return
		}
		rest := bytes.TrimLeft(p[i+5:], " ")
		end := 0
		for end < len(rest) && rest[end] >= '0' && rest[end] <= '9' {
			end++
		}
		want, err := strconv.ParseInt(string(rest[:end]), 10, 64)
		if (err == nil) != ok || (ok && v != want) {
			t.Fatalf("ExtractInt = %d, %v; strconv says %d, %v", v, ok, want, err)
		}
		_ = loadtest.Classify(p)
		_ = loadtest.ExtractString(p, `"code":`)
	})
}

// TestInflateAllocatesNothing: a deflate client inflates a compressed
// frame without allocating once its buffer has grown.
func TestInflateAllocatesNothing(t *testing.T) {
	book := loadtest.AppendBookPayload(nil, 1, 1)
	inflate := loadtest.InflaterForTest(book)
	if got := inflate(); string(got) != string(book) {
		t.Fatalf("inflated %q", got)
	}
	if n := testing.AllocsPerRun(200, func() { inflate() }); n != 0 {
		t.Fatalf("inflate: %v allocs per message", n)
	}
}
