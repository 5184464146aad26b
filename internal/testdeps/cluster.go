package testdeps

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// clusterShards is the number of masters of StartRedisCluster.
const clusterShards = 3

// RedisCluster is a private three-shard Redis Cluster (three masters, no
// replicas) on 127.0.0.1.
type RedisCluster struct {
	// Immutable after StartRedisCluster
	nodes []*Server
	opts  Options
}

// StartRedisCluster runs three redis-server processes with
// --cluster-enabled yes on free ports (client port and cluster bus port
// each; --cluster-node-timeout 5000 unless Options.Args overrides it),
// joins them with `redis-cli --cluster create ... --cluster-replicas 0
// --cluster-yes`, and returns once CLUSTER INFO says cluster_state:ok on
// every node. The nodes persist nothing but their nodes.conf, so a
// restarted node rejoins with its slots (and no keys). Missing
// redis-server or redis-cli fails t in CI and skips it elsewhere.
func StartRedisCluster(t testing.TB, opts *Options) *RedisCluster {
	t.Helper()
	cli := Require(t, "redis-cli")
	c := &RedisCluster{opts: opts.withDefaults()}
	for range clusterShards {
		dir := t.TempDir()
		c.nodes = append(c.nodes, startServer(t, spec{
			binary: "redis-server",
			scheme: "redis",
			ports:  2,
			args: func(ports []int) []string {
				return append(redisArgs(dir, ports[0]),
					"--cluster-enabled", "yes",
					"--cluster-config-file", filepath.Join(dir, "nodes.conf"),
					"--cluster-port", strconv.Itoa(ports[1]),
					"--cluster-node-timeout", "5000")
			},
			probe: redisPing,
		}, dir, opts))
	}
	args := []string{"--cluster", "create"}
	args = append(args, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.ReadyTimeout)
	defer cancel()
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("testdeps: redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	if err := c.WaitOK(c.opts.ReadyTimeout); err != nil {
		t.Fatalf("testdeps: %v", err)
	}
	return c
}

// Nodes returns the cluster's three servers, for per-node Pause, Kill,
// Restart and so on. The slice is a copy.
func (c *RedisCluster) Nodes() []*Server { return append([]*Server(nil), c.nodes...) }

// Addrs returns the nodes' client addresses (127.0.0.1:PORT), the seed
// list of a cluster client.
func (c *RedisCluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = n.Addr()
	}
	return addrs
}

// URLs returns the nodes' redis:// URLs.
func (c *RedisCluster) URLs() []string {
	urls := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		urls[i] = n.URL()
	}
	return urls
}

// PIDs returns the nodes' current process ids.
func (c *RedisCluster) PIDs() []int {
	pids := make([]int, len(c.nodes))
	for i, n := range c.nodes {
		pids[i] = n.PID()
	}
	return pids
}

// WaitOK polls CLUSTER INFO on every node every 20 ms until all say
// cluster_state:ok with every slot served and every node known, at most
// timeout.
func (c *RedisCluster) WaitOK(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	for {
		err := c.healthy(min(max(time.Until(deadline), 10*time.Millisecond), time.Second))
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis cluster %v: %w (%v): %v", c.Addrs(), ErrNotReady, timeout, err)
		}
		<-ticker.C
	}
}

// healthy checks CLUSTER INFO once on every node.
func (c *RedisCluster) healthy(timeout time.Duration) error {
	for _, n := range c.nodes {
		info, err := redisDo(n.Addr(), timeout, "CLUSTER", "INFO")
		if err != nil {
			return fmt.Errorf("%s: %w", n.Addr(), err)
		}
		for _, want := range []string{
			"cluster_state:ok",
			"cluster_slots_ok:16384",
			"cluster_known_nodes:" + strconv.Itoa(len(c.nodes)),
		} {
			if !strings.Contains(info, want+"\r\n") {
				return fmt.Errorf("%s: CLUSTER INFO lacks %s", n.Addr(), want)
			}
		}
	}
	return nil
}

// Stop stops every node (see Server.Stop).
func (c *RedisCluster) Stop() error { return c.each((*Server).Stop) }

// Kill kills every node (see Server.Kill).
func (c *RedisCluster) Kill() error { return c.each((*Server).Kill) }

// Pause pauses every node (see Server.Pause).
func (c *RedisCluster) Pause() error { return c.each((*Server).Pause) }

// Resume resumes every node (see Server.Resume).
func (c *RedisCluster) Resume() error { return c.each((*Server).Resume) }

// Restart stops every node, starts them again on their ports, and waits
// (Options.ReadyTimeout) until the cluster is ok again.
func (c *RedisCluster) Restart() error {
	if err := c.Stop(); err != nil {
		return err
	}
	if err := c.each((*Server).Restart); err != nil {
		return err
	}
	return c.WaitOK(c.opts.ReadyTimeout)
}

// each applies f to every node and joins the errors.
func (c *RedisCluster) each(f func(*Server) error) error {
	errs := make([]error, 0, len(c.nodes))
	for _, n := range c.nodes {
		errs = append(errs, f(n))
	}
	return errors.Join(errs...)
}
