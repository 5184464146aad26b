package auth_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	bolt "go.etcd.io/bbolt"

	"floodgate/auth"
	"floodgate/auth/storetest"
)

// TestAccount_ListPages: the account list gives every active key and one
// page of keys; limit and cursor walk the rest; bad ones are 400.
func TestAccount_ListPages(t *testing.T) {
	f := newFixture(t, nil)
	w := newWallet(1)
	var made []string
	for i := 0; i < 7; i++ {
		f.clock.Advance(time.Second)
		active := i < 2
		ck := f.adminCreate(fmt.Sprintf(`{"account":%q,"active":%v}`, w.account, active))
		made = append(made, ck.Key.Prefix)
	}
	list := func(extra map[string]any) (auth.AccountKeys, response) {
		t.Helper()
		f.clock.Advance(time.Millisecond)
		b := w.body(t, auth.TypeListAPIKeys, nil, f.clock.Now(), 5000)
		for k, v := range extra {
			b[k] = v
		}
		r := f.do("POST", pathList, b, nil)
		var out auth.AccountKeys
		if r.status == 200 {
			wantOK(t, r, 200, &out)
		}
		return out, r
	}
	all, _ := list(nil)
	if len(all.Keys) != 7 || all.NextCursor != nil || len(all.ActiveAPIKeys) != 2 {
		t.Fatalf("without limit: %d keys, next %v, %d active", len(all.Keys), all.NextCursor, len(all.ActiveAPIKeys))
	}
	var got []string
	extra := map[string]any{"limit": 3}
	for page := 0; ; page++ {
		p, _ := list(extra)
		if len(p.ActiveAPIKeys) != 2 || len(p.Keys) > 3 {
			t.Fatalf("page %d: %+v", page, p)
		}
		for _, k := range p.Keys {
			got = append(got, k.Prefix)
		}
		if p.NextCursor == nil {
			break
		}
		extra = map[string]any{"limit": 3, "cursor": *p.NextCursor}
	}
	if fmt.Sprint(got) != fmt.Sprint(made) {
		t.Fatalf("pages: %v, want %v", got, made)
	}
	for _, tc := range []struct {
		extra map[string]any
		msg   string
	}{
		{map[string]any{"limit": 0}, "Invalid field limit: must be 1..1000"},
		{map[string]any{"limit": 1001}, "Invalid field limit: must be 1..1000"},
		{map[string]any{"limit": "3"}, "Invalid field limit: must be 1..1000"},
		{map[string]any{"cursor": 5}, "Invalid field cursor: must be a string"},
		{map[string]any{"cursor": "nope"}, "Invalid field cursor: malformed"},
	} {
		_, r := list(tc.extra)
		wantError(t, r, 400, "BAD_REQUEST", tc.msg)
	}
}

// TestAdmin_ListPages: the operator list pages with limit and cursor;
// AdminClient.ListKeys follows them.
func TestAdmin_ListPages(t *testing.T) {
	f := newFixture(t, nil)
	acct := newWallet(1).account
	var made []string
	for i := 0; i < 5; i++ {
		f.clock.Advance(time.Second)
		made = append(made, f.adminCreate(fmt.Sprintf(`{"account":%q,"active":false}`, acct)).Key.Prefix)
	}
	var got []string
	path := "/admin/v1/keys?limit=2"
	for {
		var l auth.KeyList
		wantOK(t, f.admin("GET", path, nil), 200, &l)
		for _, k := range l.Keys {
			got = append(got, k.Prefix)
		}
		if l.NextCursor == nil {
			break
		}
		path = "/admin/v1/keys?limit=2&cursor=" + *l.NextCursor
	}
	if fmt.Sprint(got) != fmt.Sprint(made) {
		t.Fatalf("pages: %v, want %v", got, made)
	}
	wantError(t, f.admin("GET", "/admin/v1/keys?limit=0", nil), 400, "BAD_REQUEST", "Invalid field limit: must be 1..1000")
	wantError(t, f.admin("GET", "/admin/v1/keys?cursor=zz", nil), 400, "BAD_REQUEST", "Invalid field cursor: malformed")
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

// TestRedis_SignatureTTL: the replay entry of a signed request lives as
// long as its window (PX), never longer.
func TestRedis_SignatureTTL(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	store := auth.NewRedisStore(rdb, auth.RedisOptions{Namespace: "t:"})
	f := newFixtureOn(t, store, nil)
	w := newWallet(1)
	f.clock.Set(time.Now())
	body := w.body(t, auth.TypeCreateAPIKey, nil, f.clock.Now(), 120000)
	wantOK(t, f.do("POST", pathCreate, body, nil), 200, nil)
	keys := mr.Keys()
	var ttl time.Duration
	for _, k := range keys {
		if len(k) > 6 && k[:6] == "t:sig:" {
			ttl = mr.TTL(k)
		}
	}
	if ttl <= 0 || ttl > 120*time.Second {
		t.Fatalf("replay entry TTL %v, want (0, 120s] (keys %v)", ttl, keys)
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
