package node_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"floodgate/node"
	"floodgate/node/nodetest"

	"github.com/coder/websocket"
)

// The HTTP servers of a node against raw sockets: timeouts, header sizes,
// one request per socket on the websocket listener, and the cap of
// pending sockets per IP (issue 11, "HTTP servers").

// startNode runs a node with cfg changed by mod (test defaults for the
// rest, admin token set).
func startNode(t testing.TB, mod func(*node.Config)) *nodetest.Node {
	t.Helper()
	f := node.DefaultFile()
	cfg := node.Config{File: &f, AdminToken: adminToken}
	if mod != nil {
		mod(&cfg)
	}
	return nodetest.Start(t, cfg)
}

// upgradeRequest is a websocket upgrade request with extra header lines.
func upgradeRequest(extra ...string) string {
	return "GET /ws HTTP/1.1\r\nHost: floodgate.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" + strings.Join(extra, "") + "\r\n"
}

// rawConn is a client socket that speaks HTTP by hand.
type rawConn struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, c: c, br: bufio.NewReader(c)}
}

func (r *rawConn) send(s string) {
	r.t.Helper()
	if _, err := io.WriteString(r.c, s); err != nil {
		r.t.Fatal(err)
	}
}

// response reads one response (body included).
func (r *rawConn) response() *http.Response {
	r.t.Helper()
	_ = r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(r.br, nil)
	if err != nil {
		r.t.Fatalf("read response: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body = io.NopCloser(strings.NewReader(string(body)))
	return resp
}

// closedWithin reports whether the server closes the socket within d (EOF
// or reset, with no more bytes), and after how long.
func (r *rawConn) closedWithin(d time.Duration) (bool, time.Duration) {
	start := time.Now()
	_ = r.c.SetReadDeadline(start.Add(d))
	b := make([]byte, 1)
	n, err := r.br.Read(b)
	took := time.Since(start)
	var ne net.Error
	if n > 0 || (errors.As(err, &ne) && ne.Timeout()) {
		return false, took
	}
	return true, took
}

func bodyOf(resp *http.Response) string {
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestWebsocketListenerClosesEveryAnswerButAnUpgrade: a refused upgrade,
// a 404, a redirect of the mux, OPTIONS *, a non-upgrade GET /ws and a
// POST: each answered with Connection: close and the socket closed by the
// server at once. (Before: redirects and OPTIONS kept the socket open.)
func TestWebsocketListenerClosesEveryAnswerButAnUpgrade(t *testing.T) {
	n := startNode(t, nil)
	for _, tc := range []struct {
		name, req string
		status    int
	}{
		{"invalid key", upgradeRequest("PF-API-KEY: Unknown1_2222222222222222222222\r\n"), 401},
		{"origin", upgradeRequest("Origin: https://evil.example\r\n"), 403},
		{"not found", "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", 404},
		{"redirect", "GET //ws HTTP/1.1\r\nHost: x\r\n\r\n", 307},
		{"dot segments", "GET /ws/../ws HTTP/1.1\r\nHost: x\r\n\r\n", 307},
		{"options", "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", 200},
		{"no upgrade", "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n", 426},
		{"post", "POST /ws HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 404},
		{"keep-alive asked", "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n", 404},
	} {
		c := dialRaw(t, n.WSAddr())
		c.send(tc.req)
		resp := c.response()
		if resp.StatusCode != tc.status || !resp.Close { // resp.Close: the answer said Connection: close
			t.Errorf("%s: %d, Connection: close %v; want %d and close", tc.name, resp.StatusCode, resp.Close, tc.status)
		}
		if closed, took := c.closedWithin(2 * time.Second); !closed || took > time.Second {
			t.Errorf("%s: socket closed %v after %v; want closed within 1 s", tc.name, closed, took)
		}
	}
}

// TestOneSocketCarriesOneRefusal: refused upgrades pipelined on one
// keep-alive socket get one answer, then the socket closes (before: 15,000
// refusals in 1.9 s on one socket).
func TestOneSocketCarriesOneRefusal(t *testing.T) {
	n := startNode(t, nil)
	c := dialRaw(t, n.WSAddr())
	req := upgradeRequest("PF-API-KEY: Unknown1_2222222222222222222222\r\n")
	c.send(strings.Repeat(req, 1000))
	if resp := c.response(); resp.StatusCode != 401 {
		t.Fatalf("first answer %d", resp.StatusCode)
	}
	if closed, took := c.closedWithin(2 * time.Second); !closed {
		t.Fatalf("socket still open %v after the first refusal", took)
	}
}

// TestHeaderSizeAndTimeouts: 16 KiB of headers pass, more than 20 KiB get
// 431 on both listeners; headers that do not arrive within HeaderTimeout
// close the socket; an idle keep-alive socket of the API listener closes
// after IdleTimeout.
func TestHeaderSizeAndTimeouts(t *testing.T) {
	n := startNode(t, func(c *node.Config) { c.IdleTimeout, c.HeaderTimeout = 500*time.Millisecond, 500*time.Millisecond })
	pad := func(k int) string { return "X-Pad: " + strings.Repeat("a", k<<10) + "\r\n" }
	// 15 KiB: the upgrade works.
	c, resp, err := websocket.Dial(context.Background(), n.WSURL, &websocket.DialOptions{HTTPHeader: http.Header{"X-Pad": {strings.Repeat("a", 15<<10)}}})
	if err != nil {
		t.Fatalf("upgrade with 15 KiB of headers: %v", err)
	}
	c.CloseNow()
	_ = resp
	for _, addr := range []string{n.WSAddr(), n.APIAddr()} {
		rc := dialRaw(t, addr)
		rc.send(upgradeRequest(pad(21)))
		if resp := rc.response(); resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("%s: 21 KiB of headers: %d, want 431", addr, resp.StatusCode)
		}
		rc = dialRaw(t, addr)
		rc.send(upgradeRequest(pad(70)))
		if resp := rc.response(); resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("%s: 70 KiB of headers: %d, want 431", addr, resp.StatusCode)
		}
		// Slow headers: the socket closes after HeaderTimeout.
		rc = dialRaw(t, addr)
		rc.send("GET /healthz HTTP/1.1\r\nHost: x\r\n")
		if closed, took := rc.closedWithin(3 * time.Second); !closed || took > 2*time.Second {
			t.Errorf("%s: slow headers: closed %v after %v", addr, closed, took)
		}
	}
	// Idle keep-alive on the API listener.
	rc := dialRaw(t, n.APIAddr())
	rc.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp := rc.response(); resp.StatusCode != 200 || resp.Close {
		t.Fatalf("healthz: %d %v", resp.StatusCode, resp.Header)
	}
	if closed, took := rc.closedWithin(3 * time.Second); !closed || took > 2*time.Second {
		t.Fatalf("idle keep-alive socket: closed %v after %v", closed, took)
	}
}

func pendingConfig(max int) func(*node.Config) {
	return func(c *node.Config) { c.File.Limits.Node.MaxPendingPerIP = max }
}

// TestPendingSocketsCappedPerIP: an IP holds at most max_pending_per_ip
// sockets that have not sent a whole request; the next is refused at
// once (429 TOO_MANY_PENDING, closed). A socket stops counting when its
// request is read or it closes; upgraded sessions never count; trusted
// proxies are exempt; a reload changes the cap.
func TestPendingSocketsCappedPerIP(t *testing.T) {
	n := startNode(t, pendingConfig(8))
	refused := func() float64 { return metricValue(t, n, "floodgate_ws_pending_refused_total") }
	// 20 upgraded sessions first: they do not count.
	for i := 0; i < 20; i++ {
		c, _, err := websocket.Dial(context.Background(), n.WSURL, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.CloseNow() })
	}
	var idle []*rawConn
	for i := 0; i < 8; i++ {
		idle = append(idle, dialRaw(t, n.WSAddr()))
	}
	eventually(t, "8 pending sockets", func() bool { return metricValue(t, n, "floodgate_ws_pending_sockets") == 8 })
	over := dialRaw(t, n.WSAddr())
	resp := over.response()
	if resp.StatusCode != 429 || !resp.Close || resp.Header.Get("Retry-After") != "1" ||
		bodyOf(resp) != `{"error":"too many unfinished connections from this IP","code":"TOO_MANY_PENDING"}`+"\n" {
		t.Fatalf("9th pending socket: %d %v", resp.StatusCode, resp.Header)
	}
	if closed, _ := over.closedWithin(2 * time.Second); !closed {
		t.Fatal("refused socket left open")
	}
	if refused() != 1 {
		t.Fatalf("refused metric %v", refused())
	}
	// One pending socket sends its request: it is answered, and makes room.
	idle[0].send("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp := idle[0].response(); resp.StatusCode != 404 {
		t.Fatalf("request of a pending socket: %d", resp.StatusCode)
	}
	eventually(t, "7 pending sockets", func() bool { return metricValue(t, n, "floodgate_ws_pending_sockets") == 7 })
	ok := dialRaw(t, n.WSAddr())
	ok.send("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp := ok.response(); resp.StatusCode != 404 {
		t.Fatalf("socket after one left: %d", resp.StatusCode)
	}
	// One closes: room again; a websocket client connects fine.
	idle[1].c.Close()
	eventually(t, "6 pending sockets", func() bool { return metricValue(t, n, "floodgate_ws_pending_sockets") == 6 })
	c, _, err := websocket.Dial(context.Background(), n.WSURL, nil)
	if err != nil {
		t.Fatalf("upgrade with 6 pending: %v", err)
	}
	c.CloseNow()
	// A reload lowers the cap for new sockets.
	f := node.DefaultFile()
	f.Limits.Node.MaxPendingPerIP = 2
	if err := n.Reload(f); err != nil {
		t.Fatal(err)
	}
	if resp := dialRaw(t, n.WSAddr()).response(); resp.StatusCode != 429 {
		t.Fatalf("after lowering the cap: %d", resp.StatusCode)
	}
}

// TestTrustedProxiesHaveNoPendingCap: the sockets of a trusted proxy are
// many clients; they are not capped.
func TestTrustedProxiesHaveNoPendingCap(t *testing.T) {
	n := startNode(t, func(c *node.Config) {
		pendingConfig(4)(c)
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	var conns []*rawConn
	for i := 0; i < 40; i++ {
		conns = append(conns, dialRaw(t, n.WSAddr()))
	}
	for i, c := range conns {
		c.send("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp := c.response(); resp.StatusCode != 404 {
			t.Fatalf("socket %d through the proxy: %d", i, resp.StatusCode)
		}
	}
}

// TestRefusedSocketsAreReleased: 500 sockets that each get one refusal
// and then idle are all closed by the server within 1 s of their refusal,
// and the node's goroutines come back to where they were (the figure of
// docs/security.md with 5,000 sockets is BenchmarkFigure_RefusedSockets).
func TestRefusedSocketsAreReleased(t *testing.T) {
	n := startNode(t, nil)
	r := refusalFlood(t, n, 500, 32)
	if r.open > 0 || r.maxClose > time.Second {
		t.Fatalf("%d of 500 sockets left open; slowest close %v after its refusal", r.open, r.maxClose)
	}
}

// floodResult is what refusalFlood saw.
type floodResult struct {
	statuses map[int]int
	open     int           // sockets still open 2 s after their refusal
	maxClose time.Duration // slowest close after a refusal
}

// refusalFlood opens total sockets from this IP, workers at a time, each
// sending one request that is refused (an unknown key, a bad origin, a
// plain GET, a 404, in turn), reading the answer and then idling until
// the server closes it.
func refusalFlood(t testing.TB, n *nodetest.Node, total, workers int) floodResult {
	reqs := []string{
		upgradeRequest("PF-API-KEY: Unknown1_2222222222222222222222\r\n"),
		upgradeRequest("Origin: https://evil.example\r\n"),
		"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
	}
	var mu sync.Mutex
	res := floodResult{statuses: map[int]int{}}
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				c, err := net.DialTimeout("tcp", n.WSAddr(), 5*time.Second)
				if err != nil {
					t.Error(err)
					return
				}
				_, _ = io.WriteString(c, reqs[i%len(reqs)])
				br := bufio.NewReader(c)
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				resp, err := http.ReadResponse(br, nil)
				status := 0
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					status = resp.StatusCode
				}
				at := time.Now()
				_ = c.SetReadDeadline(at.Add(2 * time.Second))
				_, err = br.ReadByte()
				took := time.Since(at)
				var ne net.Error
				stillOpen := errors.As(err, &ne) && ne.Timeout()
				c.Close()
				mu.Lock()
				res.statuses[status]++
				if stillOpen {
					res.open++
				}
				res.maxClose = max(res.maxClose, took)
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < total; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	t.Logf("%d refusals: statuses %v, open after 2 s: %d, slowest close %v", total, res.statuses, res.open, res.maxClose)
	return res
}

// eventually polls cond until it holds, for up to 5 s.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// metricValue returns a series of n's registry, by name and label pairs
// "k=v" (a histogram's sample count; 0 when absent).
func metricValue(t testing.TB, n *nodetest.Node, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := n.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, l := range labels {
				k, v, _ := strings.Cut(l, "=")
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == k && lp.GetValue() == v {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			var val float64
			switch {
			case m.Counter != nil:
				val = m.Counter.GetValue()
			case m.Gauge != nil:
				val = m.Gauge.GetValue()
			case m.Histogram != nil:
				val = float64(m.Histogram.GetSampleCount())
			}
			return val
		}
	}
	return 0
}
