package auth_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"floodgate/auth"
	"floodgate/auth/storetest"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

func TestStore_Bolt(t *testing.T)      { storetest.Run(t, storetest.OpenBolt) }
func TestStore_Miniredis(t *testing.T) { storetest.Run(t, storetest.OpenMiniredis) }

func TestAudit_Bolt(t *testing.T) {
	storetest.RunAudit(t, func(t *testing.T) auth.AuditLog { return storetest.OpenBolt(t).(auth.AuditLog) })
}

func TestAudit_Miniredis(t *testing.T) {
	storetest.RunAudit(t, func(t *testing.T) auth.AuditLog { return storetest.OpenMiniredis(t).(auth.AuditLog) })
}

// TestBolt_SignaturesExpire: an expired replay entry is deleted by the
// next signed request or by Purge, through the expiry index.
func TestBolt_SignaturesExpire(t *testing.T) {
	s, err := auth.OpenBolt(t.TempDir(), auth.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	now := storetest.T0
	for i := 0; i < 100; i++ {
		if fresh, err := s.UseSignature(ctx, fmt.Sprint("sig", i), now, now.Add(time.Duration(i+1)*time.Second)); err != nil || !fresh {
			t.Fatal(fresh, err)
		}
	}
	if n, x := s.SignatureCount(); n != 100 || x != 100 {
		t.Fatalf("%d signatures, %d in the index", n, x)
	}
	// The next request at now+50s deletes the 50 whose window ended.
	if _, err := s.UseSignature(ctx, "late", now.Add(50*time.Second), now.Add(60*time.Second)); err != nil {
		t.Fatal(err)
	}
	if n, x := s.SignatureCount(); n != 51 || x != 51 {
		t.Fatalf("after one request at +50s: %d signatures, %d in the index", n, x)
	}
	if _, err := s.Purge(ctx, time.Time{}, now.Add(time.Hour), 10); err != nil {
		t.Fatal(err)
	}
	if n, x := s.SignatureCount(); n != 0 || x != 0 {
		t.Fatalf("after purge: %d signatures, %d in the index", n, x)
	}
}

// TestRedis_Namespace: a namespace with braces (a hash tag) is refused.
func TestRedis_Namespace(t *testing.T) {
	for _, ns := range []string{"{floodgate}:", "a{b", "x}", "has space:", string(make([]byte, 65))} {
		if err := auth.ValidNamespace(ns); err == nil {
			t.Errorf("namespace %q accepted", ns)
		}
	}
	for _, ns := range []string{"floodgate:", "prod-eu:", "a.b:c"} {
		if err := auth.ValidNamespace(ns); err != nil {
			t.Errorf("namespace %q: %v", ns, err)
		}
	}
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	s := auth.NewRedisStore(rdb, auth.RedisOptions{Namespace: "{floodgate}:"})
	if err := s.Create(context.Background(), storetest.NewRecord("a", 1), 5); err == nil {
		t.Fatal("store with a braced namespace wrote a key")
	}
	if err := s.Ping(context.Background()); err == nil {
		t.Fatal("store with a braced namespace is ready")
	}
}
