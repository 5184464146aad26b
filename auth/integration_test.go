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
