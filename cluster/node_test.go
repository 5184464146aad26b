//go:build cluster

package cluster_test

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// adminToken is the operator token of every node.
const adminToken = "cluster-admin-token-0123456789" // at least 16 characters

// nodeCount is the size of every cluster.
const nodeCount = 3

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

// cluster is the nodes of one test on one NATS and one Redis.
type cluster struct {
	nodes   []*node
	natsURL string
	prefix  string // subject prefix, random per cluster
}

// subject is the NATS subject of source trades, symbol BTC.
func (c *cluster) subject() string { return c.prefix + ".trades.BTC" }

// randomToken returns n random bytes in hex.
func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// startCluster starts nodeCount nodes against natsURL and the Redis of the
// environment, in parallel, and waits until all serve.
func startCluster(t *testing.T, natsURL, redisURL string) *cluster {
	t.Helper()
	c := &cluster{natsURL: natsURL, prefix: "ct" + randomToken(6), nodes: make([]*node, nodeCount)}
	errs := make([]error, nodeCount)
	var wg sync.WaitGroup
	for i := range nodeCount {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.nodes[i], errs[i] = startNode(t, fmt.Sprintf("node%d", i+1), natsURL, redisURL, c.prefix)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	t.Logf("cluster: subject prefix %s, nats %s", c.prefix, natsURL)
	return c
}

// startNode runs floodgate serve on free ports and waits (15 s at most)
// for its "floodgate serving" log event. The process is killed in
// t.Cleanup; when the test failed, its last log lines are printed.
func startNode(t *testing.T, id, natsURL, redisURL, prefix string) (*node, error) {
	cmd := exec.Command(binary, "serve",
		"--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0",
		"--nats-url", natsURL, "--redis-url", redisURL,
		"--admin-token", adminToken, "--node-id", id, "--subject-prefix", prefix, "--cluster-nodes", "3",
		"--data-dir", t.TempDir(), "--log-format", "json", "--shutdown-grace", "100ms")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	n := &node{id: id, cmd: cmd, exited: make(chan struct{})}
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
			t.Logf("%s: last log lines:\n%s", id, n.tail(30))
		}
	})
	select {
	case addrs := <-serving:
		n.wsURL = "ws://" + addrs[0] + "/ws"
		n.apiURL = "http://" + addrs[1]
		return n, nil
	case <-n.exited:
		return nil, fmt.Errorf("%s exited before serving:\n%s", id, n.tail(20))
	case <-time.After(15 * time.Second):
		return nil, fmt.Errorf("%s did not serve within 15 s:\n%s", id, n.tail(20))
	}
}

func (n *node) addLog(line string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.logs = append(n.logs, line)
	if len(n.logs) > 200 {
		n.logs = append(n.logs[:0], n.logs[100:]...)
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
