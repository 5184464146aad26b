package main_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"
)

// binary is the floodgate binary built once by TestMain.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "floodgate-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "floodgate")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running `floodgate serve`.
type proc struct {
	cmd     *exec.Cmd
	wsURL   string
	apiURL  string
	natsURL string
	logs    chan map[string]any
	exited  chan error
}

// startServe runs floodgate serve on free ports and waits until it serves.
func startServe(t testing.TB, args ...string) *proc {
	t.Helper()
	all := append([]string{"serve", "--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0",
		"--embedded-nats-listen", "127.0.0.1:0", "--log-format", "json", "--node-id", "test-node",
		"--data-dir", t.TempDir()}, args...)
	cmd := exec.Command(binary, all...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, logs: make(chan map[string]any, 1024), exited: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var ev map[string]any
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				select {
				case p.logs <- ev:
				default:
				}
			}
		}
		p.exited <- cmd.Wait()
		close(p.logs)
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
	})
	deadline := time.After(15 * time.Second)
	for {
		select {
		case ev, ok := <-p.logs:
			if !ok {
				t.Fatal("floodgate exited before serving")
			}
			if ev["message"] == "embedded NATS started; publishers connect here" {
				p.natsURL, _ = ev["url"].(string)
			}
			if ev["message"] == "floodgate serving" {
				p.wsURL = "ws://" + ev["listen"].(string) + "/ws"
				p.apiURL = "http://" + ev["api_listen"].(string)
				return p
			}
		case <-deadline:
			t.Fatal("floodgate did not start serving in 15s")
		}
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServeEndToEndAndGracefulDrain(t *testing.T) {
	p := startServe(t, "--shutdown-grace", "700ms")
	if code, body := get(t, p.apiURL+"/healthz"); code != 200 {
		t.Fatalf("healthz %d %s", code, body)
	}
	if code, body := get(t, p.apiURL+"/readyz"); code != 200 || !strings.Contains(body, "ready") {
		t.Fatalf("readyz %d %s", code, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, p.wsURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte(`{"method":"subscribe","params":{"source":"trades","symbol":"BTC"}}`)); err != nil {
		t.Fatal(err)
	}
	// History is on by default with the embedded NATS: the ack names the
	// channel's latest seq (none yet) and the stream's epoch.
	ackRE := regexp.MustCompile(`^\{"channel":"subscribe","data":\{"source":"trades","symbol":"BTC"\},"seq":0,"epoch":\d+,"rl":\{"r":124,"q":125,"t":1\}\}$`)
	if _, b, err := c.Read(ctx); err != nil || !ackRE.Match(b) {
		t.Fatalf("ack %s %v", b, err)
	}
	// An external publisher on the embedded NATS server.
	nc, err := nats.Connect(p.natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if err := nc.Publish("md.trades.BTC", []byte(`[{"p":"1"}]`)); err != nil {
		t.Fatal(err)
	}
	if _, b, err := c.Read(ctx); err != nil || string(b) != `{"channel":"trades","data":[{"p":"1"}],"seq":1,"prev":0}` {
		t.Fatalf("trade %s %v", b, err)
	}
	_, body := get(t, p.apiURL+"/metrics")
	for _, want := range []string{`floodgate_connections{kind="anonymous"} 1`, "floodgate_fanout_nats_subscriptions 1",
		"floodgate_client_frames_total 1", "floodgate_fanout_latency_seconds_count 1", "floodgate_send_queue_depth_frames_count",
		"floodgate_nats_connected 1", "floodgate_limiter_cluster_up", "floodgate_connections_closed_total{reason=\"slow_consumer\"} 0"} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	// SIGTERM: readyz 503, RECONNECT notice, close 1001 after the grace,
	// exit 0.
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if _, b, err := c.Read(ctx); err != nil || string(b) != `{"channel":"notice","data":{"code":"RECONNECT","in_ms":700}}` {
		t.Fatalf("notice %s %v", b, err)
	}
	if code, body := get(t, p.apiURL+"/readyz"); code != 503 || !strings.Contains(body, "draining") {
		t.Fatalf("readyz while draining %d %s", code, body)
	}
	_, _, err = c.Read(ctx)
	if websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Fatalf("close: %v", err)
	}
	select {
	case err := <-p.exited:
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("floodgate did not exit after drain")
	}
}

func TestServeHelpListsFlagsAndEnv(t *testing.T) {
	out, err := exec.Command(binary, "serve", "--help").CombinedOutput()
	if err != nil {
		t.Fatal(err, string(out))
	}
	for _, want := range []string{"--listen", "--api-listen", "--nats-url", "--embedded-nats-listen", "--subject-prefix",
		"--demo-feed", "--config", "--log-level", "--log-format", "--shutdown-grace", "--node-id", "FLOODGATE_LISTEN", "FLOODGATE_NATS_URL"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("serve --help lacks %s", want)
		}
	}
}

func TestServeRejectsBadConfigNamingField(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "bad.yaml")
	os.WriteFile(cfg, []byte("sources:\n  sources:\n    - name: \"a.b\"\n"), 0o600)
	out, err := exec.Command(binary, "serve", "--config", cfg, "--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0", "--embedded-nats-listen", "127.0.0.1:0", "--data-dir", dir).CombinedOutput()
	if err == nil || !strings.Contains(string(out), `sources[0].name "a.b"`) {
		t.Fatalf("err %v out %s", err, out)
	}
}

func TestEnvVariablesSetFlags(t *testing.T) {
	cmd := exec.Command(binary, "serve", "--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0", "--embedded-nats-listen", "127.0.0.1:0", "--data-dir", t.TempDir())
	cmd.Env = append(os.Environ(), "FLOODGATE_LOG_LEVEL=shouting")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), `--log-level "shouting"`) {
		t.Fatalf("env not applied: %v %s", err, out)
	}
}

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("limits:\n  tiers:\n    key:\n      credits: 600\nsources:\n  prefix: pf\n"), 0o600)
	if out, err := exec.Command(binary, "serve", "--check-config", "--config", good).CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "config ok" {
		t.Fatalf("good config: %v %s", err, out)
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("limits:\n  tiers:\n    key:\n      credits: -5\n"), 0o600)
	out, err := exec.Command(binary, "serve", "--check-config", "--config", bad).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "tiers.key.credits = -5") {
		t.Fatalf("bad config: %v %s", err, out)
	}
	// The history: the flag's values, and the section checked when it is on.
	if out, err := exec.Command(binary, "serve", "--check-config", "--history", "sometimes").CombinedOutput(); err == nil ||
		!strings.Contains(string(out), `--history "sometimes": want auto, on or off`) {
		t.Fatalf("bad --history: %v %s", err, out)
	}
	hist := filepath.Join(dir, "hist.yaml")
	os.WriteFile(hist, []byte("history:\n  max_age: 0s\n"), 0o600)
	if out, err := exec.Command(binary, "serve", "--check-config", "--config", hist).CombinedOutput(); err == nil ||
		!strings.Contains(string(out), "history.max_age = 0s") {
		t.Fatalf("bad history section: %v %s", err, out)
	}
}

// TestSIGHUPReloadsLimitsWithoutDroppingConnections: a live connection
// sees the new credit budget after SIGHUP; an invalid file changes nothing.
func TestSIGHUPReloadsLimitsWithoutDroppingConnections(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "floodgate.yaml")
	os.WriteFile(cfg, []byte("limits:\n  tiers:\n    anonymous:\n      credits: 125\n"), 0o600)
	p := startServe(t, "--config", cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, p.wsURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	ping := func() string {
		t.Helper()
		if err := c.Write(ctx, websocket.MessageText, []byte(`{"method":"ping"}`)); err != nil {
			t.Fatal(err)
		}
		_, b, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if got := ping(); !strings.Contains(got, `"q":125`) {
		t.Fatalf("before reload: %s", got)
	}
	waitLog := func(msg string) {
		t.Helper()
		for {
			select {
			case ev, ok := <-p.logs:
				if !ok {
					t.Fatal("floodgate exited")
				}
				if ev["message"] == msg {
					return
				}
			case <-ctx.Done():
				t.Fatalf("no %q log", msg)
			}
		}
	}
	os.WriteFile(cfg, []byte("limits:\n  tiers:\n    anonymous:\n      credits: 500\n"), 0o600)
	p.cmd.Process.Signal(syscall.SIGHUP)
	waitLog("config reloaded: tiers and costs")
	if got := ping(); !strings.Contains(got, `"q":500`) {
		t.Fatalf("after reload: %s", got)
	}
	os.WriteFile(cfg, []byte("limits:\n  tiers:\n    anonymous:\n      credits: -1\n"), 0o600)
	p.cmd.Process.Signal(syscall.SIGHUP)
	waitLog("reload refused; the running config stays")
	if got := ping(); !strings.Contains(got, `"q":500`) {
		t.Fatalf("after a bad reload: %s", got)
	}
}

// TestStartupErrorsExitCleanly: a listener that cannot bind is an error
// naming the flag, exit status 1, no panic.
func TestStartupErrorsExitCleanly(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cmd := exec.Command(binary, "serve", "--listen", ln.Addr().String(), "--api-listen", "127.0.0.1:0",
		"--embedded-nats-listen", "127.0.0.1:0", "--data-dir", t.TempDir())
	out, err := cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != 1 || strings.Contains(string(out), "panic") || !strings.Contains(string(out), "--listen") {
		t.Fatalf("exit %d: %v\n%s", cmd.ProcessState.ExitCode(), err, out)
	}
}
