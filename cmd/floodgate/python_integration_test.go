//go:build integration

package main_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// python returns a python3 that has websockets and nacl (Debian's
// python3-websockets and python3-nacl live in /usr/bin/python3's path).
func python(t *testing.T) string {
	for _, py := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(py, "-c", "import websockets, nacl").Run() == nil {
			return py
		}
	}
	t.Fatal("no python3 with websockets and nacl: apt install python3-websockets python3-nacl (.ci/run does)")
	return ""
}

// TestIntegrationPythonClient drives a broker on the real NATS and Redis the
// way trading clients do: a PyNaCl-signed key creation, then
// websockets.connect(url, extra_headers={"PF-API-KEY": key}), a trade, the
// status endpoint, and a signed revoke that closes the stream with 1008.
func TestIntegrationPythonClient(t *testing.T) {
	natsURL, redisURL := os.Getenv("NATS_URL"), os.Getenv("REDIS_URL")
	if natsURL == "" || redisURL == "" {
		t.Skip("NATS_URL and REDIS_URL not set")
	}
	py := python(t)
	rnd := make([]byte, 4)
	rand.Read(rnd)
	prefix := "it" + hex.EncodeToString(rnd)
	p := startServe(t, "--nats-url", natsURL, "--redis-url", redisURL, "--subject-prefix", prefix)
	client, _ := filepath.Abs("../../examples/floodgate_client.py")
	dir := t.TempDir()
	pyrun := func(args ...string) (string, error) {
		all := append([]string{client}, args...)
		all = append(all, "--api", p.apiURL, "--ws", p.wsURL, "--wallet", filepath.Join(dir, "wallet.key"))
		out, err := exec.Command(py, all...).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	out, err := pyrun("create")
	if err != nil {
		t.Fatalf("create: %v %s", err, out)
	}
	var created struct {
		Success bool
		Data    struct {
			APIKey string `json:"api_key"`
		}
	}
	if json.Unmarshal([]byte(out), &created) != nil || !created.Success {
		t.Fatalf("create: %s", out)
	}
	key := created.Data.APIKey
	if out, err := pyrun("status", key); err != nil || !strings.Contains(out, `"status": "active"`) {
		t.Fatalf("status: %v %s", err, out)
	}

	// Stream trades with the key in PF-API-KEY.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream := exec.CommandContext(ctx, py, client, "stream", key, "--count", "-1", "--symbol", "BTC", "--ws", p.wsURL)
	stdout, _ := stream.StdoutPipe()
	if err := stream.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	expect := func(what string, match func(string) bool, tick func()) {
		t.Helper()
		deadline := time.After(15 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("stream ended waiting for %s", what)
				}
				if match(l) {
					return
				}
			case <-time.After(100 * time.Millisecond):
				if tick != nil {
					tick()
				}
			case <-deadline:
				t.Fatalf("no %s within 15 s", what)
			}
		}
	}
	expect("subscribe ack", func(l string) bool { return strings.HasPrefix(l, `{"channel":"subscribe"`) }, nil)
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	expect("trade", func(l string) bool { return l == `{"channel":"trades","data":[{"s":"BTC","p":"91000"}]}` },
		func() { _ = nc.Publish(prefix+".trades.BTC", []byte(`[{"s":"BTC","p":"91000"}]`)) })

	if out, err := pyrun("revoke", key); err != nil || !strings.Contains(out, `"success": true`) {
		t.Fatalf("revoke: %v %s", err, out)
	}
	expect("close 1008", func(l string) bool { return strings.Contains(l, "1008") && strings.Contains(l, "api key revoked") }, nil)
	_ = stream.Wait()
	if out, _ := pyrun("status", key); !strings.Contains(out, "INVALID_API_KEY") {
		t.Fatalf("status after revoke: %s", out)
	}
}
