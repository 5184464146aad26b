package procnode

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Spec is how to run one `floodgate serve`.
type Spec struct {
	ID           string // --node-id
	NATSURL      string // --nats-url
	RedisURL     string // --redis-url
	RedisMode    string // --redis-mode; "" leaves the flag out (so older builds start too)
	Namespace    string // --redis-namespace; "" keeps the default
	Prefix       string // --subject-prefix
	ClusterNodes int    // --cluster-nodes; defaults to 1
}

// Node is one running `floodgate serve` child.
type Node struct {
	// Immutable after start
	suite  *Suite
	id     string
	cmd    *exec.Cmd
	wsURL  string // ws://host:port/ws
	apiURL string // http://host:port
	exited chan struct{}

	// Guarded by mu
	mu   sync.Mutex
	logs []string // the last log lines, for failure reports
}

// StartNodes starts a node of every spec in parallel and returns once all
// serve; it fails t when one does not. Every process is killed in
// t.Cleanup.
func (s *Suite) StartNodes(t *testing.T, specs ...Spec) []*Node {
	t.Helper()
	nodes := make([]*Node, len(specs))
	errs := make([]error, len(specs))
	var wg sync.WaitGroup
	for i, sp := range specs {
		wg.Go(func() { nodes[i], errs[i] = s.start(t, sp) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return nodes
}

// start runs floodgate serve on free ports and waits (Options.ReadyTimeout
// at most) for its "floodgate serving" log line. The process is killed in
// t.Cleanup; when the test failed, its last log lines are logged.
func (s *Suite) start(t *testing.T, sp Spec) (*Node, error) {
	dir := t.TempDir()
	if sp.ClusterNodes == 0 {
		sp.ClusterNodes = 1
	}
	args := []string{"serve",
		"--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0",
		"--nats-url", sp.NATSURL, "--redis-url", sp.RedisURL,
		"--admin-token", s.opts.AdminToken, "--node-id", sp.ID, "--subject-prefix", sp.Prefix,
		"--cluster-nodes", strconv.Itoa(sp.ClusterNodes),
		"--data-dir", dir, "--log-format", "json", "--shutdown-grace", "100ms"}
	if s.opts.Config != "" {
		cfg := filepath.Join(dir, "floodgate.yaml")
		if err := os.WriteFile(cfg, []byte(s.opts.Config), 0o600); err != nil {
			return nil, err
		}
		args = append(args, "--config", cfg)
	}
	if sp.RedisMode != "" {
		args = append(args, "--redis-mode", sp.RedisMode)
	}
	if sp.Namespace != "" {
		args = append(args, "--redis-namespace", sp.Namespace)
	}
	cmd := exec.Command(s.opts.Binary, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	n := &Node{suite: s, id: sp.ID, cmd: cmd, exited: make(chan struct{})}
	serving := make(chan [2]string, 1)
	go func() {
		n.scanLog(stderr, serving)
		_ = cmd.Wait()
		close(n.exited)
	}()
	t.Cleanup(func() {
		n.Kill()
		if t.Failed() {
			t.Logf("%s: last log lines:\n%s", sp.ID, n.Tail(failureTail))
		}
	})
	timer := time.NewTimer(s.opts.ReadyTimeout)
	defer timer.Stop()
	select {
	case addrs := <-serving:
		n.wsURL = "ws://" + addrs[0] + "/ws"
		n.apiURL = "http://" + addrs[1]
		return n, nil
	case <-n.exited:
		return nil, fmt.Errorf("%s exited before serving:\n%s", sp.ID, n.Tail(20))
	case <-timer.C:
		return nil, fmt.Errorf("%s did not serve within %v:\n%s", sp.ID, s.opts.ReadyTimeout, n.Tail(20))
	}
}

// Kill sends SIGKILL (if the process still runs) and waits for the exit.
func (n *Node) Kill() {
	select {
	case <-n.exited:
		return
	default:
	}
	_ = n.cmd.Process.Kill() // SIGKILL
	<-n.exited
}

// ID is the node's --node-id.
func (n *Node) ID() string { return n.id }

// WSURL is the node's websocket endpoint, ws://127.0.0.1:PORT/ws.
func (n *Node) WSURL() string { return n.wsURL }

// APIURL is the base of the node's operator API, http://127.0.0.1:PORT.
func (n *Node) APIURL() string { return n.apiURL }
