package auth_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	bolt "go.etcd.io/bbolt"

	"floodgate/auth"
	"floodgate/auth/storetest"
)

// v1 is what the stores held before the per-account indexes.
func v1Records() []auth.Record {
	a := storetest.NewRecord("acct1", 1)
	a.Alias = "bot"
	b := storetest.NewRecord("acct1", 2)
	b.Status = auth.StatusRevoked
	c := storetest.NewRecord("acct2", 3)
	c.Status = auth.StatusInactive
	return []auth.Record{a, b, c}
}

func checkUpgraded(t *testing.T, s auth.Store, upgradeTime time.Time) {
	t.Helper()
	ctx := context.Background()
	recs, _, err := s.List(ctx, auth.Filter{}, auth.Page{})
	if err != nil || len(recs) != 3 {
		t.Fatalf("after upgrade: %v %v", recs, err)
	}
	if recs[0].RequestCount != 4 || len(must(s.Events(ctx, recs[0].Prefix, 0))) != 1 {
		t.Fatalf("usage or events lost: %+v", recs[0])
	}
	if !recs[1].RevokedAt.Equal(upgradeTime) {
		t.Fatalf("revoked key's RevokedAt %v, want the upgrade time", recs[1].RevokedAt)
	}
	act, _, _ := s.List(ctx, auth.Filter{Account: "acct1", Status: auth.StatusActive}, auth.Page{})
	if len(act) != 1 {
		t.Fatalf("active index: %v", act)
	}
	d := storetest.NewRecord("acct1", 9)
	d.Alias = "bot"
	if err := s.Create(ctx, d, 5); err == nil {
		t.Fatal("alias index lost: a second \"bot\" was accepted")
	}
	if n, err := s.Purge(ctx, upgradeTime.Add(time.Second), upgradeTime, 10); err != nil || n != 1 {
		t.Fatalf("purge after upgrade: %d %v", n, err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestBolt_Upgrade: a key file of the first layout opens with every index
// rebuilt.
func TestBolt_Upgrade(t *testing.T) {
	dir := t.TempDir()
	db, err := bolt.Open(dir+"/keys.db", 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		keys, _ := tx.CreateBucket([]byte("keys"))
		accts, _ := tx.CreateBucket([]byte("accounts"))
		evs, _ := tx.CreateBucket([]byte("events"))
		sigs, _ := tx.CreateBucket([]byte("sigs"))
		for i, r := range v1Records() {
			if i == 0 {
				r.RequestCount = 4
				eb, _ := evs.CreateBucket([]byte(r.Prefix))
				v, _ := json.Marshal(auth.Event{Time: storetest.T0, IP: "1.2.3.4"})
				_ = eb.Put([]byte{0, 0, 0, 0, 0, 0, 0, 1}, v)
			}
			v, _ := json.Marshal(r)
			_ = keys.Put([]byte(r.Prefix), v)
			_ = accts.Put(append(append([]byte(r.Account), 0), r.Prefix...), nil)
		}
		return sigs.Put([]byte("oldsig"), []byte{0, 0, 0, 0, 0, 0, 0, 1})
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	up := storetest.T0.Add(time.Hour)
	s, err := auth.OpenBolt(dir, auth.BoltOptions{Now: func() time.Time { return up }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n, x := s.SignatureCount(); n != 1 || x != 1 {
		t.Fatalf("signatures after upgrade: %d, index %d", n, x)
	}
	checkUpgraded(t, s, up)
}

// TestRedis_Upgrade: keys of the first Redis layout are converted by
// Upgrade, once.
func TestRedis_Upgrade(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	ctx := context.Background()
	for i, r := range v1Records() {
		v, _ := json.Marshal(r)
		mr.Set("fg:key:"+r.Prefix, string(v))
		mr.SAdd("fg:acct:"+r.Account, r.Prefix)
		mr.SAdd("fg:keys", r.Prefix)
		if i == 0 {
			mr.HSet("fg:usage:"+r.Prefix, "count", "4")
			ev, _ := json.Marshal(auth.Event{Time: storetest.T0, IP: "1.2.3.4"})
			mr.RPush("fg:events:"+r.Prefix, string(ev))
		}
	}
	up := storetest.T0.Add(time.Hour)
	s := auth.NewRedisStore(rdb, auth.RedisOptions{Namespace: "fg:", Now: func() time.Time { return up }})
	if err := s.Upgrade(ctx); err != nil {
		t.Fatal(err)
	}
	for _, k := range mr.Keys() {
		if len(k) > 7 && (k[:7] == "fg:key:" || k[:8] == "fg:acct:" || k == "fg:keys") {
			t.Errorf("old key %s left", k)
		}
	}
	if err := s.Upgrade(ctx); err != nil {
		t.Fatal(err)
	}
	checkUpgraded(t, s, up)
}
