package fanout

import (
	"strconv"
	"time"

	"floodgate/internal/wsframe"
)

// Frame is one outbound market message, encoded once per node as a complete
// websocket text frame: header, then {"channel":"<source>","data":<payload>}
// (and ,"seq":n,"prev":m when the channel's route is sequenced: history). When the channel has
// subscribers that negotiated permessage-deflate and the text is at least
// MinCompressSize bytes, the frame also carries the same message
// compressed once (RSV1 set), for all of them. A Frame is immutable after it
// is built; every subscriber's writer copies its bytes to the socket.
type Frame struct {
	wire     []byte
	deflated []byte // nil when not compressed
	recv     int64  // unix ns when the node received the message
	seq      uint64 // history sequence; 0 when the source has none
	prev     uint64 // the previous seq of the channel (0 for snapshots)
}

// Wire returns the frame's bytes exactly as they go on the socket to a
// client without compression. The slice is shared: callers must not modify
// it.
func (f *Frame) Wire() []byte { return f.wire }

// Deflated returns the frame compressed for permessage-deflate clients
// (RSV1 set), or nil when it was not compressed (small, or no subscriber
// asked); such clients then get Wire. Shared, read-only.
func (f *Frame) Deflated() []byte { return f.deflated }

// WireFor returns Deflated when compressed is true and the frame has a
// compressed form, else Wire.
func (f *Frame) WireFor(compressed bool) []byte {
	if compressed && f.deflated != nil {
		return f.deflated
	}
	return f.wire
}

// Received returns when the node received the message, in unix ns (0 for
// frames built with NewFrame).
func (f *Frame) Received() int64 { return f.recv }

// Seq returns the message's history sequence, 0 when it has none.
func (f *Frame) Seq() uint64 { return f.seq }

// Len returns the frame's uncompressed size on the wire in bytes.
func (f *Frame) Len() int { return len(f.wire) }

// message is one NATS message of a channel as the frame builder needs it.
type message struct {
	payload  []byte
	recv     int64
	seq      uint64 // 0: not sequenced
	prev     uint64
	snapshot bool // a snapshot frame: "seq" (when sequenced) and "snapshot":true, no "prev"
}

// tailLen is the length of the fields buildFrame appends after the data:
// `,"seq":<seq>,"prev":<prev>`, `,"seq":<seq>,"snapshot":true` or
// `,"snapshot":true`.
func tailLen(m *message) int {
	n := 0
	if m.seq != 0 {
		n += len(`,"seq":`) + digits(m.seq)
		if !m.snapshot {
			n += len(`,"prev":`) + digits(m.prev)
		}
	}
	if m.snapshot {
		n += len(`,"snapshot":true`)
	}
	return n
}

func digits(u uint64) int {
	n := 1
	for u >= 10 {
		u /= 10
		n++
	}
	return n
}

// buildFrame builds the frame of m on a channel whose envelope prefix is
// `{"channel":"<source>","data":`; compressed asks for the deflated form
// too (made only when the text is at least comp's minimum). One allocation
// for the bytes of both forms plus the struct; comp is the calling
// goroutine's compressor (nil: never compress). Live, conflated, replayed
// and snapshot frames are all built here.
func buildFrame(prefix string, m *message, comp *compressor, compressed bool) *Frame {
	n := len(prefix) + len(m.payload) + 1 + tailLen(m)
	size := wsframe.HeaderLen(n) + n
	compress := compressed && comp != nil && n >= comp.min
	if compress {
		size += wsframe.MaxHeaderLen + deflateBound(n)
	}
	b := make([]byte, 0, size)
	b = wsframe.AppendHeader(b, wsframe.OpText, n)
	start := len(b)
	b = append(b, prefix...)
	b = append(b, m.payload...)
	if m.seq != 0 {
		b = append(b, `,"seq":`...)
		b = strconv.AppendUint(b, m.seq, 10)
		if !m.snapshot {
			b = append(b, `,"prev":`...)
			b = strconv.AppendUint(b, m.prev, 10)
		}
	}
	if m.snapshot {
		b = append(b, `,"snapshot":true`...)
	}
	b = append(b, '}')
	f := &Frame{wire: b[:len(b):len(b)], recv: m.recv, seq: m.seq}
	if !m.snapshot {
		f.prev = m.prev
	}
	if compress {
		f.deflated = comp.frame(b[len(b):], b[start:])
	}
	return f
}

// NewFrame builds a frame as the hub would for a message with payload on
// source, uncompressed. It is exported for tests and benchmarks of
// subscribers.
func NewFrame(source string, payload []byte) *Frame {
	return buildFrame(envelopePrefix(source), &message{payload: payload}, nil, false)
}

// NewCompressedFrame is NewFrame with the compressed form built as the hub
// builds it for deflate subscribers (level 1, texts of at least 256 bytes).
func NewCompressedFrame(source string, payload []byte) *Frame {
	c := newCompressor(CompressionOptions{})
	return buildFrame(envelopePrefix(source), &message{payload: payload, recv: time.Now().UnixNano()}, c, true)
}

func envelopePrefix(source string) string {
	return `{"channel":"` + source + `","data":`
}
