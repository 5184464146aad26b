//go:build integration

package limiter_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"floodgate/internal/testdeps"
	"floodgate/limiter"
)

// realRedis returns a client of a real Redis (testdeps.RedisURL: a private
// redis-server in CI; outside CI REDIS_URL when set) and a random key
// prefix whose keys it deletes afterwards.
func realRedis(t *testing.T) (*redis.Client, string) {
	t.Helper()
	url := testdeps.RedisURL(t)
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rc := redis.NewClient(opt)
	t.Cleanup(func() { _ = rc.Close() }) // runs after the key cleanup below
	ctx := context.Background()
	if err := rc.Ping(ctx).Err(); err != nil {
		t.Fatalf("redis at %s: %v", url, err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	prefix := "floodgate-test:" + hex.EncodeToString(b[:]) + ":"
	t.Cleanup(func() {
		iter := rc.Scan(ctx, 0, prefix+"*", 100).Iterator()
		for iter.Next(ctx) {
			rc.Del(ctx, iter.Val())
		}
	})
	return rc, prefix
}

// The cluster-budget tests on a real Redis, as on miniredis in make test.

func TestIntegrationCluster_CreditsAccuracy(t *testing.T) {
	rc, prefix := realRedis(t)
	runAccuracy(t, rc, prefix)
}

func TestIntegrationCluster_ConnectionsAndConnectRate(t *testing.T) {
	rc, prefix := realRedis(t)
	runConnections(t, rc, prefix)
}

func TestIntegrationCluster_QuotaAcrossNodes(t *testing.T) {
	rc, prefix := realRedis(t)
	runQuota(t, rc, prefix)
}

func TestIntegrationCluster_CalendarQuotaAcrossNodes(t *testing.T) {
	rc, prefix := realRedis(t)
	runCalendarQuota(t, rc, prefix)
}

// redisCluster starts a private three-shard Redis Cluster (testdeps) and
// returns a client as the node builds it: context deadlines honoured, no
// retries.
func redisCluster(t *testing.T) (*testdeps.RedisCluster, *redis.ClusterClient) {
	t.Helper()
	rc := testdeps.StartRedisCluster(t, nil)
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: rc.Addrs(), ContextTimeoutEnabled: true,
		MaxRetries: -1, DialTimeout: 500 * time.Millisecond, ReadTimeout: 250 * time.Millisecond, WriteTimeout: 250 * time.Millisecond})
	t.Cleanup(func() { _ = c.Close() })
	return rc, c
}

// The cluster-budget tests on a three-shard Redis Cluster: every script
// (admit, lease, beat, peek) and pipeline must keep each identity's keys
// in one hash slot ({identity}), or the cluster answers CROSSSLOT and the
// nodes fall back to local shares (the runners check they did not).

func TestIntegrationRedisCluster_CreditsAccuracy(t *testing.T) {
	_, c := redisCluster(t)
	runAccuracy(t, c, "floodgate-test:")
}

func TestIntegrationRedisCluster_ConnectionsAndConnectRate(t *testing.T) {
	_, c := redisCluster(t)
	runConnections(t, c, "floodgate-test:")
}

func TestIntegrationRedisCluster_QuotaAcrossNodes(t *testing.T) {
	_, c := redisCluster(t)
	runQuota(t, c, "floodgate-test:")
}

func TestIntegrationRedisCluster_CalendarQuotaAcrossNodes(t *testing.T) {
	_, c := redisCluster(t)
	runCalendarQuota(t, c, "floodgate-test:")
}

// TestIntegrationRedisCluster_IdentitiesSpreadOverShards: the identities'
// keys land on every shard (the prefix carries no hash tag of its own),
// and each identity's keys share one slot.
func TestIntegrationRedisCluster_IdentitiesSpreadOverShards(t *testing.T) {
	rc, c := redisCluster(t)
	l := clusterNodes(t, c, "spread:", 1, fastConns())[0]
	ctx := context.Background()
	for i := range 30 {
		mustAdmit(t, l, keyReq(fmt.Sprintf("Spread%02d", i)), t0)
	}
	if err := l.Health(); err != nil {
		t.Fatal(err)
	}
	shards := map[string]bool{}
	for i := range 30 {
		id := limiter.KeyIdentity(fmt.Sprintf("Spread%02d", i))
		var slot int64 = -1
		for _, suffix := range []string{"conns", "connect", "credits"} {
			k := "spread:{" + id + "}:" + suffix
			s, err := c.ClusterKeySlot(ctx, k).Result()
			if err != nil {
				t.Fatal(err)
			}
			if slot >= 0 && s != slot {
				t.Fatalf("%s in slot %d, its identity's other keys in %d", k, s, slot)
			}
			slot = s
			m, err := c.MasterForKey(ctx, k)
			if err != nil {
				t.Fatal(err)
			}
			if n, err := m.Exists(ctx, k).Result(); err != nil || n != 1 {
				t.Fatalf("%s not on its master %s: %d %v", k, m.Options().Addr, n, err)
			}
			shards[m.Options().Addr] = true
		}
	}
	if len(shards) != len(rc.Nodes()) {
		t.Errorf("30 identities on %d of %d shards", len(shards), len(rc.Nodes()))
	}
}

// TestIntegrationRedisCluster_HungShard: with one shard stopped (SIGSTOP),
// an admission whose identity lives there returns within RedisTimeout on
// local shares, the sync probe (PING on every master) keeps the limiter
// down, and it resumes once the shard answers.
func TestIntegrationRedisCluster_HungShard(t *testing.T) {
	rc, c := redisCluster(t)
	l := clusterNodes(t, c, "hung:", 3, fastConns())[0]
	ctx := context.Background()
	req := keyReq("HungShrd")
	mustAdmit(t, l, req, t0)
	m, err := c.MasterForKey(ctx, "hung:{"+req.Identity+"}:conns")
	if err != nil {
		t.Fatal(err)
	}
	var shard *testdeps.Server
	for _, s := range rc.Nodes() {
		if s.Addr() == m.Options().Addr {
			shard = s
		}
	}
	if err := shard.Pause(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = shard.Resume() })
	start := time.Now()
	mustAdmit(t, l, req, t0)
	took := time.Since(start)
	t.Logf("admission with the identity's shard stopped: %v (RedisTimeout 1 s in these tests)", took)
	if took > 1500*time.Millisecond || l.Health() == nil {
		t.Fatalf("admission took %v, health %v; want local shares within RedisTimeout", took, l.Health())
	}
	if err := l.Sync(ctx, t0.Add(2*time.Second)); err == nil {
		t.Fatal("the probe passed with a shard stopped")
	}
	if err := shard.Resume(); err != nil {
		t.Fatal(err)
	}
	if err := l.Sync(ctx, t0.Add(4*time.Second)); err != nil {
		t.Fatalf("not resumed once the shard answers: %v", err)
	}
}

// BenchmarkIntegrationCluster_RoundTripPerFrame is the baseline that leases
// avoid: one round trip to a real redis-server (loopback) per frame.
//
//	go test -tags integration -run '^$' -bench IntegrationCluster_RoundTrip -benchmem ./limiter
func BenchmarkIntegrationCluster_RoundTripPerFrame(b *testing.B) {
	url := testdeps.RedisURL(b)
	opt, err := redis.ParseURL(url)
	if err != nil {
		b.Fatal(err)
	}
	rc := redis.NewClient(opt)
	b.Cleanup(func() { _ = rc.Close() })
	var r [6]byte
	_, _ = rand.Read(r[:])
	prefix := "floodgate-bench:" + hex.EncodeToString(r[:]) + ":"
	b.Cleanup(func() {
		ctx := context.Background()
		iter := rc.Scan(ctx, 0, prefix+"*", 100).Iterator()
		for iter.Next(ctx) {
			rc.Del(ctx, iter.Val())
		}
	})
	benchRoundTrip(b, rc, prefix)
}
