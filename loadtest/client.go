package loadtest

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"floodgate/internal/httpx"

	"github.com/klauspost/compress/flate"
)

// Websocket opcodes (RFC 6455 section 5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xa
)

// Close status codes used by the client (RFC 6455 section 7.4).
const (
	CloseNormal     = 1000 // sent by Close
	CloseNoStatus   = 1005 // a close frame without a code
	closeProtoError = 1002
)

// acceptGUID is appended to Sec-WebSocket-Key (RFC 6455 section 1.3).
const acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// DialOptions configure Dial. The zero value is a usable default.
type DialOptions struct {
	// APIKey is sent as the PF-API-KEY header when not empty.
	APIKey string

	// LocalAddr is the source address of the TCP connection, e.g. 127.0.0.2
	// to spread connections over the loopback range when one address runs out
	// of ports. Defaults to the zero Addr: the kernel chooses.
	LocalAddr netip.Addr

	// ReadBufferSize is the size of the buffered reader in bytes. A text
	// frame that fits is handed to the callback straight from the buffer.
	// Defaults to 64 KiB.
	ReadBufferSize int

	// MaxMessageSize is the largest message ReadMessage accepts, in bytes.
	// Defaults to 16 MiB.
	MaxMessageSize int

	// TLSConfig is used for wss URLs. Defaults to a config with the URL's
	// host as ServerName.
	TLSConfig *tls.Config

	// Deflate offers permessage-deflate (RFC 7692) as browsers do; when the
	// server accepts, compressed messages are inflated before the callback
	// (the client itself sends uncompressed frames). Defaults to false.
	Deflate bool
}

// CloseError is returned by ReadMessage when the server sent a close frame.
// The client has already answered it with the same code.
type CloseError struct {
	Code   int    // the status code, CloseNoStatus (1005) if the frame had none
	Reason string // the UTF-8 reason, possibly empty
}

func (e *CloseError) Error() string {
	return fmt.Sprintf("loadtest: websocket closed %d %q", e.Code, e.Reason)
}

// HandshakeError is returned by Dial when the server refused the upgrade.
// It matches ErrHandshake with errors.Is.
type HandshakeError struct {
	Status  int    // HTTP status; 0 when the response was not a valid upgrade
	Code    string // the "code" of a JSON error body, if any
	Message string // the "error" of a JSON error body, or what was wrong
}

func (e *HandshakeError) Error() string {
	return fmt.Sprintf("loadtest: websocket handshake: status %d %s %s", e.Status, e.Code, e.Message)
}

// Unwrap makes a HandshakeError match ErrHandshake.
func (e *HandshakeError) Unwrap() error { return ErrHandshake }

// Conn is a minimal client-side websocket connection over a net.Conn, built
// for load generation: one reader goroutine calls ReadMessage or ReadLoop;
// writes (WriteText, Close, and the pongs the reader sends) may come from any
// goroutine. About ReadBufferSize + 200 bytes per connection when idle.
type Conn struct {
	// Immutable after Dial.
	nc     net.Conn
	br     *bufio.Reader
	maxMsg int

	// Owned by the reader.
	msg     []byte // assembly buffer: fragmented or larger than br
	msgOp   byte   // opcode of the message being assembled, 0 if none
	msgRSV1 bool   // the message being assembled is compressed
	ctl     [125]byte
	closed  bool // a close frame was received
	deflate bool // permessage-deflate was negotiated (immutable after Dial)
	inf     inflater

	msgWire int // wire bytes of the message being read or just handed to fn

	// Shared: bytes of data frames read (headers and payloads as on the
	// wire).
	wireIn atomic.Int64

	// Guarded by wmu.
	wmu       sync.Mutex
	wbuf      []byte
	closeSent bool
}

// Dial connects to a ws:// or wss:// URL and performs the opening handshake.
// ctx bounds the whole dial and handshake; it does not affect the Conn after
// Dial returns. A refused upgrade is a *HandshakeError.
func Dial(ctx context.Context, rawURL string, o DialOptions) (*Conn, error) {
	if o.ReadBufferSize <= 0 {
		o.ReadBufferSize = 64 << 10
	}
	if o.MaxMessageSize <= 0 {
		o.MaxMessageSize = 16 << 20
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("loadtest: %w", err)
	}
	host := u.Host
	switch u.Scheme {
	case "ws":
		if u.Port() == "" {
			host = net.JoinHostPort(u.Hostname(), "80")
		}
	case "wss":
		if u.Port() == "" {
			host = net.JoinHostPort(u.Hostname(), "443")
		}
	default:
		return nil, ErrUnsupportedScheme
	}
	d := net.Dialer{}
	if o.LocalAddr.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: o.LocalAddr.AsSlice()}
	}
	nc, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, err
	}
	// Abort the handshake's blocking I/O when ctx ends.
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	c, err := handshake(ctx, nc, u, o)
	if !stop() || err != nil {
		_ = nc.Close()
		if err == nil || ctx.Err() != nil {
			return nil, errors.Join(ctx.Err(), err)
		}
		return nil, err
	}
	return c, nil
}

func handshake(ctx context.Context, nc net.Conn, u *url.URL, o DialOptions) (*Conn, error) {
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
		defer func() { _ = nc.SetDeadline(time.Time{}) }()
	}
	if u.Scheme == "wss" {
		cfg := o.TLSConfig
		if cfg == nil {
			cfg = &tls.Config{ServerName: u.Hostname()}
		}
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, err
		}
		nc = tc
	}
	var key [16]byte
	_, _ = rand.Read(key[:])
	secKey := base64.StdEncoding.EncodeToString(key[:])

	var req strings.Builder
	fmt.Fprintf(&req, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nUser-Agent: floodgate-load\r\n",
		u.RequestURI(), u.Host, secKey)
	if o.APIKey != "" {
		fmt.Fprintf(&req, "PF-API-KEY: %s\r\n", o.APIKey)
	}
	if o.Deflate {
		req.WriteString("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n")
	}
	req.WriteString("\r\n")
	if _, err := io.WriteString(nc, req.String()); err != nil {
		return nil, err
	}

	br := bufio.NewReaderSize(nc, o.ReadBufferSize)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		_ = resp.Body.Close()
		he := &HandshakeError{Status: resp.StatusCode}
		var jb struct {
			Error string `json:"error"`
			Code  string `json:"code"`
		}
		if json.Unmarshal(body, &jb) == nil {
			he.Code, he.Message = jb.Code, jb.Error
		}
		return nil, he
	}
	sum := sha1.Sum([]byte(secKey + acceptGUID))
	switch {
	case !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket"):
		return nil, &HandshakeError{Status: resp.StatusCode, Message: "missing Upgrade: websocket"}
	case !httpx.HasToken(resp.Header, "Connection", "upgrade"):
		return nil, &HandshakeError{Status: resp.StatusCode, Message: "missing Connection: upgrade"}
	case resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(sum[:]):
		return nil, &HandshakeError{Status: resp.StatusCode, Message: "bad Sec-WebSocket-Accept"}
	}
	deflate := o.Deflate && strings.HasPrefix(resp.Header.Get("Sec-WebSocket-Extensions"), "permessage-deflate")
	return &Conn{nc: nc, br: br, maxMsg: o.MaxMessageSize, deflate: deflate}, nil
}

// MessageWireLen is the size on the wire (headers and payload, compressed
// or not) of the message being handed to the read callback; call it from
// the callback.
func (c *Conn) MessageWireLen() int { return c.msgWire }

// Deflated reports whether permessage-deflate was negotiated.
func (c *Conn) Deflated() bool { return c.deflate }

// WireBytes returns the bytes of data frames read so far, as they were on
// the wire (compressed when the server compressed them). Safe for
// concurrent use.
func (c *Conn) WireBytes() int64 { return c.wireIn.Load() }

// SetReadDeadline sets the deadline of the reads under ReadMessage; a read
// that hits it fails with a timeout, after which the connection's framing
// is undefined: close it.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.nc.SetReadDeadline(t) }

// LocalAddr returns the local network address of the connection.
func (c *Conn) LocalAddr() net.Addr { return c.nc.LocalAddr() }

// WriteText writes p as one masked text frame. Safe for concurrent use; it
// blocks until the frame is written to the socket. 0 allocations once the
// write buffer has grown to the frame size.
func (c *Conn) WriteText(p []byte) error { return c.writeFrame(opText, p) }

// writeFrame writes one masked frame with FIN set.
func (c *Conn) writeFrame(op byte, p []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closeSent {
		return net.ErrClosed
	}
	b := append(c.wbuf[:0], 0x80|op)
	n := len(p)
	switch {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n < 1<<16:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	key := mrand.Uint32()
	b = binary.BigEndian.AppendUint32(b, key)
	start := len(b)
	b = append(b, p...)
	maskBytes(b[start:], key)
	c.wbuf = b
	if op == opClose {
		c.closeSent = true
	}
	_, err := c.nc.Write(b)
	if cap(c.wbuf) > 64<<10 {
		c.wbuf = nil // keep large subscribe bursts from pinning memory
	}
	return err
}

// maskBytes XORs p with the 4-byte key in network order (RFC 6455 5.3).
func maskBytes(p []byte, key uint32) {
	var k [4]byte
	binary.BigEndian.PutUint32(k[:], key)
	k8 := uint64(binary.LittleEndian.Uint32(k[:]))
	k8 |= k8 << 32
	i := 0
	for ; i+8 <= len(p); i += 8 {
		binary.LittleEndian.PutUint64(p[i:], binary.LittleEndian.Uint64(p[i:])^k8)
	}
	for ; i < len(p); i++ {
		p[i] ^= k[i&3]
	}
}

// Close sends a close frame with code 1000 and closes the socket. It does not
// wait for the server's close frame; a reader blocked in ReadMessage returns
// an error. Safe for concurrent use and idempotent.
func (c *Conn) Close() error { return c.CloseWith(CloseNormal, "") }

// CloseWith sends a close frame with code and reason (at most 123 bytes)
// unless one was sent already, then closes the socket.
func (c *Conn) CloseWith(code int, reason string) error {
	var p [125]byte
	binary.BigEndian.PutUint16(p[:], uint16(code))
	n := 2 + copy(p[2:], reason)
	_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	_ = c.writeFrame(opClose, p[:n])
	return c.nc.Close()
}

// ReadLoop calls ReadMessage until it returns an error, and returns it: a
// *CloseError when the server closed the connection, net.ErrClosed (wrapped)
// after Close, io.EOF or another error when the socket failed.
func (c *Conn) ReadLoop(fn func(p []byte)) error {
	for {
		if err := c.ReadMessage(fn); err != nil {
			return err
		}
	}
}

// ReadMessage reads frames until one complete text message has been passed
// to fn, answering pings with pongs and skipping pongs and binary messages on
// the way. p is valid only during the call to fn, which must not retain it.
// A close frame is answered and returned as a *CloseError.
//
// 0 allocations per message when the message is a single frame no larger
// than ReadBufferSize; larger or fragmented messages are assembled in a
// buffer that is kept for the next one.
func (c *Conn) ReadMessage(fn func(p []byte)) error {
	for {
		done, err := c.readFrame(fn)
		if err != nil || done {
			return err
		}
	}
}

// readFrame reads one frame; done reports that a text message went to fn.
func (c *Conn) readFrame(fn func(p []byte)) (done bool, err error) {
	if c.closed {
		return false, net.ErrClosed
	}
	h, err := c.br.Peek(2)
	if err != nil {
		if c.br.Buffered() > 0 {
			err = noEOF(err)
		}
		return false, err
	}
	b0, b1 := h[0], h[1]
	fin, op := b0&0x80 != 0, b0&0x0f
	masked := b1&0x80 != 0
	hlen := 2
	switch b1 & 0x7f {
	case 126:
		hlen += 2
	case 127:
		hlen += 8
	}
	if masked {
		hlen += 4
	}
	if h, err = c.br.Peek(hlen); err != nil {
		return false, noEOF(err)
	}
	var n uint64
	switch b1 & 0x7f {
	case 126:
		n = uint64(binary.BigEndian.Uint16(h[2:]))
	case 127:
		n = binary.BigEndian.Uint64(h[2:])
	default:
		n = uint64(b1 & 0x7f)
	}
	var key uint32
	if masked {
		key = binary.BigEndian.Uint32(h[hlen-4:])
	}
	rsv1 := b0&0x40 != 0
	if b0&0x30 != 0 || rsv1 && (!c.deflate || op >= opClose || op == opContinuation) {
		return false, c.protocolError("reserved bits set")
	}
	if op >= opClose {
		if !fin || n > 125 {
			return false, c.protocolError("bad control frame")
		}
		if _, err = c.br.Discard(hlen); err != nil {
			return false, err
		}
		return false, c.control(op, int(n), masked, key)
	}
	if n > uint64(c.maxMsg) || uint64(len(c.msg))+n > uint64(c.maxMsg) {
		return false, ErrMessageTooLarge
	}
	switch {
	case op == opContinuation && c.msgOp == 0:
		return false, c.protocolError("continuation without a message")
	case op != opContinuation && c.msgOp != 0:
		return false, c.protocolError("new message inside a fragmented one")
	case op != opContinuation && op != opText && op != opBinary:
		return false, c.protocolError("unknown opcode")
	}
	if _, err = c.br.Discard(hlen); err != nil {
		return false, err
	}
	size := int(n)
	c.wireIn.Add(int64(hlen + size))
	if op != opContinuation {
		c.msgWire = 0
	}
	c.msgWire += hlen + size

	// Fast path: a whole text message that fits in the reader's buffer.
	if fin && op == opText && size <= c.br.Size() {
		p, err := c.br.Peek(size)
		if err != nil {
			return false, noEOF(err)
		}
		if masked {
			maskBytes(p, key)
		}
		if rsv1 {
			text, err := c.inf.inflate(p, c.maxMsg)
			if err != nil {
				return false, c.protocolError("bad compressed message")
			}
			p = text
		}
		fn(p)
		_, _ = c.br.Discard(size)
		return true, nil
	}

	// Slow path: assemble in c.msg.
	if op != opContinuation {
		c.msgOp = op
		c.msgRSV1 = rsv1
		c.msg = c.msg[:0]
	}
	start := len(c.msg)
	c.msg = grow(c.msg, size)
	if _, err = io.ReadFull(c.br, c.msg[start:]); err != nil {
		return false, noEOF(err)
	}
	if masked {
		maskBytes(c.msg[start:], key)
	}
	if !fin {
		return false, nil
	}
	op, c.msgOp = c.msgOp, 0
	if op != opText {
		return false, nil
	}
	if c.msgRSV1 {
		text, err := c.inf.inflate(c.msg, c.maxMsg)
		if err != nil {
			return false, c.protocolError("bad compressed message")
		}
		fn(text)
		return true, nil
	}
	fn(c.msg)
	if cap(c.msg) > 1<<20 {
		c.msg = nil
	}
	return true, nil
}

// noEOF turns io.EOF inside a frame into io.ErrUnexpectedEOF.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// grow extends b by n bytes, reallocating only when the capacity is short.
func grow(b []byte, n int) []byte {
	if cap(b)-len(b) < n {
		nb := make([]byte, len(b), 2*cap(b)+n)
		copy(nb, b)
		b = nb
	}
	return b[:len(b)+n]
}

// control handles a ping, pong or close frame whose header was consumed.
func (c *Conn) control(op byte, n int, masked bool, key uint32) error {
	p := c.ctl[:n]
	if _, err := io.ReadFull(c.br, p); err != nil {
		return noEOF(err)
	}
	if masked {
		maskBytes(p, key)
	}
	switch op {
	case opPing:
		return c.writeFrame(opPong, p)
	case opPong:
		return nil
	case opClose:
		c.closed = true
		ce := &CloseError{Code: CloseNoStatus}
		switch {
		case n == 1:
			ce.Code = closeProtoError
		case n >= 2:
			ce.Code = int(binary.BigEndian.Uint16(p))
			ce.Reason = string(p[2:])
		}
		reply := p[:min(n, 2)]
		_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
		_ = c.writeFrame(opClose, reply)
		_ = c.nc.Close()
		return ce
	}
	return c.protocolError("unknown control opcode")
}

// protocolError closes the connection with 1002 and returns ErrProtocol.
func (c *Conn) protocolError(what string) error {
	_ = c.CloseWith(closeProtoError, what)
	c.closed = true
	return fmt.Errorf("%w: %s", ErrProtocol, what)
}

// inflater inflates permessage-deflate messages (no context takeover) into
// a reused buffer: 0 allocations per message once grown.
type inflater struct {
	fr  io.ReadCloser // a flate reader, made on first use, Reset per message
	src tailReader
	out []byte
}

// tailReader reads p, then the 4 bytes RFC 7692 removed from the message.
// It is an io.ByteReader, so the flate reader reads it directly instead of
// wrapping it in a new bufio.Reader per message.
type tailReader struct {
	p    []byte
	tail int
}

const deflateTail = "\x00\x00\xff\xff"

func (t *tailReader) ReadByte() (byte, error) {
	if len(t.p) > 0 {
		b := t.p[0]
		t.p = t.p[1:]
		return b, nil
	}
	if t.tail >= len(deflateTail) {
		return 0, io.EOF
	}
	t.tail++
	return deflateTail[t.tail-1], nil
}

func (t *tailReader) Read(b []byte) (int, error) {
	if len(t.p) > 0 {
		n := copy(b, t.p)
		t.p = t.p[n:]
		return n, nil
	}
	if t.tail >= len(deflateTail) {
		return 0, io.EOF
	}
	n := copy(b, deflateTail[t.tail:])
	t.tail += n
	return n, nil
}

// inflate returns the text of compressed message p, valid until the next
// call; more than limit bytes is an error.
func (f *inflater) inflate(p []byte, limit int) ([]byte, error) {
	f.src = tailReader{p: p}
	if f.fr == nil {
		f.fr = flate.NewReader(&f.src)
	} else if err := f.fr.(flate.Resetter).Reset(&f.src, nil); err != nil {
		return nil, err
	}
	out := f.out[:0]
	for {
		if len(out) == cap(out) {
			out = append(out, 0)[:len(out)]
		}
		n, err := f.fr.Read(out[len(out):cap(out)])
		out = out[:len(out)+n]
		if len(out) > limit {
			return nil, ErrMessageTooLarge
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	f.out = out
	return out, nil
}
