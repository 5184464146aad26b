//go:build chaos

package chaos_test

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mr-tron/base58"
)

// adminToken is the operator token of every node.
const adminToken = "chaos-admin-token"

// httpClient serves the operator API and the upgrades; TestMain closes
// its idle connections before the leak check.
var httpClient = &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}

// chaosConfig lifts the connect rates out of the way: the tests open many
// connections from one IP and key on purpose.
const chaosConfig = `limits:
  tiers:
    anonymous: {connects: 100000, connect_window: 5m}
    key: {connects: 100000, connect_window: 5m}
`

// nodeSpec is how to run one `floodgate serve`.
type nodeSpec struct {
	id           string
	natsURL      string
	redisURL     string
	redisMode    string // "" leaves the flag out (so older builds start too)
	namespace    string // --redis-namespace; "" keeps the default
	prefix       string // --subject-prefix
	clusterNodes int
}

// node is one running `floodgate serve` child.
type node struct {
	// Immutable after startNode
	id     string
	cmd    *exec.Cmd
	wsURL  string // ws://host:port/ws
	apiURL string // http://host:port
	exited chan struct{}

	// Guarded by mu
	mu   sync.Mutex
	logs []string // the last log lines, for failure reports
}

// startNodes starts the nodes of specs in parallel and waits until all
// serve.
func startNodes(t *testing.T, specs ...nodeSpec) []*node {
	t.Helper()
	nodes := make([]*node, len(specs))
	errs := make([]error, len(specs))
	var wg sync.WaitGroup
	for i, sp := range specs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nodes[i], errs[i] = startNode(t, sp)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return nodes
}

// startNode runs floodgate serve on free ports and waits (15 s at most)
// for its "floodgate serving" log line. The process is killed in
// t.Cleanup; when the test failed, its last log lines are printed.
func startNode(t *testing.T, sp nodeSpec) (*node, error) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "floodgate.yaml")
	if err := os.WriteFile(cfg, []byte(chaosConfig), 0o600); err != nil {
		return nil, err
	}
	if sp.clusterNodes == 0 {
		sp.clusterNodes = 1
	}
	args := []string{"serve",
		"--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0",
		"--nats-url", sp.natsURL, "--redis-url", sp.redisURL, "--config", cfg,
		"--admin-token", adminToken, "--node-id", sp.id, "--subject-prefix", sp.prefix,
		"--cluster-nodes", strconv.Itoa(sp.clusterNodes),
		"--data-dir", dir, "--log-format", "json", "--shutdown-grace", "100ms"}
	if sp.redisMode != "" {
		args = append(args, "--redis-mode", sp.redisMode)
	}
	if sp.namespace != "" {
		args = append(args, "--redis-namespace", sp.namespace)
	}
	cmd := exec.Command(binary, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	n := &node{id: sp.id, cmd: cmd, exited: make(chan struct{})}
	serving := make(chan [2]string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			n.addLog(line)
			var ev struct {
				Message   string `json:"message"`
				Listen    string `json:"listen"`
				APIListen string `json:"api_listen"`
			}
			if json.Unmarshal([]byte(line), &ev) == nil && ev.Message == "floodgate serving" {
				select {
				case serving <- [2]string{ev.Listen, ev.APIListen}:
				default:
				}
			}
		}
		_ = cmd.Wait()
		close(n.exited)
	}()
	t.Cleanup(func() {
		n.kill()
		if t.Failed() {
			t.Logf("%s: last log lines:\n%s", sp.id, n.tail(40))
		}
	})
	select {
	case addrs := <-serving:
		n.wsURL = "ws://" + addrs[0] + "/ws"
		n.apiURL = "http://" + addrs[1]
		return n, nil
	case <-n.exited:
		return nil, fmt.Errorf("%s exited before serving:\n%s", sp.id, n.tail(20))
	case <-time.After(15 * time.Second):
		return nil, fmt.Errorf("%s did not serve within 15 s:\n%s", sp.id, n.tail(20))
	}
}

func (n *node) addLog(line string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.logs = append(n.logs, line)
	if len(n.logs) > 400 {
		n.logs = append(n.logs[:0], n.logs[200:]...)
	}
}

func (n *node) tail(k int) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	from := max(len(n.logs)-k, 0)
	return strings.Join(n.logs[from:], "\n")
}

// kill sends SIGKILL (if still running) and waits for the exit.
func (n *node) kill() {
	select {
	case <-n.exited:
		return
	default:
	}
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.exited
}

// randomToken returns n random bytes in hex.
func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newAccount returns the base58 public key of a fresh random wallet.
func newAccount() string {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return base58.Encode(pub)
}

// envelope is the REST response envelope.
type envelope struct {
	Success bool            `json:"success"`
	Data    json.RawMessage `json:"data"`
	Error   *string         `json:"error"`
	Code    *string         `json:"code"`
}

// call sends an HTTP request to n's API listener (with the admin token)
// and decodes the envelope; it also returns the raw body.
func call(n *node, method, path string, body any) (int, envelope, error) {
	var rd io.Reader = http.NoBody
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, envelope{}, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, n.apiURL+path, rd)
	if err != nil {
		return 0, envelope{}, err
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, envelope{}, err
	}
	defer resp.Body.Close()
	var env envelope
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		return resp.StatusCode, env, fmt.Errorf("%s %s: decode: %w", method, path, err)
	}
	return resp.StatusCode, env, nil
}

// createdKey is the data of POST /admin/v1/keys.
type createdKey struct {
	APIKey string `json:"api_key"`
	Key    struct {
		Prefix string `json:"prefix"`
	} `json:"key"`
}

// createKey creates a key for account through n (limits nil: the tier's).
func createKey(t *testing.T, n *node, account string, limits map[string]any) createdKey {
	t.Helper()
	k, status, err := tryCreateKey(n, account, limits)
	if err != nil {
		t.Fatalf("create key on %s: %d %v", n.id, status, err)
	}
	return k
}

// tryCreateKey is createKey returning the failure.
func tryCreateKey(n *node, account string, limits map[string]any) (createdKey, int, error) {
	body := map[string]any{"account": account}
	if limits != nil {
		body["limits"] = limits
	}
	status, env, err := call(n, "POST", "/admin/v1/keys", body)
	if err != nil {
		return createdKey{}, status, err
	}
	if status != http.StatusCreated && status != http.StatusOK {
		return createdKey{}, status, fmt.Errorf("HTTP %d %s", status, env.Data)
	}
	var k createdKey
	if err := json.Unmarshal(env.Data, &k); err != nil || k.APIKey == "" || k.Key.Prefix == "" {
		return createdKey{}, status, fmt.Errorf("data %s: %v", env.Data, err)
	}
	return k, status, nil
}

// revoke revokes prefix through n's operator API and returns how long the
// call took.
func revoke(t *testing.T, n *node, prefix string) time.Duration {
	t.Helper()
	start := time.Now()
	status, env, err := call(n, "PATCH", "/admin/v1/keys/"+prefix, map[string]any{"status": "revoked"})
	took := time.Since(start)
	if err != nil || status != http.StatusOK {
		t.Fatalf("revoke %s on %s: %d %+v %v (after %v)", prefix, n.id, status, env, err, took)
	}
	return took
}

// readiness is one /readyz answer.
type readiness struct {
	status  int
	reasons []string
}

func (r readiness) has(reason string) bool {
	for _, x := range r.reasons {
		if x == reason {
			return true
		}
	}
	return false
}

// ready asks n's /readyz (a zero status on a transport error).
func ready(n *node) readiness {
	resp, err := httpClient.Get(n.apiURL + "/readyz")
	if err != nil {
		return readiness{}
	}
	defer resp.Body.Close()
	var body struct {
		Reasons []string `json:"reasons"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return readiness{status: resp.StatusCode, reasons: body.Reasons}
}

// metric returns the value of the sample named exactly name (with its
// labels, if any) on n's /metrics, and whether it was there.
func metric(n *node, name string) (float64, bool) {
	resp, err := httpClient.Get(n.apiURL + "/metrics")
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v, err == nil
		}
	}
	return 0, false
}

// poll calls cond every 20 ms until it is true or timeout passes, and
// returns how long that took from start (and false on timeout).
func poll(start time.Time, timeout time.Duration, cond func() bool) (time.Duration, bool) {
	deadline := start.Add(timeout)
	for {
		if cond() {
			return time.Since(start), true
		}
		if time.Now().After(deadline) {
			return time.Since(start), false
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
}
