package keyapi_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"floodgate/auth"
	"floodgate/keyapi"
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
		ck := f.adminCreate(fmt.Sprintf(`{"account":%q,"active":%v}`, w.Account, active))
		made = append(made, ck.Key.Prefix)
	}
	list := func(extra map[string]any) (keyapi.AccountKeys, response) {
		t.Helper()
		f.clock.Advance(time.Millisecond)
		b := w.Body(t, keyapi.TypeListAPIKeys, nil, f.clock.Now(), 5000)
		for k, v := range extra {
			b[k] = v
		}
		r := f.do("POST", pathList, b, nil)
		var out keyapi.AccountKeys
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
	acct := newWallet(1).Account
	var made []string
	for i := 0; i < 5; i++ {
		f.clock.Advance(time.Second)
		made = append(made, f.adminCreate(fmt.Sprintf(`{"account":%q,"active":false}`, acct)).Key.Prefix)
	}
	var got []string
	path := "/admin/v1/keys?limit=2"
	for {
		var l keyapi.KeyList
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
	body := w.Body(t, keyapi.TypeCreateAPIKey, nil, f.clock.Now(), 120000)
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
