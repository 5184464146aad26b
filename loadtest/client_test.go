package loadtest_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"floodgate/loadtest"
)

// wsServer runs handler behind a coder/websocket Accept in an httptest
// server and returns its ws:// URL.
func wsServer(t *testing.T, handler func(ctx context.Context, c *websocket.Conn, r *http.Request)) string {
	t.Helper()
	var wg sync.WaitGroup
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		wg.Add(1)
		defer wg.Done()
		defer c.CloseNow()
		c.SetReadLimit(1 << 22)
		handler(r.Context(), c, r)
	}))
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		wg.Wait()
	})
	return "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
}

func dial(t *testing.T, url string, o loadtest.DialOptions) *loadtest.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := loadtest.Dial(ctx, url, o)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func echo(ctx context.Context, c *websocket.Conn, _ *http.Request) {
	for {
		typ, p, err := c.Read(ctx)
		if err != nil {
			return
		}
		if err := c.Write(ctx, typ, p); err != nil {
			return
		}
	}
}

// readOne reads one text message and returns a copy of it.
func readOne(t *testing.T, c *loadtest.Conn) []byte {
	t.Helper()
	var got []byte
	if err := c.ReadMessage(func(p []byte) { got = append([]byte{}, p...) }); err != nil {
		t.Fatalf("ReadMessage: %v", err)
	}
	return got
}

// TestConn_Echo checks masking and every length encoding: coder/websocket
// refuses unmasked client frames, so an echo proves the masking is right.
// A 4 KiB read buffer exercises both the in-buffer and the assembled path.
func TestConn_Echo(t *testing.T) {
	url := wsServer(t, echo)
	c := dial(t, url, loadtest.DialOptions{ReadBufferSize: 4096})
	for _, n := range []int{0, 1, 7, 8, 125, 126, 127, 4095, 4096, 4097, 65535, 65536, 200_000} {
		msg := make([]byte, n)
		for i := range msg {
			msg[i] = 'a' + byte(i%26)
		}
		if err := c.WriteText(msg); err != nil {
			t.Fatalf("WriteText(%d): %v", n, err)
		}
		if got := readOne(t, c); !bytes.Equal(got, msg) {
			t.Fatalf("echo of %d bytes came back as %d bytes", n, len(got))
		}
	}
}

func TestConn_FragmentedAndBinary(t *testing.T) {
	url := wsServer(t, func(ctx context.Context, c *websocket.Conn, _ *http.Request) {
		_ = c.Write(ctx, websocket.MessageBinary, []byte("skip me"))
		w, err := c.Writer(ctx, websocket.MessageText)
		if err != nil {
			return
		}
		for _, part := range []string{"hel", "lo ", strings.Repeat("w", 9000), "orld"} {
			_, _ = w.Write([]byte(part))
		}
		_ = w.Close()
		_ = c.Write(ctx, websocket.MessageText, []byte("after"))
		<-c.CloseRead(ctx).Done()
	})
	c := dial(t, url, loadtest.DialOptions{ReadBufferSize: 4096})
	want := "hello " + strings.Repeat("w", 9000) + "orld"
	if got := readOne(t, c); string(got) != want {
		t.Fatalf("fragmented message: got %d bytes %.20q", len(got), got)
	}
	if got := readOne(t, c); string(got) != "after" {
		t.Fatalf("next message %q", got)
	}
}

// TestConn_PingPong: coder/websocket's Ping returns only once our pong came.
func TestConn_PingPong(t *testing.T) {
	pinged := make(chan error, 1)
	url := wsServer(t, func(ctx context.Context, c *websocket.Conn, _ *http.Request) {
		ctx = c.CloseRead(ctx)
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		err := c.Ping(pctx)
		if err == nil {
			err = c.Write(ctx, websocket.MessageText, []byte("ponged"))
		}
		pinged <- err
		<-ctx.Done()
	})
	c := dial(t, url, loadtest.DialOptions{})
	if got := readOne(t, c); string(got) != "ponged" {
		t.Fatalf("got %q", got)
	}
	if err := <-pinged; err != nil {
		t.Fatalf("server Ping: %v", err)
	}
}

func TestConn_ServerClose(t *testing.T) {
	closed := make(chan error, 1)
	url := wsServer(t, func(ctx context.Context, c *websocket.Conn, _ *http.Request) {
		_ = c.Write(ctx, websocket.MessageText, []byte("bye soon"))
		closed <- c.Close(4001, "slow consumer")
	})
	c := dial(t, url, loadtest.DialOptions{})
	var msgs []string
	err := c.ReadLoop(func(p []byte) { msgs = append(msgs, string(p)) })
	var ce *loadtest.CloseError
	if !errors.As(err, &ce) || ce.Code != 4001 || ce.Reason != "slow consumer" {
		t.Fatalf("ReadLoop = %v, want close 4001", err)
	}
	if len(msgs) != 1 || msgs[0] != "bye soon" {
		t.Fatalf("messages %q", msgs)
	}
	if r := loadtest.FailReason(err); r != "close 4001" {
		t.Fatalf("FailReason = %q", r)
	}
	// The server's Close waits for our close reply.
	if err := <-closed; err != nil {
		t.Fatalf("server Close: %v (no close reply?)", err)
	}
}

func TestConn_ClientClose(t *testing.T) {
	got := make(chan websocket.StatusCode, 1)
	url := wsServer(t, func(ctx context.Context, c *websocket.Conn, _ *http.Request) {
		_, _, err := c.Read(ctx)
		got <- websocket.CloseStatus(err)
	})
	c := dial(t, url, loadtest.DialOptions{})
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if code := <-got; code != websocket.StatusNormalClosure {
		t.Fatalf("server saw close %d", code)
	}
	if err := c.WriteText([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("WriteText after Close = %v", err)
	}
	if err := c.ReadMessage(func([]byte) {}); err == nil {
		t.Fatal("ReadMessage after Close succeeded")
	}
}

func TestDial_HeadersAndSourceAddr(t *testing.T) {
	type seen struct{ key, remote string }
	ch := make(chan seen, 1)
	url := wsServer(t, func(ctx context.Context, c *websocket.Conn, r *http.Request) {
		ch <- seen{r.Header.Get("PF-API-KEY"), r.RemoteAddr}
		echo(ctx, c, r)
	})
	src := netip.MustParseAddr("127.0.0.2")
	c := dial(t, url, loadtest.DialOptions{APIKey: "pk_test_123", LocalAddr: src})
	s := <-ch
	if s.key != "pk_test_123" {
		t.Fatalf("PF-API-KEY = %q", s.key)
	}
	if host, _, _ := net.SplitHostPort(s.remote); host != "127.0.0.2" {
		t.Fatalf("server saw remote %s, want 127.0.0.2", s.remote)
	}
	if got := c.LocalAddr().(*net.TCPAddr).IP.String(); got != "127.0.0.2" {
		t.Fatalf("LocalAddr %s", got)
	}
}

func TestDial_Refused(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/limited":
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = io.WriteString(w, `{"error":"too many connections","code":"TOO_MANY_CONNECTIONS"}`)
		case "/badaccept":
			h, _, _ := w.(http.Hijacker).Hijack()
			_, _ = io.WriteString(h, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: nope\r\n\r\n")
			_ = h.Close()
		default:
			http.Error(w, "nope", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	base := "ws" + strings.TrimPrefix(srv.URL, "http")
	ctx := context.Background()

	_, err := loadtest.Dial(ctx, base+"/limited", loadtest.DialOptions{})
	var he *loadtest.HandshakeError
	if !errors.As(err, &he) || he.Status != 429 || he.Code != "TOO_MANY_CONNECTIONS" || !errors.Is(err, loadtest.ErrHandshake) {
		t.Fatalf("Dial = %v", err)
	}
	if r := loadtest.FailReason(err); r != "http 429 TOO_MANY_CONNECTIONS" {
		t.Fatalf("FailReason = %q", r)
	}
	_, err = loadtest.Dial(ctx, base+"/plain", loadtest.DialOptions{})
	if r := loadtest.FailReason(err); r != "http 503" {
		t.Fatalf("FailReason = %q (%v)", r, err)
	}
	_, err = loadtest.Dial(ctx, base+"/badaccept", loadtest.DialOptions{})
	if r := loadtest.FailReason(err); r != "handshake" {
		t.Fatalf("FailReason = %q (%v)", r, err)
	}
	if _, err = loadtest.Dial(ctx, "http://127.0.0.1:1/ws", loadtest.DialOptions{}); !errors.Is(err, loadtest.ErrUnsupportedScheme) {
		t.Fatalf("Dial http:// = %v", err)
	}

	// A closed port: connection refused.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	_ = l.Close()
	_, err = loadtest.Dial(ctx, "ws://"+addr+"/ws", loadtest.DialOptions{})
	if r := loadtest.FailReason(err); r != "connection refused" {
		t.Fatalf("FailReason = %q (%v)", r, err)
	}
}

// TestDial_Timeout: a server that accepts TCP but never answers the upgrade.
func TestDial_Timeout(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := l.Accept()
		if err == nil {
			_, _ = io.Copy(io.Discard, c)
			_ = c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = loadtest.Dial(ctx, "ws://"+l.Addr().String()+"/ws", loadtest.DialOptions{})
	if r := loadtest.FailReason(err); r != "timeout" {
		t.Fatalf("FailReason = %q (%v)", r, err)
	}
	_ = l.Close()
	wg.Wait()
}
