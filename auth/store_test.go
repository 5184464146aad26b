package auth_test

import (
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"floodgate/auth"
	"floodgate/auth/storetest"
)

func openBolt(t *testing.T) auth.Store {
	s, err := auth.OpenBolt(t.TempDir(), auth.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func openMiniredis(t *testing.T) auth.Store {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	return auth.NewRedisStore(rdb, auth.RedisOptions{Namespace: "test:"})
}

func TestStore_Bolt(t *testing.T)      { storetest.Run(t, openBolt) }
func TestStore_Miniredis(t *testing.T) { storetest.Run(t, openMiniredis) }

func TestAudit_Bolt(t *testing.T) {
	storetest.RunAudit(t, func(t *testing.T) auth.AuditLog { return openBolt(t).(auth.AuditLog) })
}

func TestAudit_Miniredis(t *testing.T) {
	storetest.RunAudit(t, func(t *testing.T) auth.AuditLog { return openMiniredis(t).(auth.AuditLog) })
}
