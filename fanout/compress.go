package fanout

import (
	"fmt"

	"floodgate/internal/wsframe"

	"github.com/klauspost/compress/flate"
)

// CompressionOptions configures permessage-deflate (RFC 7692) of market
// frames. Frames are compressed without context takeover, once per node,
// only for channels that have subscribers who negotiated it.
type CompressionOptions struct {
	// Level is the deflate level, 1 (fastest) to 9. Defaults to 1.
	Level int
	// MinSize is the smallest frame text, in bytes, that is compressed;
	// smaller frames go uncompressed (RSV1 clear) to every subscriber.
	// Defaults to 256.
	MinSize int
}

func (o *CompressionOptions) setDefaults() error {
	if o.Level == 0 {
		o.Level = 1
	}
	if o.Level < 1 || o.Level > 9 {
		return fmt.Errorf("fanout: compression level %d: want 1 to 9", o.Level)
	}
	if o.MinSize <= 0 {
		o.MinSize = 256
	}
	return nil
}

// deflateTail is the empty stored block a sync flush ends with; RFC 7692
// section 7.2.1 removes it from the message (the reader appends it).
const deflateTail = "\x00\x00\xff\xff"

// compressor deflates frame texts. Each goroutine that builds frames (a
// dispatcher, a conflator) owns one: not safe for concurrent use. The
// flate writer (a few hundred KiB) is made on first use.
type compressor struct {
	// Immutable after newCompressor.
	min   int
	level int

	// Owned by the goroutine.
	fw  *flate.Writer
	out appendWriter
}

func newCompressor(o CompressionOptions) *compressor {
	_ = o.setDefaults()
	return &compressor{min: o.MinSize, level: o.Level}
}

// appendWriter is an io.Writer appending to b.
type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// deflateBound is room enough for the deflate of n bytes plus the sync
// flush (stored blocks cost 5 bytes per 64 KiB; level 1 never does worse).
func deflateBound(n int) int { return n + 5*(n>>14+2) + 16 }

// frame compresses text as one message without context takeover and
// returns the complete websocket frame (RSV1 set), built in dst's spare
// capacity when it suffices.
func (c *compressor) frame(dst, text []byte) []byte {
	if cap(dst) >= wsframe.MaxHeaderLen {
		c.out.b = dst[:wsframe.MaxHeaderLen]
	} else {
		c.out.b = make([]byte, wsframe.MaxHeaderLen, wsframe.MaxHeaderLen+deflateBound(len(text)))
	}
	if c.fw == nil {
		c.fw, _ = flate.NewWriter(&c.out, c.level) // level checked in setDefaults
	} else {
		c.fw.Reset(&c.out)
	}
	_, _ = c.fw.Write(text) // appendWriter never fails
	_ = c.fw.Flush()
	b := c.out.b
	c.out.b = nil
	if len(b) >= wsframe.MaxHeaderLen+4 && string(b[len(b)-4:]) == deflateTail {
		b = b[:len(b)-4]
	}
	n := len(b) - wsframe.MaxHeaderLen
	hl := wsframe.HeaderLen(n)
	off := wsframe.MaxHeaderLen - hl
	wsframe.AppendHeader(b[off:off], wsframe.OpText, n)
	b[off] |= wsframe.RSV1
	return b[off:len(b):len(b)]
}
