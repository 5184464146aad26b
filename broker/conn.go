package broker

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"floodgate/internal/wsframe"
)

const (
	// readBufferSize is the bufio.Reader each connection reads through.
	// Client frames are small; larger ones are read in several calls.
	readBufferSize = 1024
	// controlBufferSize is coder/websocket's write buffer. Only control
	// frames (at most 2+125 bytes) are written through it, so each is one
	// socket write.
	controlBufferSize = 256
)

// wireConn is the socket of one session. Every write to it, from our
// writer or from coder/websocket (pong replies, close frames), holds mu for
// the duration of the write, so frames from the two never interleave. A
// write deadline keeps a stuck peer from holding a writer forever: it is
// refreshed only when less than half of WriteTimeout is left (moving a
// deadline costs a runtime timer update), so a write that starts always has
// between WriteTimeout/2 and WriteTimeout to finish.
type wireConn struct {
	net.Conn

	// Immutable after creation.
	writeTimeout time.Duration

	// Guarded by mu: serialises socket writes.
	mu        sync.Mutex
	deadline  time.Time // current write deadline
	closeSent bool      // a close frame went out: no data frame may follow
}

// Write writes data frames (the session writer's batches). After a close
// frame was sent it fails with net.ErrClosed: nothing may follow a close.
func (c *wireConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closeSent {
		return 0, net.ErrClosed
	}
	return c.writeLocked(p)
}

func (c *wireConn) writeLocked(p []byte) (int, error) {
	if now := time.Now(); c.deadline.Sub(now) < c.writeTimeout/2 {
		c.deadline = now.Add(c.writeTimeout)
		if err := c.Conn.SetWriteDeadline(c.deadline); err != nil {
			return 0, err
		}
	}
	return c.Conn.Write(p)
}

// controlWriter is where coder/websocket's write buffer flushes: control
// frames only (pong, ping, close), each flushed whole in one Write. It
// notes when the close frame goes out.
type controlWriter struct{ c *wireConn }

func (w controlWriter) Write(p []byte) (int, error) {
	w.c.mu.Lock()
	defer w.c.mu.Unlock()
	if len(p) > 0 && p[0]&0x0F == wsframe.OpClose {
		w.c.closeSent = true
	}
	return w.c.writeLocked(p)
}

// hijackWriter wraps the upgrade's ResponseWriter so that coder/websocket's
// Accept gets our wireConn and small buffers instead of net/http's 4 KiB
// ones.
type hijackWriter struct {
	http.ResponseWriter
	writeTimeout time.Duration
	conn         *wireConn // set by Hijack
}

var errNoHijack = errors.New("broker: response writer cannot hijack")

// Hijack implements http.Hijacker.
func (h *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := h.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errNoHijack
	}
	c, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	wc := &wireConn{Conn: c, writeTimeout: h.writeTimeout}
	h.conn = wc
	var r io.Reader = wc
	size := readBufferSize
	pending := brw.Reader.Buffered()
	if pending > 0 {
		// The client pipelined bytes behind its handshake: carry them
		// over into our reader's buffer, where coder/websocket finds them.
		b, _ := brw.Reader.Peek(pending)
		r = io.MultiReader(bytes.NewReader(bytes.Clone(b)), wc)
		size = max(size, pending)
	}
	br := bufio.NewReaderSize(r, size)
	if pending > 0 {
		if _, err := br.Peek(pending); err != nil {
			c.Close()
			return nil, nil, err
		}
	}
	return wc, bufio.NewReadWriter(br, bufio.NewWriterSize(controlWriter{wc}, controlBufferSize)), nil
}

// Unwrap lets http.ResponseController reach the original writer.
func (h *hijackWriter) Unwrap() http.ResponseWriter { return h.ResponseWriter }
