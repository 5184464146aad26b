package loadtest

import (
	"bufio"
	"bytes"
	"net"
	"strings"
	"time"

	"github.com/klauspost/compress/flate"
)

// NewConnForTest wraps an established byte stream (no handshake) in a Conn.
func NewConnForTest(nc net.Conn, readBufferSize, maxMessageSize int) *Conn {
	return &Conn{nc: nc, br: bufio.NewReaderSize(nc, readBufferSize), maxMsg: maxMessageSize}
}

// MaskBytes exposes the masking function.
var MaskBytes = maskBytes

// Classify returns the frame kind name of a server frame.
func Classify(p []byte) string {
	return [...]string{"market", "subscribe", "unsubscribe", "pong", "error", "notice", "unknown"}[classify(p)]
}

// ExtractString exposes the string scanner.
var ExtractString = extractString

// AutoSourceAddrs exposes the default source-address spreading.
var AutoSourceAddrs = autoSourceAddrs

// ParseProcessMetrics parses Prometheus text and returns RSS bytes and CPU
// seconds.
func ParseProcessMetrics(text string) (rss, cpu float64, err error) {
	s, err := parseProcessMetrics(bufio.NewScanner(strings.NewReader(text)))
	return s.rssBytes, s.cpuSeconds, err
}

// SessionOnFrameForTest builds a subscribed session in a runner measuring
// from measureFrom and returns its frame handler and a function reporting
// its delivered count and the total latency samples recorded.
func SessionOnFrameForTest(measureFrom time.Time) (onFrame func([]byte), counts func() (delivered uint64, samples int64)) {
	cfg, _ := Config{URL: "ws://127.0.0.1:1/ws", NATSURL: "nats://127.0.0.1:1", Conns: 1}.withDefaults()
	r := newRunner(cfg)
	r.measureFrom.Store(measureFrom.UnixNano())
	s := r.sessions[0]
	s.settle(stateSubscribed, "")
	return s.onFrame, func() (uint64, int64) {
		s.flushLatency()
		return s.delivered.Load(), r.latency.merged().TotalCount()
	}
}

// ParseThrottleReply parses a reply to a throttle ping and returns its
// outcome name, retry_after_ms and rl fields.
func ParseThrottleReply(p []byte) (outcome string, retryAfterMs, r, q int64, hasRL bool) {
	pg := &pinger{}
	pg.parse(p)
	rp := pg.rp
	return [...]string{"none", "admitted", "refused", "refused_conn", "other"}[rp.outcome], rp.retryAfterMs, rp.r, rp.q, rp.hasRL
}

// ThrottleParser returns a reusable reply parser, for allocation tests.
func ThrottleParser() func(p []byte) {
	pg := &pinger{}
	pg.onFrame = pg.parse
	return pg.onFrame
}

// ClassifyCentrifugoForTest names the kind of a Centrifugo frame.
func ClassifyCentrifugoForTest(p []byte) string {
	return [...]string{"market", "subscribe", "unsubscribe", "pong", "error", "notice", "unknown", "ping"}[classifyCentrifugo(p)]
}

// InflaterForTest compresses text as a permessage-deflate server does and
// returns a function inflating it with a client's inflater.
func InflaterForTest(text []byte) func() []byte {
	var buf bytes.Buffer
	fw, _ := flate.NewWriter(&buf, 1)
	fw.Write(text)
	fw.Flush()
	p := bytes.TrimSuffix(buf.Bytes(), []byte(deflateTail))
	var inf inflater
	return func() []byte {
		out, err := inf.inflate(p, 1<<20)
		if err != nil {
			panic(err)
		}
		return out
	}
}

// SeqPrevOf exposes seqPrevOf.
var SeqPrevOf = seqPrevOf
