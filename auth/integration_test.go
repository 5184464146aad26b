//go:build integration

package auth_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"testing"

	"github.com/redis/go-redis/v9"

	"floodgate/auth"
	"floodgate/auth/storetest"
	"floodgate/internal/testdeps"
)

// TestIntegrationRedisStore runs the conformance suite on a real Redis
// (testdeps.RedisURL: a private redis-server in CI; outside CI REDIS_URL
// when set), each subtest in its own random namespace, deleted after.
func TestIntegrationRedisStore(t *testing.T) {
	url := testdeps.RedisURL(t)
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	ctx := context.Background()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("redis at %s: %v", url, err)
	}
	open := func(t *testing.T) auth.Store {
		var b [8]byte
		_, _ = rand.Read(b[:])
		ns := fmt.Sprintf("floodgate-test-%x:", b)
		t.Cleanup(func() {
			iter := rdb.Scan(ctx, 0, ns+"*", 1000).Iterator()
			for iter.Next(ctx) {
				rdb.Del(ctx, iter.Val())
			}
			if err := iter.Err(); err != nil {
				t.Errorf("cleanup %s: %v", ns, err)
			}
		})
		return auth.NewRedisStore(rdb, auth.RedisOptions{Namespace: ns})
	}
	storetest.Run(t, open)
	t.Run("Audit", func(t *testing.T) {
		storetest.RunAudit(t, func(t *testing.T) auth.AuditLog { return open(t).(auth.AuditLog) })
	})
}

// TestIntegrationRedisClusterStore runs the conformance suite on a
// three-shard Redis Cluster that the test starts (testdeps: it fails in
// CI and skips elsewhere when redis-server or redis-cli is missing),
// through go-redis's ClusterClient: every script and transaction of the
// store must stay in one hash slot, or Redis answers CROSSSLOT. Each
// subtest has its own namespace; the suite's accounts and prefixes spread
// its keys over the three shards.
func TestIntegrationRedisClusterStore(t *testing.T) {
	c := testdeps.StartRedisCluster(t, nil)
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	defer rdb.Close()
	ctx := context.Background()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	storetest.Run(t, func(t *testing.T) auth.Store {
		var b [8]byte
		_, _ = rand.Read(b[:])
		s := auth.NewRedisStore(rdb, auth.RedisOptions{Namespace: fmt.Sprintf("fg-cluster-%x:", b)})
		if err := s.Upgrade(ctx); err != nil {
			t.Fatal(err)
		}
		return s
	})
	// The keys of one account really are spread over the shards.
	s := auth.NewRedisStore(rdb, auth.RedisOptions{Namespace: "fg-spread:"})
	for i := 0; i < 30; i++ {
		if err := s.Create(ctx, storetest.NewRecord(fmt.Sprint("acct", i), i), 5); err != nil {
			t.Fatal(err)
		}
	}
	used := 0
	for _, addr := range c.Addrs() {
		n := redis.NewClient(&redis.Options{Addr: addr})
		if k, _ := n.DBSize(ctx).Result(); k > 0 {
			used++
		}
		n.Close()
	}
	if used != 3 {
		t.Fatalf("keys on %d of 3 shards", used)
	}
}
