package fanout

import (
	"time"

	"floodgate/internal/wsframe"
)

// Frame is one outbound market message, encoded once per node as a complete
// websocket text frame: header, then {"channel":"<source>","data":<payload>}.
// A Frame is immutable after it is built; every subscriber's writer copies
// its bytes to the socket.
type Frame struct {
	wire []byte
	recv int64 // unix ns when the node received the message
}

// Wire returns the frame's bytes exactly as they go on the socket. The
// slice is shared: callers must not modify it.
func (f *Frame) Wire() []byte { return f.wire }

// Received returns when the node received the message, in unix ns (0 for
// frames built with NewFrame).
func (f *Frame) Received() int64 { return f.recv }

// Len returns the frame's size on the wire in bytes.
func (f *Frame) Len() int { return len(f.wire) }

// newFrame builds the frame for payload on a channel whose envelope prefix
// is `{"channel":"<source>","data":`. One allocation.
func newFrame(prefix string, payload []byte) *Frame {
	n := len(prefix) + len(payload) + 1
	b := make([]byte, 0, wsframe.HeaderLen(n)+n)
	b = wsframe.AppendHeader(b, wsframe.OpText, n)
	b = append(b, prefix...)
	b = append(b, payload...)
	b = append(b, '}')
	return &Frame{wire: b, recv: time.Now().UnixNano()}
}

// NewFrame builds a frame as the hub would for a message with payload on
// source. It is exported for tests and benchmarks of subscribers.
func NewFrame(source string, payload []byte) *Frame {
	return newFrame(envelopePrefix(source), payload)
}

func envelopePrefix(source string) string {
	return `{"channel":"` + source + `","data":`
}
