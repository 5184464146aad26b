//go:build integration

package limiter_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"

	"github.com/redis/go-redis/v9"
)

// TestIntegrationCluster_CreditsAccuracy runs the three-node accuracy test
// against the real Redis of REDIS_URL, under a random key prefix that it
// deletes afterwards.
func TestIntegrationCluster_CreditsAccuracy(t *testing.T) {
	url := os.Getenv("REDIS_URL")
	if url == "" {
		t.Skip("REDIS_URL not set")
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rc := redis.NewClient(opt)
	t.Cleanup(func() { _ = rc.Close() }) // runs after the key cleanup below
	ctx := context.Background()
	if err := rc.Ping(ctx).Err(); err != nil {
		t.Skipf("redis at %s: %v", url, err)
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
