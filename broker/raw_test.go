package broker_test

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/flate"
)

// rawClient is a websocket client that shows the wire: each frame's first
// byte (FIN, RSV1, opcode) and its payload as sent, so tests can check
// RSV1 and the compressed bytes themselves.
type rawClient struct {
	t    *testing.T
	nc   net.Conn
	br   *bufio.Reader
	resp *http.Response
}

// rawFrame is one server frame as it was on the wire.
type rawFrame struct {
	b0      byte
	payload []byte
}

func (f rawFrame) rsv1() bool { return f.b0&0x40 != 0 }
func (f rawFrame) op() byte   { return f.b0 & 0x0f }

// text returns the message's text, inflated when RSV1 is set.
func (f rawFrame) text(t *testing.T) string {
	t.Helper()
	if !f.rsv1() {
		return string(f.payload)
	}
	r := flate.NewReader(io.MultiReader(bytes.NewReader(f.payload), strings.NewReader("\x00\x00\xff\xff")))
	var out bytes.Buffer
	if _, err := io.Copy(&out, r); err != nil && err != io.ErrUnexpectedEOF {
		t.Fatalf("inflate: %v", err)
	}
	return out.String()
}

// dialRaw upgrades with the given Sec-WebSocket-Extensions offer ("" for
// none); rcvBuf > 0 shrinks the socket's receive buffer first.
func (e *env) dialRaw(extensions string, rcvBuf int) *rawClient {
	e.t.Helper()
	u, _ := url.Parse(e.url)
	d := net.Dialer{Timeout: 5 * time.Second}
	nc, err := d.Dial("tcp", u.Host)
	if err != nil {
		e.t.Fatal(err)
	}
	if rcvBuf > 0 {
		if err := nc.(*net.TCPConn).SetReadBuffer(rcvBuf); err != nil {
			e.t.Fatal(err)
		}
	}
	e.t.Cleanup(func() { nc.Close() })
	var key [16]byte
	_, _ = rand.Read(key[:])
	req := "GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + base64.StdEncoding.EncodeToString(key[:]) + "\r\nSec-WebSocket-Version: 13\r\n"
	if extensions != "" {
		req += "Sec-WebSocket-Extensions: " + extensions + "\r\n"
	}
	if _, err := io.WriteString(nc, req+"\r\n"); err != nil {
		e.t.Fatal(err)
	}
	br := bufio.NewReaderSize(nc, 4096)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		e.t.Fatalf("upgrade: %v %v", resp, err)
	}
	return &rawClient{t: e.t, nc: nc, br: br, resp: resp}
}

// send writes one masked text frame; compressed deflates it (RSV1).
func (c *rawClient) send(text string, compressed bool) {
	c.t.Helper()
	p := []byte(text)
	b0 := byte(0x81)
	if compressed {
		var buf bytes.Buffer
		fw, _ := flate.NewWriter(&buf, 1)
		fw.Write(p)
		fw.Flush()
		p = bytes.TrimSuffix(buf.Bytes(), []byte("\x00\x00\xff\xff"))
		b0 |= 0x40
	}
	c.sendFrame(b0, p)
}

func (c *rawClient) sendFrame(b0 byte, p []byte) {
	c.t.Helper()
	hdr := []byte{b0}
	switch n := len(p); {
	case n < 126:
		hdr = append(hdr, 0x80|byte(n))
	case n < 1<<16:
		hdr = append(hdr, 0x80|126, byte(n>>8), byte(n))
	default:
		hdr = append(hdr, 0x80|127)
		hdr = binary.BigEndian.AppendUint64(hdr, uint64(n))
	}
	mask := [4]byte{1, 2, 3, 4}
	hdr = append(hdr, mask[:]...)
	m := make([]byte, len(p))
	for i := range p {
		m[i] = p[i] ^ mask[i&3]
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.nc.Write(append(hdr, m...)); err != nil {
		c.t.Fatal(err)
	}
}

// next reads the next frame (any opcode), failing after timeout.
func (c *rawClient) next(timeout time.Duration) (rawFrame, error) {
	_ = c.nc.SetReadDeadline(time.Now().Add(timeout))
	var h [2]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		return rawFrame{}, err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var l [2]byte
		if _, err := io.ReadFull(c.br, l[:]); err != nil {
			return rawFrame{}, err
		}
		n = uint64(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		if _, err := io.ReadFull(c.br, l[:]); err != nil {
			return rawFrame{}, err
		}
		n = binary.BigEndian.Uint64(l[:])
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(c.br, p); err != nil {
		return rawFrame{}, err
	}
	return rawFrame{b0: h[0], payload: p}, nil
}

// read returns the next text frame.
func (c *rawClient) read() rawFrame {
	c.t.Helper()
	for {
		f, err := c.next(5 * time.Second)
		if err != nil {
			c.t.Fatalf("read: %v", err)
		}
		if f.op() == 0x1 {
			return f
		}
		if f.op() == 0x8 {
			c.t.Fatalf("closed: %d %q", binary.BigEndian.Uint16(f.payload), f.payload[2:])
		}
	}
}

// expect reads the next text frame and compares its text.
func (c *rawClient) expect(want string) rawFrame {
	c.t.Helper()
	f := c.read()
	if got := f.text(c.t); got != want {
		c.t.Fatalf("got  %s\nwant %s", got, want)
	}
	return f
}

// closeFrame reads until the close frame and returns its code and reason.
func (c *rawClient) closeFrame() (int, string) {
	c.t.Helper()
	for {
		f, err := c.next(15 * time.Second)
		if err != nil {
			c.t.Fatalf("no close frame: %v", err)
		}
		if f.op() == 0x8 {
			return int(binary.BigEndian.Uint16(f.payload)), string(f.payload[2:])
		}
	}
}

func bigBook(n int, pad int) string {
	return fmt.Sprintf(`{"n":%d,"l":"%s"}`, n, strings.Repeat("9", pad))
}
