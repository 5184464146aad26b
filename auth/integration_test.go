//go:build integration

package auth_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"testing"

	"github.com/redis/go-redis/v9"

	"floodgate/auth"
	"floodgate/auth/storetest"
)

// TestIntegrationRedisStore runs the conformance suite on the Redis named
// by REDIS_URL, each subtest in its own random namespace, deleted after.
func TestIntegrationRedisStore(t *testing.T) {
	url := os.Getenv("REDIS_URL")
	if url == "" {
		t.Skip("REDIS_URL not set")
	}
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
	storetest.Run(t, func(t *testing.T) auth.Store {
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
	})
}
