//go:build chaos

package chaos_test

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"floodgate/internal/testdeps"
	"floodgate/internal/testdeps/procnode"
)

// The credit run of TestChaosRedisClusterBudgets is the cluster suite's
// (procnode.SpendCredits has the math): C credits per minute for one key,
// spent from 15 connections spread 8/5/2 over three nodes for creditRun.
// The cluster admits C + C*T/W within 5 %.
const (
	creditsPerMinute = 120
	creditRun        = 15 * time.Second
)

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

	r := procnode.SpendCredits(t, nodes, []int{8, 5, 2}, key.APIKey, creditsPerMinute, creditRun)
	t.Logf("figure: redis cluster (3 shards, 3 nodes): admitted %d (per node %v), ideal %.1f, deviation %+.2f %%, %d RATE_LIMITED",
		r.Pongs, r.Admitted, r.Ideal, 100*r.Dev, r.Refusals)
	if float64(r.Pongs) > r.Bound {
		t.Errorf("admitted %d, more than one budget allows (%.1f)", r.Pongs, r.Bound)
	}
	if math.Abs(r.Dev) > 0.05 {
		t.Errorf("admitted %d, %.2f %% off the ideal %.1f (bound: 5 %%)", r.Pongs, 100*r.Dev, r.Ideal)
	}
	for i, n := range nodes {
		if v, ok := n.Metric("floodgate_limiter_cluster_up"); !ok || v != 1 {
			t.Errorf("%s: floodgate_limiter_cluster_up = %v (%v), want 1", n.ID(), v, ok)
		}
		if strings.Contains(n.Tail(400), "enforcing local budget shares") {
			t.Errorf("%s fell back to local budgets during the run: a script or transaction crossed slots?", n.ID())
		}
		if r.Admitted[i] == 0 {
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
