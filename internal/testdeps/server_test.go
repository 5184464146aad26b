package testdeps_test

import (
	"bufio"
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"

	"floodgate/internal/testdeps"
)

// natsAnswers reports whether a NATS server at addr sends its INFO line
// within timeout (a paused one accepts the TCP connection but says nothing).
func natsAnswers(addr string, timeout time.Duration) bool {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReader(conn).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "INFO ")
}

// redisAnswers reports whether the Redis at addr answers PING within
// timeout, on a fresh connection.
func redisAnswers(addr string, timeout time.Duration) bool {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	return err == nil && line == "+PONG\r\n"
}

// mustOK fails the test on a lifecycle error.
func mustOK(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func TestNATS_Lifecycle(t *testing.T) {
	t.Parallel()
	s := testdeps.StartNATS(t, nil)
	if !strings.HasPrefix(s.URL(), "nats://127.0.0.1:") || s.Port() == 4222 || s.PID() == 0 || !s.Running() {
		t.Fatalf("URL %s port %d pid %d running %v", s.URL(), s.Port(), s.PID(), s.Running())
	}

	// JetStream is on, with a file store that Restart keeps.
	nc, err := nats.Connect(s.URL())
	mustOK(t, "connect", err)
	js, err := nc.JetStream()
	mustOK(t, "jetstream", err)
	_, err = js.AddStream(&nats.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Storage: nats.FileStorage})
	mustOK(t, "add stream", err)
	_, err = js.Publish("t.1", []byte("kept"))
	mustOK(t, "publish", err)
	nc.Close()

	mustOK(t, "pause", s.Pause())
	if natsAnswers(s.Addr(), 300*time.Millisecond) {
		t.Fatal("a paused nats-server answered")
	}
	mustOK(t, "resume", s.Resume())
	if !natsAnswers(s.Addr(), 5*time.Second) {
		t.Fatal("a resumed nats-server does not answer")
	}

	port, pid := s.Port(), s.PID()
	mustOK(t, "restart", s.Restart())
	if s.Port() != port || s.PID() == pid || !s.Running() {
		t.Fatalf("after restart: port %d (was %d), pid %d (was %d), running %v", s.Port(), port, s.PID(), pid, s.Running())
	}
	nc, err = nats.Connect(s.URL())
	mustOK(t, "connect after restart", err)
	defer nc.Close()
	js, err = nc.JetStream()
	mustOK(t, "jetstream after restart", err)
	info, err := js.StreamInfo("T")
	mustOK(t, "stream after restart", err)
	if info.State.Msgs != 1 {
		t.Fatalf("stream T has %d messages after restart, want the 1 kept in the store dir", info.State.Msgs)
	}
	nc.Close()

	// Stop reaches a paused process too (SIGTERM, then SIGCONT).
	mustOK(t, "pause", s.Pause())
	mustOK(t, "stop while paused", s.Stop())
	if s.Running() || natsAnswers(s.Addr(), 300*time.Millisecond) {
		t.Fatal("nats-server still answers after Stop")
	}
	if err := s.Pause(); !errors.Is(err, testdeps.ErrNotRunning) {
		t.Fatalf("Pause after Stop: %v, want ErrNotRunning", err)
	}
	mustOK(t, "stop again", s.Stop())

	mustOK(t, "restart after stop", s.Restart())
	mustOK(t, "kill", s.Kill())
	if s.Running() || natsAnswers(s.Addr(), 300*time.Millisecond) {
		t.Fatal("nats-server still answers after Kill")
	}
	if err := s.Resume(); !errors.Is(err, testdeps.ErrNotRunning) {
		t.Fatalf("Resume after Kill: %v, want ErrNotRunning", err)
	}
	mustOK(t, "restart after kill", s.Restart())
	if !natsAnswers(s.Addr(), 5*time.Second) {
		t.Fatal("nats-server restarted after Kill does not answer")
	}
}

func TestRedis_Lifecycle(t *testing.T) {
	t.Parallel()
	s := testdeps.StartRedis(t, nil)
	if !strings.HasPrefix(s.URL(), "redis://127.0.0.1:") || s.Port() == 6379 || s.PID() == 0 {
		t.Fatalf("URL %s port %d pid %d", s.URL(), s.Port(), s.PID())
	}
	opt, err := redis.ParseURL(s.URL())
	mustOK(t, "parse URL", err)
	rc := redis.NewClient(opt)
	defer rc.Close()
	ctx := context.Background()
	mustOK(t, "set", rc.Set(ctx, "k", "v", 0).Err())

	mustOK(t, "pause", s.Pause())
	if redisAnswers(s.Addr(), 300*time.Millisecond) {
		t.Fatal("a paused redis-server answered")
	}
	mustOK(t, "resume", s.Resume())
	if v, err := rc.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("after resume: get k = %q, %v", v, err)
	}

	port, pid := s.Port(), s.PID()
	mustOK(t, "restart", s.Restart())
	if s.Port() != port || s.PID() == pid {
		t.Fatalf("after restart: port %d (was %d), pid %d (was %d)", s.Port(), port, s.PID(), pid)
	}
	// Nothing is persisted: the restarted server is empty.
	if n, err := rc.Exists(ctx, "k").Result(); err != nil || n != 0 {
		t.Fatalf("after restart: exists k = %d, %v; want 0 (no persistence)", n, err)
	}

	mustOK(t, "stop", s.Stop())
	if s.Running() || redisAnswers(s.Addr(), 300*time.Millisecond) {
		t.Fatal("redis-server still answers after Stop")
	}
	mustOK(t, "restart after stop", s.Restart())
	mustOK(t, "kill", s.Kill())
	if s.Running() || redisAnswers(s.Addr(), 300*time.Millisecond) {
		t.Fatal("redis-server still answers after Kill")
	}
	if err := s.Pause(); !errors.Is(err, testdeps.ErrNotRunning) {
		t.Fatalf("Pause after Kill: %v, want ErrNotRunning", err)
	}
	mustOK(t, "restart after kill", s.Restart())
	mustOK(t, "set after restart", rc.Set(ctx, "k", "v2", 0).Err())
}

func TestRedisCluster_Lifecycle(t *testing.T) {
	t.Parallel()
	c := testdeps.StartRedisCluster(t, nil)
	nodes := c.Nodes()
	if len(nodes) != 3 || len(c.Addrs()) != 3 || len(c.URLs()) != 3 {
		t.Fatalf("%d nodes, addrs %v, urls %v", len(nodes), c.Addrs(), c.URLs())
	}
	for i, pid := range c.PIDs() {
		if pid == 0 || pid != nodes[i].PID() {
			t.Fatalf("PIDs %v", c.PIDs())
		}
	}
	rc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	defer rc.Close()
	ctx := context.Background()
	for _, k := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		mustOK(t, "set "+k, rc.Set(ctx, k, k, 0).Err())
	}
	// Every shard serves slots: the keys spread over more than one node.
	shards := 0
	for _, n := range nodes {
		one := redis.NewClient(&redis.Options{Addr: n.Addr()})
		size, err := one.DBSize(ctx).Result()
		one.Close()
		mustOK(t, "dbsize", err)
		if size > 0 {
			shards++
		}
	}
	if shards < 2 {
		t.Fatalf("8 keys on %d shard(s), want a spread", shards)
	}

	// One node paused answers nothing, and serves again when resumed.
	mustOK(t, "pause node 0", nodes[0].Pause())
	if redisAnswers(nodes[0].Addr(), 300*time.Millisecond) {
		t.Fatal("a paused cluster node answered")
	}
	mustOK(t, "resume node 0", nodes[0].Resume())
	mustOK(t, "ok after resume", c.WaitOK(15*time.Second))

	// One node restarted rejoins with its slots (nodes.conf kept).
	port, pid := nodes[1].Port(), nodes[1].PID()
	mustOK(t, "restart node 1", nodes[1].Restart())
	if nodes[1].Port() != port || nodes[1].PID() == pid {
		t.Fatalf("node 1 after restart: port %d (was %d), pid %d (was %d)", nodes[1].Port(), port, nodes[1].PID(), pid)
	}
	mustOK(t, "ok after node restart", c.WaitOK(15*time.Second))

	// One node killed, then back.
	mustOK(t, "kill node 2", nodes[2].Kill())
	if nodes[2].Running() || redisAnswers(nodes[2].Addr(), 300*time.Millisecond) {
		t.Fatal("killed cluster node still answers")
	}
	mustOK(t, "restart node 2", nodes[2].Restart())
	mustOK(t, "ok after kill and restart", c.WaitOK(15*time.Second))

	// The whole cluster, paused, resumed, restarted.
	mustOK(t, "pause cluster", c.Pause())
	mustOK(t, "resume cluster", c.Resume())
	mustOK(t, "restart cluster", c.Restart())
	for _, k := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		mustOK(t, "set "+k+" after cluster restart", rc.Set(ctx, k, k+"2", 0).Err())
	}
	mustOK(t, "kill cluster", c.Kill())
	for i, n := range nodes {
		if n.Running() {
			t.Fatalf("node %d runs after the cluster's Kill", i)
		}
	}
}

func TestStart_Parallel(t *testing.T) {
	t.Parallel()
	// Many servers at once get distinct ports and all answer.
	for i := range 4 {
		t.Run("", func(t *testing.T) {
			t.Parallel()
			var s *testdeps.Server
			if i%2 == 0 {
				s = testdeps.StartNATS(t, nil)
			} else {
				s = testdeps.StartRedis(t, nil)
			}
			if !s.Running() {
				t.Fatalf("server %d not running", i)
			}
		})
	}
}
