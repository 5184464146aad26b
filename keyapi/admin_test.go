package keyapi_test

import (
	"context"
	"errors"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"floodgate/auth"
	"floodgate/keyapi"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

func (f *fixture) adminCreate(body string) keyapi.CreatedKey {
	f.t.Helper()
	f.clock.Advance(time.Millisecond) // distinct created_at, for list order
	var ck keyapi.CreatedKey
	wantOK(f.t, f.admin("POST", "/admin/v1/keys", body), 201, &ck)
	return ck
}

func TestAdmin_Auth(t *testing.T) {
	off := newFixture(t, func(o *keyapi.Options) { o.AdminToken = "" })
	for _, p := range []string{"/admin/v1/keys", "/admin/v1/keys/AbCdEfGh", "/admin/v1/keys/AbCdEfGh/events"} {
		wantError(t, off.admin("GET", p, nil), 404, "NOT_FOUND", "Not found")
	}
	wantError(t, off.do("POST", "/admin/v1/keys", `{}`, map[string]string{"Authorization": "Bearer "}), 404, "NOT_FOUND", "Not found")

	f := newFixture(t, nil)
	for name, hdr := range map[string]map[string]string{
		"no header":   nil,
		"wrong token": {"Authorization": "Bearer nope"},
		"prefix only": {"Authorization": "Bearer " + adminToken[:5]},
		"not bearer":  {"Authorization": "Basic " + adminToken},
		"bare token":  {"Authorization": adminToken},
	} {
		r := f.do("POST", "/admin/v1/keys", `{"account":"`+newWallet(1).Account+`"}`, hdr)
		wantError(t, r, 401, "UNAUTHORIZED", "Invalid admin token")
		if r.header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: no WWW-Authenticate", name)
		}
	}
	if f.snapshot() != "null" {
		t.Fatal("unauthorized create stored a key")
	}
	wantError(t, f.do("PUT", "/admin/v1/keys", nil, nil), 401, "UNAUTHORIZED", "Invalid admin token")
	r := f.admin("PUT", "/admin/v1/keys", nil)
	wantError(t, r, 405, "METHOD_NOT_ALLOWED", "Method not allowed")
	if r.header.Get("Allow") != "POST, GET" {
		t.Fatalf("Allow %q", r.header.Get("Allow"))
	}
}

func TestAdmin_CreateShowList(t *testing.T) {
	f := newFixture(t, nil)
	w := newWallet(1)
	ck := f.adminCreate(`{"account":"` + w.Account + `","alias":"bot","category":"production","expires_at":"2026-01-01T00:00:00Z",
		"limits":{"credits_per_minute":600,"max_connections":3,"max_subscriptions":50,"conn_messages_per_second":4},
		"quotas":{"total":1000000,"daily":10000,"weekly":50000,"monthly":150000}}`)
	prefix, err := auth.ParseKey(ck.APIKey)
	if err != nil || ck.Key.Prefix != prefix || ck.Key.Account != w.Account || ck.Key.Alias != "bot" || ck.Key.Category != "production" ||
		ck.Key.Status != "active" || ck.Key.ExpiresAt == nil || ck.Key.ExpiresAt.Format(time.RFC3339) != "2026-01-01T00:00:00Z" ||
		ck.Key.Limits != (auth.Limits{CreditsPerMinute: 600, MaxConnections: 3, MaxSubscriptions: 50, ConnMessagesPerSecond: 4}) ||
		ck.Key.Quotas != (auth.Quotas{Total: 1000000, Daily: 10000, Weekly: 50000, Monthly: 150000}) {
		t.Fatalf("created: %+v %v", ck, err)
	}
	info, err := f.keyring.Verify(ck.APIKey, f.clock.Now())
	if err != nil || info.Limits.CreditsPerMinute != 600 || info.Quotas.Daily != 10000 {
		t.Fatalf("verify: %+v %v", info, err)
	}
	staging := f.adminCreate(`{"account":"` + w.Account + `","category":"staging","active":false}`)
	if staging.Key.Status != "inactive" {
		t.Fatalf("inactive create: %+v", staging.Key)
	}
	if _, err := f.keyring.Verify(staging.APIKey, f.clock.Now()); !errors.Is(err, auth.ErrInactiveKey) {
		t.Fatalf("inactive key: %v", err)
	}
	expired := f.adminCreate(`{"account":"` + newWallet(2).Account + `","expires_at":"2025-05-20T11:59:59Z"}`)

	var v keyapi.KeyView
	wantOK(t, f.admin("GET", "/admin/v1/keys/"+prefix, nil), 200, &v)
	if v.Prefix != prefix || v.Live != nil || v.RequestCount != 0 || v.LastUsedAt != nil {
		t.Fatalf("show: %+v", v)
	}
	if strings.Contains(f.admin("GET", "/admin/v1/keys/"+prefix, nil).raw, ck.APIKey[9:]) {
		t.Fatal("show leaks the secret")
	}

	list := func(q string) []string {
		t.Helper()
		var kl keyapi.KeyList
		wantOK(t, f.admin("GET", "/admin/v1/keys"+q, nil), 200, &kl)
		out := []string{}
		for _, k := range kl.Keys {
			out = append(out, k.Prefix)
		}
		return out
	}
	eq := func(got []string, want ...string) {
		t.Helper()
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("list %v, want %v", got, want)
		}
	}
	eq(list(""), prefix, staging.Key.Prefix, expired.Key.Prefix)
	eq(list("?account="+w.Account), prefix, staging.Key.Prefix)
	eq(list("?category=staging"), staging.Key.Prefix)
	eq(list("?status=active"), prefix)
	eq(list("?status=inactive"), staging.Key.Prefix)
	eq(list("?status=expired"), expired.Key.Prefix)
	eq(list("?account=nobody"))
	wantError(t, f.admin("GET", "/admin/v1/keys?status=paused", nil), 400, "BAD_REQUEST", "Invalid field status: must be active, inactive, revoked or expired")
}

func TestAdmin_ShowLive(t *testing.T) {
	live := liveUsage{}
	f := newFixture(t, func(o *keyapi.Options) { o.LiveUsage = live })
	ck := f.adminCreate(`{"account":"` + newWallet(1).Account + `","quotas":{"daily":100,"total":5000,"calendar":true}}`)
	u := keyapi.KeyUsage{Credits: keyapi.BudgetUsage{Limit: 300, Remaining: 12}, Connections: 2}
	u.AddQuota("daily", 100, 40, time.Date(2030, 1, 4, 0, 0, 0, 0, time.UTC))
	u.AddQuota("total", 5000, 40, time.Time{})
	live[ck.Key.Prefix] = u
	var v keyapi.KeyView
	r := f.admin("GET", "/admin/v1/keys/"+ck.Key.Prefix, nil)
	wantOK(t, r, 200, &v)
	if v.Live == nil || v.Live.Credits.Remaining != 12 || v.Live.Connections != 2 || v.Live.Quotas["daily"].Used != 40 {
		t.Fatalf("live: %+v", v.Live)
	}
	// quotas.<window> with limit, used, reset_at (none for total); the
	// configured quotas keep their shape.
	for _, want := range []string{
		`"quotas":{"total":5000,"daily":100,"calendar":true}`,
		`"quotas":{"daily":{"limit":100,"used":40,"reset_at":"2030-01-04T00:00:00Z"},"total":{"limit":5000,"used":40}}`,
	} {
		if !strings.Contains(r.raw, want) {
			t.Errorf("GET %s lacks %s", r.raw, want)
		}
	}
	// The list reports the same live use per key.
	var list keyapi.KeyList
	wantOK(t, f.admin("GET", "/admin/v1/keys", nil), 200, &list)
	if len(list.Keys) != 1 || list.Keys[0].Live == nil || list.Keys[0].Live.Quotas["daily"].Used != 40 ||
		list.Keys[0].Live.Quotas["daily"].ResetAt == nil || list.Keys[0].Live.Quotas["total"].ResetAt != nil {
		t.Fatalf("list: %+v", list.Keys)
	}
}

func TestAdmin_CreateErrors(t *testing.T) {
	f := newFixture(t, nil)
	acct := newWallet(1).Account
	f.adminCreate(`{"account":"` + acct + `","alias":"bot"}`)
	before := f.snapshot()
	for _, tc := range []struct {
		name, body string
		status     int
		code, msg  string
	}{
		{"bad json", `{"account":`, 400, "BAD_REQUEST", "Invalid JSON body"},
		{"array", `[]`, 400, "BAD_REQUEST", "Invalid JSON body"},
		{"empty", ``, 400, "BAD_REQUEST", "Invalid JSON body"},
		{"missing account", `{"alias":"x"}`, 400, "BAD_REQUEST", "Missing required field: account"},
		{"bad account", `{"account":"0OIl"}`, 400, "INVALID_PUBLIC_KEY", "Invalid public key"},
		{"account type", `{"account":5}`, 400, "BAD_REQUEST", "Invalid field account: must be a string"},
		{"credits high", `{"account":"` + acct + `","limits":{"credits_per_minute":10001}}`, 400, "BAD_REQUEST", "Invalid field limits.credits_per_minute: must be 1..10000"},
		{"credits type", `{"account":"` + acct + `","limits":{"credits_per_minute":"many"}}`, 400, "BAD_REQUEST", "Invalid field limits.credits_per_minute: must be an integer"},
		{"negative conns", `{"account":"` + acct + `","limits":{"max_connections":-1}}`, 400, "BAD_REQUEST", "Invalid field limits.max_connections: must not be negative"},
		{"negative quota", `{"account":"` + acct + `","quotas":{"weekly":-5}}`, 400, "BAD_REQUEST", "Invalid field quotas.weekly: must not be negative"},
		{"negative delivered_daily", `{"account":"` + acct + `","quotas":{"delivered_daily":-1}}`, 400, "BAD_REQUEST", "Invalid field quotas.delivered_daily: must not be negative"},
		{"bad expiry", `{"account":"` + acct + `","expires_at":"tomorrow"}`, 400, "BAD_REQUEST", "Invalid field expires_at: must be an RFC 3339 time"},
		{"active type", `{"account":"` + acct + `","active":"yes"}`, 400, "BAD_REQUEST", "Invalid field active: must be a boolean"},
		{"long category", `{"account":"` + acct + `","category":"` + strings.Repeat("c", 129) + `"}`, 400, "BAD_REQUEST", "Invalid field category: longer than 128 bytes"},
		{"bad scope", `{"account":"` + acct + `","scopes":["market","trading"]}`, 400, "BAD_REQUEST", `Invalid field scopes: must be "market" and/or "account"`},
		{"scopes type", `{"account":"` + acct + `","scopes":"market"}`, 400, "BAD_REQUEST", "Invalid field scopes: must be a list"},
		{"bad cidr", `{"account":"` + acct + `","allowed_cidrs":["10.0.0.0/33"]}`, 400, "BAD_REQUEST", "Invalid field allowed_cidrs: entry 0 is not a CIDR (like 10.0.0.0/8 or 2001:db8::/32)"},
		{"too many cidrs", `{"account":"` + acct + `","allowed_cidrs":[` + strings.Repeat(`"10.0.0.1",`, 32) + `"10.0.0.2"]}`, 400, "BAD_REQUEST", "Invalid field allowed_cidrs: at most 32 entries"},
		{"alias taken", `{"account":"` + acct + `","alias":"bot"}`, 409, "ALIAS_TAKEN", "Alias already in use for this account"},
		{"too large", `{"account":"` + acct + `","alias":"` + strings.Repeat("a", keyapi.MaxBodyBytes) + `"}`, 400, "BAD_REQUEST", "Request body too large (max 65536 bytes)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, f.admin("POST", "/admin/v1/keys", tc.body), tc.status, tc.code, tc.msg)
		})
	}
	if f.snapshot() != before {
		t.Fatal("bad creates changed the store")
	}
	for i := 0; i < 4; i++ {
		f.adminCreate(`{"account":"` + acct + `"}`)
	}
	wantError(t, f.admin("POST", "/admin/v1/keys", `{"account":"`+acct+`"}`), 409, "TOO_MANY_KEYS", "Too many active API keys (limit 5)")
	f.adminCreate(`{"account":"` + acct + `","active":false}`) // inactive: not counted
}

func TestAdmin_Patch(t *testing.T) {
	f := newFixture(t, nil)
	acct := newWallet(1).Account
	ck := f.adminCreate(`{"account":"` + acct + `","limits":{"credits_per_minute":600,"max_connections":3}}`)
	p := "/admin/v1/keys/" + ck.Key.Prefix
	now := f.clock.Now()
	if _, err := f.keyring.Verify(ck.APIKey, now); err != nil {
		t.Fatal(err)
	}
	patch := func(body string) keyapi.KeyView {
		t.Helper()
		var v keyapi.KeyView
		wantOK(t, f.admin("PATCH", p, body), 200, &v)
		return v
	}
	oneEvent := func(want auth.KeyEvent) {
		t.Helper()
		evs := f.events.take()
		if len(evs) != 1 || evs[0] != want {
			t.Fatalf("events %+v, want %+v", evs, want)
		}
	}
	// Deactivate: event, and the cache follows at once.
	if v := patch(`{"active":false}`); v.Status != "inactive" {
		t.Fatalf("deactivate: %+v", v)
	}
	oneEvent(auth.KeyEvent{Type: auth.EventDeactivated, Prefix: ck.Key.Prefix, Reason: "api key deactivated"})
	if _, err := f.keyring.Verify(ck.APIKey, now); !errors.Is(err, auth.ErrInactiveKey) {
		t.Fatalf("after deactivate: %v", err)
	}
	if v := patch(`{"active":true}`); v.Status != "active" {
		t.Fatalf("activate: %+v", v)
	}
	oneEvent(auth.KeyEvent{Type: auth.EventUpdated, Prefix: ck.Key.Prefix})
	// Partial limits: only the named ones change; 0 restores the default.
	v := patch(`{"limits":{"credits_per_minute":900,"max_connections":0},"quotas":{"daily":5},"alias":"a1","category":"c1"}`)
	if v.Limits != (auth.Limits{CreditsPerMinute: 900}) || v.Quotas != (auth.Quotas{Daily: 5}) || v.Alias != "a1" || v.Category != "c1" {
		t.Fatalf("partial patch: %+v", v)
	}
	oneEvent(auth.KeyEvent{Type: auth.EventUpdated, Prefix: ck.Key.Prefix})
	if info, _ := f.keyring.Verify(ck.APIKey, now); info.Limits.CreditsPerMinute != 900 {
		t.Fatalf("cache kept old limits: %+v", info)
	}
	// No change, no event.
	patch(`{}`)
	if evs := f.events.take(); len(evs) != 0 {
		t.Fatalf("no-op patch published %+v", evs)
	}
	// Expiry in the past: expired event; null: never.
	if v := patch(`{"expires_at":"2025-05-20T11:00:00Z"}`); v.Status != "expired" {
		t.Fatalf("expire: %+v", v)
	}
	oneEvent(auth.KeyEvent{Type: auth.EventExpired, Prefix: ck.Key.Prefix, Reason: "api key expired"})
	if _, err := f.keyring.Verify(ck.APIKey, now); !errors.Is(err, auth.ErrExpiredKey) {
		t.Fatalf("after expiry: %v", err)
	}
	if v := patch(`{"expires_at":"2030-01-01T00:00:00Z"}`); v.Status != "active" || v.ExpiresAt == nil {
		t.Fatalf("extend: %+v", v)
	}
	oneEvent(auth.KeyEvent{Type: auth.EventUpdated, Prefix: ck.Key.Prefix})
	if v := patch(`{"expires_at":null}`); v.ExpiresAt != nil {
		t.Fatalf("never: %+v", v)
	}
	f.events.take()

	before := f.snapshot()
	for _, tc := range []struct {
		name, body string
		status     int
		code, msg  string
	}{
		{"bad json", `{"active":`, 400, "BAD_REQUEST", "Invalid JSON body"},
		{"bad status", `{"status":"paused"}`, 400, "BAD_REQUEST", "Invalid field status: must be active, inactive or revoked"},
		{"bad credits", `{"limits":{"credits_per_minute":20000}}`, 400, "BAD_REQUEST", "Invalid field limits.credits_per_minute: must be 1..10000"},
		{"bad quota type", `{"quotas":{"total":"lots"}}`, 400, "BAD_REQUEST", "Invalid field quotas.total: must be an integer"},
		{"bad expiry", `{"expires_at":"soon"}`, 400, "BAD_REQUEST", "Invalid field expires_at: must be an RFC 3339 time"},
		{"bad scope", `{"scopes":["Market"]}`, 400, "BAD_REQUEST", `Invalid field scopes: must be "market" and/or "account"`},
		{"bad cidr", `{"allowed_cidrs":["10.0.0.0/8","fe80::1%eth0"]}`, 400, "BAD_REQUEST", "Invalid field allowed_cidrs: entry 1 is not a CIDR (like 10.0.0.0/8 or 2001:db8::/32)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, f.admin("PATCH", p, tc.body), tc.status, tc.code, tc.msg)
		})
	}
	wantError(t, f.admin("PATCH", "/admin/v1/keys/AbCdEfGh", `{"active":false}`), 404, "API_KEY_NOT_FOUND", "API key not found")
	wantError(t, f.admin("PATCH", "/admin/v1/keys/bad!", `{"active":false}`), 404, "API_KEY_NOT_FOUND", "API key not found")
	if f.snapshot() != before || len(f.events.take()) != 0 {
		t.Fatal("a refused PATCH changed the store or published an event")
	}
	// Alias taken; activation beyond the limit.
	other := f.adminCreate(`{"account":"` + acct + `","alias":"taken","active":false}`)
	before = f.snapshot()
	wantError(t, f.admin("PATCH", p, `{"alias":"taken"}`), 409, "ALIAS_TAKEN", "Alias already in use for this account")
	if f.snapshot() != before || len(f.events.take()) != 0 {
		t.Fatal("a refused alias change changed something")
	}
	for i := 0; i < 4; i++ {
		f.adminCreate(`{"account":"` + acct + `"}`)
	}
	before = f.snapshot()
	wantError(t, f.admin("PATCH", "/admin/v1/keys/"+other.Key.Prefix, `{"active":true}`), 409, "TOO_MANY_KEYS", "Too many active API keys (limit 5)")
	if f.snapshot() != before || len(f.events.take()) != 0 {
		t.Fatal("refused patches changed something")
	}
	// Revoke is final.
	if v := patch(`{"status":"revoked"}`); v.Status != "revoked" {
		t.Fatalf("revoke: %+v", v)
	}
	oneEvent(auth.KeyEvent{Type: auth.EventRevoked, Prefix: ck.Key.Prefix, Reason: "api key revoked"})
	wantError(t, f.admin("PATCH", p, `{"active":true}`), 409, "KEY_REVOKED", "API key is revoked")
	wantError(t, f.admin("PATCH", p, `{"status":"inactive"}`), 409, "KEY_REVOKED", "API key is revoked")
	if _, err := f.keyring.Verify(ck.APIKey, now); !errors.Is(err, auth.ErrInvalidKey) {
		t.Fatalf("revoked: %v", err)
	}
}

func TestAdmin_DeleteRotateEvents(t *testing.T) {
	f := newFixture(t, nil)
	acct := newWallet(1).Account
	unused := f.adminCreate(`{"account":"` + acct + `"}`)
	used := f.adminCreate(`{"account":"` + acct + `","alias":"main","category":"prod","expires_at":"2030-01-01T00:00:00Z","limits":{"credits_per_minute":700},"quotas":{"monthly":9}}`)
	ctx := context.Background()
	if err := f.store.AddUsage(ctx, map[string]auth.UsageDelta{used.Key.Prefix: {Count: 1, LastUsed: t0}}); err != nil {
		t.Fatal(err)
	}

	// Delete.
	wantError(t, f.admin("DELETE", "/admin/v1/keys/"+used.Key.Prefix, nil), 409, "KEY_IN_USE", "key has usage history; deactivate it")
	var del map[string]string
	wantOK(t, f.admin("DELETE", "/admin/v1/keys/"+unused.Key.Prefix, nil), 200, &del)
	if del["deleted"] != unused.Key.Prefix {
		t.Fatalf("delete: %v", del)
	}
	if _, err := f.keyring.Verify(unused.APIKey, t0); !errors.Is(err, auth.ErrInvalidKey) {
		t.Fatalf("deleted key verifies: %v", err)
	}
	wantError(t, f.admin("DELETE", "/admin/v1/keys/"+unused.Key.Prefix, nil), 404, "API_KEY_NOT_FOUND", "API key not found")
	wantError(t, f.admin("GET", "/admin/v1/keys/"+unused.Key.Prefix, nil), 404, "API_KEY_NOT_FOUND", "API key not found")
	f.events.take()

	// Rotate: same settings, new secret, old key untouched.
	var rot keyapi.CreatedKey
	wantOK(t, f.admin("POST", "/admin/v1/keys/"+used.Key.Prefix+"/rotate", `{"alias":"main-2"}`), 201, &rot)
	if rot.RotatedFrom != used.Key.Prefix || rot.Key.Prefix == used.Key.Prefix || rot.Key.Alias != "main-2" || rot.Key.Category != "prod" ||
		rot.Key.Limits.CreditsPerMinute != 700 || rot.Key.Quotas.Monthly != 9 || rot.Key.ExpiresAt == nil || rot.Key.Status != "active" || rot.APIKey == used.APIKey {
		t.Fatalf("rotate: %+v", rot)
	}
	for _, k := range []string{used.APIKey, rot.APIKey} {
		if _, err := f.keyring.Verify(k, t0); err != nil {
			t.Fatalf("after rotate: %v", err)
		}
	}
	var rot2 keyapi.CreatedKey
	wantOK(t, f.admin("POST", "/admin/v1/keys/"+used.Key.Prefix+"/rotate", nil), 201, &rot2) // no body: the alias moves
	if rot2.Key.Alias != "main" || rot2.Key.Category != "prod" || rot2.Key.Limits.CreditsPerMinute != 700 || rot2.Key.Quotas.Monthly != 9 || rot2.Key.ExpiresAt == nil {
		t.Fatalf("rotate without body keeps every setting, alias included: %+v", rot2.Key)
	}
	var oldView keyapi.KeyView
	wantOK(t, f.admin("GET", "/admin/v1/keys/"+used.Key.Prefix, nil), 200, &oldView)
	if oldView.Alias != "" || oldView.Status != "active" {
		t.Fatalf("the old key after its alias moved: %+v", oldView)
	}
	wantError(t, f.admin("POST", "/admin/v1/keys/"+used.Key.Prefix+"/rotate", `{"alias":"main-2"}`), 409, "ALIAS_TAKEN", "Alias already in use for this account")
	wantError(t, f.admin("POST", "/admin/v1/keys/AbCdEfGh/rotate", nil), 404, "API_KEY_NOT_FOUND", "API key not found")
	wantError(t, f.admin("POST", "/admin/v1/keys/"+used.Key.Prefix+"/rotate", `{"alias":`), 400, "BAD_REQUEST", "Invalid JSON body")
	wantOK(t, f.admin("PATCH", "/admin/v1/keys/"+rot2.Key.Prefix, `{"status":"revoked"}`), 200, nil)
	wantError(t, f.admin("POST", "/admin/v1/keys/"+rot2.Key.Prefix+"/rotate", nil), 409, "KEY_REVOKED", "API key is revoked")

	// Events.
	for i := 0; i < 5; i++ {
		ev := auth.Event{Time: t0.Add(time.Duration(i) * time.Second), IP: "203.0.113.7", Node: "n1", DurationMS: int64(i), MsgsIn: 3, MsgsOut: 9, CloseCode: 1008, CloseReason: "api key revoked"}
		if err := f.store.AppendEvent(ctx, used.Key.Prefix, ev); err != nil {
			t.Fatal(err)
		}
	}
	var ke keyapi.KeyEvents
	wantOK(t, f.admin("GET", "/admin/v1/keys/"+used.Key.Prefix+"/events", nil), 200, &ke)
	if ke.Prefix != used.Key.Prefix || len(ke.Events) != 5 || ke.Events[4].DurationMS != 4 || ke.Events[0].CloseReason != "api key revoked" {
		t.Fatalf("events: %+v", ke)
	}
	wantOK(t, f.admin("GET", "/admin/v1/keys/"+used.Key.Prefix+"/events?limit=2", nil), 200, &ke)
	if len(ke.Events) != 2 || ke.Events[1].DurationMS != 4 {
		t.Fatalf("events limit 2: %+v", ke)
	}
	wantOK(t, f.admin("GET", "/admin/v1/keys/"+rot.Key.Prefix+"/events", nil), 200, &ke)
	if ke.Events == nil || len(ke.Events) != 0 {
		t.Fatalf("no events: %+v", ke)
	}
	for _, q := range []string{"0", "1001", "x"} {
		wantError(t, f.admin("GET", "/admin/v1/keys/"+used.Key.Prefix+"/events?limit="+q, nil), 400, "BAD_REQUEST", "Invalid field limit: must be 1..1000")
	}
	wantError(t, f.admin("GET", "/admin/v1/keys/AbCdEfGh/events", nil), 404, "API_KEY_NOT_FOUND", "API key not found")
}

// TestStoreOutageIs503: with the Redis store unreachable the operator API
// answers 503 UNAVAILABLE with Retry-After, not 500.
func TestStoreOutageIs503(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), DialerRetries: 1, MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	store := auth.NewRedisStore(rdb, auth.RedisOptions{})
	h, err := keyapi.New(keyapi.Options{Store: store, AdminToken: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	mr.Close()
	req := httptest.NewRequest("GET", "/admin/v1/keys", nil)
	req.Header.Set("Authorization", "Bearer tok")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 503 || rec.Header().Get("Retry-After") != "1" || !strings.Contains(rec.Body.String(), `"code":"UNAVAILABLE"`) {
		t.Fatalf("%d %v %s", rec.Code, rec.Header(), rec.Body.String())
	}
}

// TestStoreCutMidReplyIs503: a Redis that accepts the connection and
// drops it before answering (a server killed mid-request) is an outage
// too: 503, not 500.
func TestStoreCutMidReplyIs503(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 64)
			_, _ = c.Read(buf) // the command arrives, no reply comes
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	rdb := redis.NewClient(&redis.Options{Addr: ln.Addr().String(), DialerRetries: 1, MaxRetries: -1, Protocol: 2})
	t.Cleanup(func() { rdb.Close() })
	h, err := keyapi.New(keyapi.Options{Store: auth.NewRedisStore(rdb, auth.RedisOptions{}), AdminToken: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("POST", "/admin/v1/keys", strings.NewReader(`{"account":"`+newWallet(1).Account+`"}`))
	req.Header.Set("Authorization", "Bearer tok")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), `"code":"UNAVAILABLE"`) {
		t.Fatalf("%d %s", rec.Code, rec.Body.String())
	}
}
