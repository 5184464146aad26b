//go:build chaos

package chaos_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/redis/go-redis/v9"

	"floodgate/internal/testdeps"
	"floodgate/internal/testdeps/procnode"
)

// The credit run of TestChaosRedisClusterBudgets is the cluster suite's
// (cluster/credits_test.go has the math): C credits per minute for one
// key, spent from 15 connections spread 8/5/2 over three nodes, each
// pinging every fastGap while it gets pongs and every slowGap after a
// RATE_LIMITED, for creditRun. The cluster admits C + C*T/W within 5 %.
const (
	creditsPerMinute = 120
	creditWindow     = time.Minute
	creditRun        = 15 * time.Second
	fastGap          = 200 * time.Millisecond
	slowGap          = 2500 * time.Millisecond
)

// tally is what one pinging connection saw.
type tally struct {
	node     int
	pongs    int
	refusals int
	lastSend time.Time
	lastRecv time.Time
	err      error
}

// pingLoop pings over c until stop, pacing as described above.
func pingLoop(c *websocket.Conn, first, stop time.Time, tl *tally) {
	next := first
	for next.Before(stop) {
		if wait := time.Until(next); wait > 0 {
			time.Sleep(wait) // pacing, not waiting for an event
		}
		sent := time.Now()
		if !sent.Before(stop) {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := c.Write(ctx, websocket.MessageText, []byte(`{"method":"ping"}`))
		var b []byte
		if err == nil {
			_, b, err = c.Read(ctx)
		}
		cancel()
		if err != nil {
			tl.err = err
			return
		}
		tl.lastSend, tl.lastRecv = sent, time.Now()
		var f struct {
			Channel string `json:"channel"`
			Data    struct {
				Code string `json:"code"`
			} `json:"data"`
		}
		_ = json.Unmarshal(b, &f)
		switch {
		case f.Channel == "pong":
			tl.pongs++
			next = sent.Add(fastGap)
		case f.Channel == "error" && f.Data.Code == "RATE_LIMITED":
			tl.refusals++
			next = sent.Add(slowGap)
		default:
			tl.err = fmt.Errorf("unexpected frame %s", b)
			return
		}
	}
}

// dialKey opens a websocket with key on n; it is closed in t.Cleanup.
func dialKey(t *testing.T, n *procnode.Node, key string) *websocket.Conn {
	t.Helper()
	c, err := n.Dial(key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.CloseNow() })
	return c
}

// clusterURL is the go-redis cluster URL of addrs.
func clusterURL(addrs []string) string {
	return "redis://" + addrs[0] + "?addr=" + strings.Join(addrs[1:], "&addr=")
}

// TestChaosRedisClusterBudgets runs three nodes on a three-shard Redis
// Cluster: one key's credits, spent from all three, are admitted within
// 5 % of one budget, by cluster budgets all along (every limiter script
// and transaction stays in one hash slot, or the cluster would refuse it
// and the nodes fall back to local shares). Then the shard holding the key
// is stopped: /readyz says redis within 2 s, and all recovers within 5 s
// of SIGCONT.
func TestChaosRedisClusterBudgets(t *testing.T) {
	nsrv := testdeps.StartNATS(t, nil)
	rc := testdeps.StartRedisCluster(t, nil)
	url := clusterURL(rc.Addrs())
	prefix := "cc" + procnode.RandomToken(4)
	// The key store tags an account's keys by the account, the limiter an
	// identity's by the identity: both spread over the shards. (A
	// namespace may not contain braces.)
	ns := "chaos" + procnode.RandomToken(3) + ":"
	var specs []procnode.Spec
	for i := range 3 {
		specs = append(specs, procnode.Spec{ID: fmt.Sprintf("node%d", i+1), NATSURL: nsrv.URL(), RedisURL: url,
			RedisMode: "cluster", Namespace: ns, Prefix: prefix, ClusterNodes: 3})
	}
	nodes := suite.StartNodes(t, specs...)
	key := nodes[0].CreateKey(t, procnode.NewAccount(), map[string]any{"credits_per_minute": creditsPerMinute})

	perNode := [3]int{8, 5, 2}
	t0 := time.Now()
	var conns []*websocket.Conn
	var connNode []int
	for round := 0; len(conns) < perNode[0]+perNode[1]+perNode[2]; round++ {
		for i, n := range nodes {
			if round < perNode[i] {
				conns = append(conns, dialKey(t, n, key.APIKey))
				connNode = append(connNode, i)
			}
		}
	}
	stop := t0.Add(creditRun)
	tallies := make([]tally, len(conns))
	var wg sync.WaitGroup
	for i, c := range conns {
		tallies[i].node = connNode[i]
		first := time.Now().Add(time.Duration(i) * fastGap / time.Duration(len(conns)))
		wg.Add(1)
		go func() { defer wg.Done(); pingLoop(c, first, stop, &tallies[i]) }()
	}
	wg.Wait()
	var pongs, refusals int
	var lastSend, lastRecv time.Time
	var admitted [3]int
	for i := range tallies {
		tl := &tallies[i]
		if tl.err != nil {
			t.Errorf("connection %d on node%d: %v", i, tl.node+1, tl.err)
		}
		pongs += tl.pongs
		refusals += tl.refusals
		admitted[tl.node] += tl.pongs
		if tl.lastSend.After(lastSend) {
			lastSend = tl.lastSend
		}
		if tl.lastRecv.After(lastRecv) {
			lastRecv = tl.lastRecv
		}
	}
	ideal := creditsPerMinute * (1 + lastSend.Sub(t0).Seconds()/creditWindow.Seconds())
	bound := creditsPerMinute * (1 + lastRecv.Sub(t0).Seconds()/creditWindow.Seconds())
	dev := (float64(pongs) - ideal) / ideal
	t.Logf("figure: redis cluster (3 shards, 3 nodes): admitted %d (per node %v), ideal %.1f, deviation %+.2f %%, %d RATE_LIMITED",
		pongs, admitted, ideal, 100*dev, refusals)
	if float64(pongs) > bound {
		t.Errorf("admitted %d, more than one budget allows (%.1f)", pongs, bound)
	}
	if math.Abs(dev) > 0.05 {
		t.Errorf("admitted %d, %.2f %% off the ideal %.1f (bound: 5 %%)", pongs, 100*dev, ideal)
	}
	for i, n := range nodes {
		if v, ok := n.Metric("floodgate_limiter_cluster_up"); !ok || v != 1 {
			t.Errorf("%s: floodgate_limiter_cluster_up = %v (%v), want 1", n.ID(), v, ok)
		}
		if strings.Contains(n.Tail(400), "enforcing local budget shares") {
			t.Errorf("%s fell back to local budgets during the run: a script or transaction crossed slots?", n.ID())
		}
		if admitted[i] == 0 {
			t.Errorf("%s admitted nothing: the budget was not spread", n.ID())
		}
	}
	// The key's live usage (the peek script) reads across the cluster.
	if status, env, err := nodes[2].Admin("GET", "/admin/v1/keys/"+key.Key.Prefix, nil); err != nil || status != http.StatusOK {
		t.Errorf("key view on node3: %d %+v %v", status, env, err)
	}

	// Stop the shard that holds the key's budget.
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: rc.Addrs()})
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	limKey := strings.NewReplacer("{", "", "}", "").Replace(ns) + "lim:{key:" + key.Key.Prefix + "}:credits"
	m, err := cc.MasterForKey(ctx, limKey)
	if err != nil {
		t.Fatal(err)
	}
	var shard *testdeps.Server
	for _, s := range rc.Nodes() {
		if s.Addr() == m.Options().Addr {
			shard = s
		}
	}
	if shard == nil {
		t.Fatalf("no cluster node at %s", m.Options().Addr)
	}
	if n, err := m.Exists(ctx, limKey).Result(); err != nil || n != 1 {
		t.Errorf("the key's credit cell %s is not on its shard %s: %d %v", limKey, shard.Addr(), n, err)
	}
	pausedAt := time.Now()
	if err := shard.Pause(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = shard.Resume() })
	toNotReady, ok := procnode.Poll(pausedAt, 5*time.Second, func() bool {
		r := nodes[0].Ready()
		return r.Status == http.StatusServiceUnavailable && r.Has("redis")
	})
	if !ok || toNotReady > maxRedisNotReady {
		t.Errorf("node1: /readyz 503 redis after %v with one shard stopped (reached %v), want <= %v", toNotReady, ok, maxRedisNotReady)
	}
	anon := upgrade(nodes[0], "")
	if err := shard.Resume(); err != nil {
		t.Fatal(err)
	}
	resumedAt := time.Now()
	toReady, ok := procnode.Poll(resumedAt, 10*time.Second, func() bool { return nodes[0].Ready().Status == http.StatusOK })
	if !ok || toReady > maxRecover {
		t.Errorf("node1: /readyz 200 after %v (reached %v), want <= %v", toReady, ok, maxRecover)
	}
	t.Logf("figure: redis cluster, the key's shard stopped: /readyz 503 redis after %v, anonymous upgrade %d in %v; resumed: /readyz 200 after %v",
		toNotReady, anon.status, anon.took, toReady)
	if anon.status != http.StatusSwitchingProtocols || anon.took > maxUpgrade {
		t.Errorf("anonymous upgrade with a shard stopped: %d in %v, want 101 within %v", anon.status, anon.took, maxUpgrade)
	}
}
