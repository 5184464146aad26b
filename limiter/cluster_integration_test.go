//go:build integration

package limiter_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"

	"github.com/redis/go-redis/v9"

	"floodgate/internal/testdeps"
)

// TestIntegrationCluster_CreditsAccuracy runs the three-node accuracy test
// against a real Redis (testdeps.RedisURL: a private redis-server in CI;
// outside CI REDIS_URL when set), under a random key prefix that it
// deletes afterwards.
func TestIntegrationCluster_CreditsAccuracy(t *testing.T) {
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
	runAccuracy(t, rc, prefix)
}
