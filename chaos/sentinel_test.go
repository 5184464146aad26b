//go:build chaos

package chaos_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"floodgate/internal/testdeps"
	"floodgate/internal/testdeps/procnode"
)

// startSentinel runs `redis-server <conf> --sentinel` on a free port,
// watching the master at masterAddr as "mymaster" (quorum 1, down after
// 1 s), and returns its address once it reports the master with replicas
// replicas. It is killed in t.Cleanup.
func startSentinel(t *testing.T, masterAddr string, replicas int) string {
	t.Helper()
	bin := testdeps.Require(t, "redis-server")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	host, mport, _ := net.SplitHostPort(masterAddr)
	dir := t.TempDir()
	conf := filepath.Join(dir, "sentinel.conf")
	body := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor mymaster %s %s 1\n"+
		"sentinel down-after-milliseconds mymaster 1000\nsentinel failover-timeout mymaster 5000\n", port, dir, host, mport)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, conf, "--sentinel")
	out, err := os.Create(filepath.Join(dir, "sentinel.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); out.Close(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "sentinel.log"))
			t.Logf("sentinel output:\n%s", b)
		}
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	sc := redis.NewSentinelClient(&redis.Options{Addr: addr, DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
	defer sc.Close()
	if _, ok := procnode.Poll(time.Now(), 15*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		rs, err := sc.Replicas(ctx, "mymaster").Result()
		return err == nil && len(rs) >= replicas
	}); !ok {
		t.Fatalf("sentinel on %s does not know mymaster and %d replica(s) within 15 s", addr, replicas)
	}
	return addr
}

// TestChaosSentinel runs a node on --redis-mode sentinel (a master, a
// replica and one redis-server --sentinel), kills the master, and checks
// that the node follows the failover: it serves and stores keys again on
// the promoted replica.
func TestChaosSentinel(t *testing.T) {
	nsrv := testdeps.StartNATS(t, nil)
	master := testdeps.StartRedis(t, &testdeps.Options{Args: []string{"--repl-diskless-sync-delay", "0"}})
	replica := testdeps.StartRedis(t, &testdeps.Options{Args: []string{"--replicaof", "127.0.0.1", strconv.Itoa(master.Port())}})
	sentinel := startSentinel(t, master.Addr(), 1)
	url := "redis://" + sentinel + "?master_name=mymaster"
	n := suite.StartNodes(t, procnode.Spec{ID: "node1", NATSURL: nsrv.URL(), RedisURL: url, RedisMode: "sentinel", Prefix: "cs" + procnode.RandomToken(4)})[0]

	used, unused := n.CreateKey(t, procnode.NewAccount(), nil), n.CreateKey(t, procnode.NewAccount(), nil)
	if a := upgrade(n, used.APIKey); a.status != http.StatusSwitchingProtocols {
		t.Fatalf("key upgrade through sentinel mode: %+v", a)
	}
	if r := n.Ready(); r.Status != http.StatusOK {
		t.Fatalf("not ready on sentinel mode: %+v", r)
	}
	// Both keys must be on the replica before the master dies (the
	// replication is asynchronous: Redis does not wait for it).
	mc := redis.NewClient(&redis.Options{Addr: master.Addr()})
	defer mc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if got, err := mc.Do(ctx, "WAIT", 1, 4000).Int(); err != nil || got < 1 {
		t.Fatalf("WAIT for the replica: %d %v", got, err)
	}

	killedAt := time.Now()
	if err := master.Kill(); err != nil {
		t.Fatal(err)
	}
	toCreate, createOK := procnode.Poll(killedAt, 20*time.Second, func() bool {
		_, status, _ := n.TryCreateKey(procnode.NewAccount(), nil)
		return status == http.StatusCreated || status == http.StatusOK
	})
	toKey, keyOK := procnode.Poll(killedAt, 20*time.Second, func() bool {
		return upgrade(n, unused.APIKey).status == http.StatusSwitchingProtocols
	})
	toReady, readyOK := procnode.Poll(killedAt, 20*time.Second, func() bool { return n.Ready().Status == http.StatusOK })
	t.Logf("figure: sentinel failover (down-after 1 s): keys created again after %v, replicated key admitted after %v, /readyz 200 after %v (from the SIGKILL of the master on %s; replica %s)",
		toCreate, toKey, toReady, master.Addr(), replica.Addr())
	if !createOK || !keyOK || !readyOK {
		t.Errorf("the node did not follow the failover within 20 s: create %v, key %v, ready %v", createOK, keyOK, readyOK)
	}
}
