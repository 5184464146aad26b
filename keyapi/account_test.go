package keyapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"floodgate/auth"
	"floodgate/auth/storetest"
	"floodgate/keyapi"
)

const (
	pathCreate = "/api/v1/account/api_keys/create"
	pathRevoke = "/api/v1/account/api_keys/revoke"
	pathList   = "/api/v1/account/api_keys"
	pathStatus = "/api/v1/api_keys/status"
)

func (f *fixture) createKey(w *wallet) string {
	f.t.Helper()
	f.clock.Advance(time.Millisecond) // a fresh timestamp, so a fresh signature
	var data struct {
		APIKey string `json:"api_key"`
	}
	wantOK(f.t, f.do("POST", pathCreate, w.Body(f.t, keyapi.TypeCreateAPIKey, nil, f.clock.Now(), 5000), nil), 200, &data)
	return data.APIKey
}

// snapshot is every stored record, to check that bad requests change nothing.
func (f *fixture) snapshot() string {
	f.t.Helper()
	recs, _, err := f.store.List(context.Background(), auth.Filter{}, auth.Page{})
	if err != nil {
		f.t.Fatal(err)
	}
	b, _ := json.Marshal(recs)
	return string(b)
}

func TestAccount_CreateListRevoke(t *testing.T) {
	f := newFixture(t, nil)
	w := newWallet(1)
	key := f.createKey(w)
	prefix, err := auth.ParseKey(key)
	if err != nil {
		t.Fatalf("created key %q: %v", key, err)
	}
	rec, err := f.store.Get(context.Background(), prefix)
	if err != nil || rec.Account != w.Account || rec.Status != auth.StatusActive || !rec.Hash.Equal(auth.Hash(key)) || !rec.CreatedAt.Equal(f.clock.Now()) {
		t.Fatalf("stored %+v, %v", rec, err)
	}
	if info, err := f.keyring.Verify(key, f.clock.Now()); err != nil || info.Account != w.Account {
		t.Fatalf("Verify new key: %+v %v", info, err)
	}
	key2 := f.createKey(w)

	var list keyapi.AccountKeys
	f.clock.Advance(time.Millisecond)
	wantOK(t, f.do("POST", pathList, w.Body(t, keyapi.TypeListAPIKeys, nil, f.clock.Now(), 30000), nil), 200, &list)
	if len(list.ActiveAPIKeys) != 2 || list.ActiveAPIKeys[0] != prefix+"_…" || list.APIKeyLimit != 5 || len(list.Keys) != 2 ||
		list.Keys[0].Prefix != prefix || list.Keys[0].Status != "active" || list.Keys[0].LastUsedAt != nil {
		t.Fatalf("list: %+v", list)
	}
	for _, k := range list.ActiveAPIKeys {
		if strings.Contains(k, key[9:]) || strings.Contains(k, key2[9:]) {
			t.Fatal("list shows a secret")
		}
	}

	// Revoke by full key, by masked key, by prefix.
	for i, given := range []string{key, list.ActiveAPIKeys[1], prefix} {
		f.clock.Advance(time.Millisecond)
		var data map[string]string
		wantOK(t, f.do("POST", pathRevoke, w.Body(t, keyapi.TypeRevokeAPIKey, map[string]any{"api_key": given}, f.clock.Now(), 5000), nil), 200, &data)
		want := prefix
		if i == 1 {
			want = key2[:8]
		}
		if data["revoked"] != want {
			t.Fatalf("revoke %d: %v", i, data)
		}
		evs := f.events.take()
		if len(evs) != 1 || evs[0] != (auth.KeyEvent{Type: auth.EventRevoked, Prefix: want, Reason: "api key revoked"}) {
			t.Fatalf("events: %+v", evs)
		}
	}
	if _, err := f.keyring.Verify(key, f.clock.Now()); !errors.Is(err, auth.ErrInvalidKey) {
		t.Fatalf("revoked key verifies: %v", err)
	}
	f.clock.Advance(time.Millisecond)
	list = keyapi.AccountKeys{}
	wantOK(t, f.do("POST", pathList, w.Body(t, keyapi.TypeListAPIKeys, nil, f.clock.Now(), 30000), nil), 200, &list)
	if len(list.ActiveAPIKeys) != 0 || len(list.Keys) != 2 || list.Keys[0].Status != "revoked" {
		t.Fatalf("list after revoke: %+v", list)
	}
}

func TestAccount_Errors(t *testing.T) {
	f := newFixture(t, nil)
	w, other := newWallet(1), newWallet(2)
	key := f.createKey(w)
	otherKey := f.createKey(other)
	now := f.clock.Now()
	fresh := func() time.Time { f.clock.Advance(time.Millisecond); return f.clock.Now() }

	signed := func(mod func(map[string]any)) map[string]any {
		b := w.Body(t, keyapi.TypeCreateAPIKey, nil, fresh(), 5000)
		if mod != nil {
			mod(b)
		}
		return b
	}
	del := func(k string) func(map[string]any) { return func(b map[string]any) { delete(b, k) } }
	set := func(k string, v any) func(map[string]any) { return func(b map[string]any) { b[k] = v } }
	replayed := signed(nil)
	wantOK(t, f.do("POST", pathCreate, replayed, nil), 200, nil)
	before := f.snapshot()

	for _, tc := range []struct {
		name   string
		path   string
		body   any
		status int
		code   string
		msg    string
	}{
		{"bad json", pathCreate, `{"account":`, 400, "BAD_REQUEST", "Invalid JSON body"},
		{"not an object", pathCreate, `[1,2]`, 400, "BAD_REQUEST", "Invalid JSON body"},
		{"empty body", pathCreate, ``, 400, "BAD_REQUEST", "Invalid JSON body"},
		{"too large", pathCreate, `{"pad":"` + strings.Repeat("x", keyapi.MaxBodyBytes) + `"}`, 400, "BAD_REQUEST", "Request body too large (max 65536 bytes)"},
		{"missing account", pathCreate, signed(del("account")), 400, "BAD_REQUEST", "Missing required field: account"},
		{"missing signature", pathCreate, signed(del("signature")), 400, "BAD_REQUEST", "Missing required field: signature"},
		{"missing timestamp", pathCreate, signed(del("timestamp")), 400, "BAD_REQUEST", "Missing required field: timestamp"},
		{"string timestamp", pathCreate, signed(set("timestamp", "123")), 400, "BAD_REQUEST", "Invalid field timestamp: must be an integer"},
		{"negative window", pathCreate, signed(set("expiry_window", -1)), 400, "BAD_REQUEST", "Invalid field expiry_window: must be positive"},
		{"missing api_key", pathRevoke, w.Body(t, keyapi.TypeRevokeAPIKey, nil, fresh(), 5000), 400, "BAD_REQUEST", "Missing required field: api_key"},
		{"bad base58 account", pathCreate, signed(set("account", "0OIl0OIl0OIl")), 400, "INVALID_PUBLIC_KEY", "Invalid public key"},
		{"short account", pathCreate, signed(set("account", "3yZe7d")), 400, "INVALID_PUBLIC_KEY", "Invalid public key"},
		{"bad base58 signature", pathCreate, signed(set("signature", "0OIl")), 400, "INVALID_SIGNATURE", "Invalid signature"},
		{"wrong signer", pathCreate, signed(set("account", other.Account)), 400, "INVALID_SIGNATURE", "Invalid signature"},
		{"wrong type", pathRevoke, signed(set("api_key", key)), 400, "INVALID_SIGNATURE", "Invalid signature"},
		{"changed timestamp", pathCreate, signed(func(b map[string]any) { b["timestamp"] = b["timestamp"].(int64) + 1 }), 400, "INVALID_SIGNATURE", "Invalid signature"},
		{"changed window", pathCreate, signed(set("expiry_window", 5001)), 400, "INVALID_SIGNATURE", "Invalid signature"},
		{"expired", pathCreate, w.Body(t, keyapi.TypeCreateAPIKey, nil, now.Add(-31*time.Second), 30000), 400, "INVALID_MESSAGE", "Invalid message"},
		{"expired default window", pathCreate, func() map[string]any {
			b := w.Body(t, keyapi.TypeCreateAPIKey, nil, now.Add(-31*time.Second), 30000)
			delete(b, "expiry_window")
			return b
		}(), 400, "INVALID_MESSAGE", "Invalid message"},
		{"future", pathCreate, w.Body(t, keyapi.TypeCreateAPIKey, nil, now.Add(5*time.Second+time.Millisecond+time.Minute), 5000), 400, "INVALID_MESSAGE", "Invalid message"},
		{"replay", pathCreate, replayed, 400, "SIGNATURE_REPLAYED", "Signature replayed"},
		{"agent wallet", pathCreate, signed(set("agent_wallet", other.Account)), 400, "BAD_REQUEST", "Agent wallets are not supported: sign with the account key"},
		{"revoke other's key", pathRevoke, w.Body(t, keyapi.TypeRevokeAPIKey, map[string]any{"api_key": otherKey}, fresh(), 5000), 404, "API_KEY_NOT_FOUND", "API key not found"},
		{"revoke unknown key", pathRevoke, w.Body(t, keyapi.TypeRevokeAPIKey, map[string]any{"api_key": "AbCdEfGh_2mT8xQ9wY3kP7vN5rL1cZ"}, fresh(), 5000), 404, "API_KEY_NOT_FOUND", "API key not found"},
		{"revoke garbage", pathRevoke, w.Body(t, keyapi.TypeRevokeAPIKey, map[string]any{"api_key": "no!"}, fresh(), 5000), 400, "BAD_REQUEST", "Invalid field api_key: not an API key or prefix"},
		{"revoke number", pathRevoke, w.Body(t, keyapi.TypeRevokeAPIKey, map[string]any{"api_key": 7}, fresh(), 5000), 400, "BAD_REQUEST", "Invalid field api_key: must be a string"},
		{"wrong method", pathCreate + "?x", nil, 0, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.status == 0 {
				wantError(t, f.do("GET", pathCreate, nil, nil), 405, "METHOD_NOT_ALLOWED", "Method not allowed")
				return
			}
			wantError(t, f.do("POST", tc.path, tc.body, nil), tc.status, tc.code, tc.msg)
		})
	}
	if after := f.snapshot(); after != before {
		t.Fatalf("bad requests changed the store:\n%s\n%s", before, after)
	}
	if len(f.events.take()) != 0 {
		t.Fatal("bad requests published events")
	}
	// A timestamp exactly 5 s ahead is still accepted.
	wantOK(t, f.do("POST", pathCreate, w.Body(t, keyapi.TypeCreateAPIKey, nil, f.clock.Now().Add(5*time.Second), 5000), nil), 200, nil)
}

func TestAccount_SixthKey(t *testing.T) {
	f := newFixture(t, nil)
	w := newWallet(1)
	for i := 0; i < 5; i++ {
		f.createKey(w)
	}
	before := f.snapshot()
	f.clock.Advance(time.Millisecond)
	wantError(t, f.do("POST", pathCreate, w.Body(t, keyapi.TypeCreateAPIKey, nil, f.clock.Now(), 5000), nil),
		409, "TOO_MANY_KEYS", "Too many active API keys (limit 5)")
	if f.snapshot() != before {
		t.Fatal("sixth key stored")
	}
	// Another account is not affected; a configured limit is honoured.
	f.createKey(newWallet(2))
	g := newFixture(t, func(o *keyapi.Options) { o.MaxActiveKeys = 1 })
	g.createKey(w)
	g.clock.Advance(time.Millisecond)
	wantError(t, g.do("POST", pathCreate, w.Body(t, keyapi.TypeCreateAPIKey, nil, g.clock.Now(), 5000), nil),
		409, "TOO_MANY_KEYS", "Too many active API keys (limit 1)")
}

// The PyNaCl-made request bodies work end to end over HTTP.
func TestAccount_Vectors(t *testing.T) {
	f := newFixture(t, nil)
	paths := map[string]string{keyapi.TypeCreateAPIKey: pathCreate, keyapi.TypeListAPIKeys: pathList, keyapi.TypeRevokeAPIKey: pathRevoke}
	for i, v := range loadVectors(t) {
		f.clock.Set(time.UnixMilli(v.Timestamp).Add(time.Second))
		r := f.do("POST", paths[v.Type], []byte(v.RequestBody), nil)
		switch v.Type {
		case keyapi.TypeRevokeAPIKey: // the vectors' keys do not exist
			wantError(t, r, 404, "API_KEY_NOT_FOUND", "API key not found")
		default:
			wantOK(t, r, 200, nil)
		}
		// And never twice.
		wantError(t, f.do("POST", paths[v.Type], []byte(v.RequestBody), nil), 400, "SIGNATURE_REPLAYED", "Signature replayed")
		// One byte changed in the signature: refused.
		var body map[string]any
		_ = json.Unmarshal(v.RequestBody, &body)
		sig := []byte(body["signature"].(string))
		sig[10] = map[bool]byte{true: '2', false: '3'}[sig[10] != '2']
		body["signature"] = string(sig)
		wantError(t, f.do("POST", paths[v.Type], body, nil), 400, "INVALID_SIGNATURE", "Invalid signature")
		_ = i
	}
}

func TestStatus(t *testing.T) {
	live := liveUsage{}
	f := newFixture(t, func(o *keyapi.Options) { o.LiveUsage = live })
	w := newWallet(1)
	key := f.createKey(w)
	prefix := key[:8]
	hdr := func(k string) map[string]string { return map[string]string{"PF-API-KEY": k} }

	var st keyapi.KeyStatus
	wantOK(t, f.do("GET", pathStatus, nil, hdr(key)), 200, &st)
	if st.Status != "active" || st.WalletAddress != w.Account || !st.CreatedAt.Equal(f.clock.Now()) || st.LastUsedAt != nil ||
		st.RequestCount != 0 || st.RateLimit.Limit != 300 || st.RateLimit.Remaining != 300 {
		t.Fatalf("status: %+v", st)
	}
	// Usage, stored and pending, shows; X-API-Key works too; the live
	// budget comes from LiveUsage.
	_ = f.store.AddUsage(context.Background(), map[string]auth.UsageDelta{prefix: {Count: 7, LastUsed: t0}})
	live[prefix] = keyapi.KeyUsage{Credits: keyapi.BudgetUsage{Limit: 600, Remaining: 42, ResetAt: t0.Add(17 * time.Second)}}
	wantOK(t, f.do("GET", pathStatus, nil, map[string]string{"X-API-Key": key}), 200, &st)
	if st.RequestCount != 7 || st.LastUsedAt == nil || !st.LastUsedAt.Equal(t0) || st.RateLimit.Remaining != 42 || st.RateLimit.Limit != 600 {
		t.Fatalf("status with usage: %+v", st)
	}
	var raw map[string]any
	_ = json.Unmarshal(f.do("GET", pathStatus, nil, hdr(key)).env.Data, &raw)
	if raw["created_at"] != "2025-05-20T12:00:00.001Z" || raw["rate_limit"].(map[string]any)["reset_at"] != "2025-05-20T12:00:17Z" {
		t.Fatalf("ISO times: %v", raw)
	}

	// Inactive and expired keys report their status.
	mustPatch := func(body string) {
		t.Helper()
		wantOK(t, f.admin("PATCH", "/admin/v1/keys/"+prefix, body), 200, nil)
	}
	mustPatch(`{"active":false}`)
	wantOK(t, f.do("GET", pathStatus, nil, hdr(key)), 200, &st)
	if st.Status != "inactive" {
		t.Fatalf("inactive: %+v", st)
	}
	mustPatch(`{"active":true,"expires_at":"2025-05-20T11:00:00Z"}`)
	wantOK(t, f.do("GET", pathStatus, nil, hdr(key)), 200, &st)
	if st.Status != "expired" {
		t.Fatalf("expired: %+v", st)
	}

	other := f.createKey(newWallet(2))
	revoked := f.createKey(newWallet(3))
	mustRevoke := f.admin("PATCH", "/admin/v1/keys/"+revoked[:8], `{"status":"revoked"}`)
	wantOK(t, mustRevoke, 200, nil)
	for name, tc := range map[string]struct {
		hdr       map[string]string
		code, msg string
	}{
		"no header":    {nil, "API_KEY_NOT_FOUND", "API key not found: send it in the PF-API-KEY header"},
		"malformed":    {hdr("garbage"), "INVALID_API_KEY", "Invalid API Key"},
		"unknown":      {hdr("AbCdEfGh_2mT8xQ9wY3kP7vN5rL1cZ"), "INVALID_API_KEY", "Invalid API Key"},
		"wrong secret": {hdr(prefix + other[8:]), "INVALID_API_KEY", "Invalid API Key"},
		"revoked":      {hdr(revoked), "INVALID_API_KEY", "Invalid API Key"},
	} {
		t.Run(name, func(t *testing.T) {
			wantError(t, f.do("GET", pathStatus, nil, tc.hdr), 401, tc.code, tc.msg)
		})
	}
}

type liveUsage map[string]keyapi.KeyUsage

func (l liveUsage) KeyUsage(rec *auth.Record, now time.Time) (keyapi.KeyUsage, bool) {
	u, ok := l[rec.Prefix]
	return u, ok
}

func TestRouting(t *testing.T) {
	f := newFixture(t, nil)
	wantError(t, f.do("GET", "/nope", nil, nil), 404, "NOT_FOUND", "Not found")
	wantError(t, f.do("GET", "/api/v1/account/api_keys/", nil, nil), 404, "NOT_FOUND", "Not found")
	wantError(t, f.do("GET", "/healthz", nil, nil), 404, "NOT_FOUND", "Not found")
	r := f.do("DELETE", pathStatus, nil, nil)
	wantError(t, r, 405, "METHOD_NOT_ALLOWED", "Method not allowed")
	if r.header.Get("Allow") != "GET" {
		t.Fatalf("Allow: %q", r.header.Get("Allow"))
	}
	if _, err := keyapi.New(keyapi.Options{}); err == nil {
		t.Fatal("keyapi.New without a store")
	}
}

// The sidecar works the same over the Redis store.
func TestAccount_Redis(t *testing.T) {
	f := newFixtureOn(t, storetest.OpenMiniredis(t), nil)
	w := newWallet(1)
	var keys []string
	for i := 0; i < 5; i++ {
		keys = append(keys, f.createKey(w))
	}
	f.clock.Advance(time.Millisecond)
	body := w.Body(t, keyapi.TypeCreateAPIKey, nil, f.clock.Now(), 5000)
	wantError(t, f.do("POST", pathCreate, body, nil), 409, "TOO_MANY_KEYS", "Too many active API keys (limit 5)")
	wantError(t, f.do("POST", pathCreate, body, nil), 400, "SIGNATURE_REPLAYED", "Signature replayed")
	f.clock.Advance(time.Millisecond)
	wantOK(t, f.do("POST", pathRevoke, w.Body(t, keyapi.TypeRevokeAPIKey, map[string]any{"api_key": keys[0]}, f.clock.Now(), 5000), nil), 200, nil)
	if _, err := f.keyring.Verify(keys[0], f.clock.Now()); !errors.Is(err, auth.ErrInvalidKey) {
		t.Fatalf("revoked: %v", err)
	}
	f.createKey(w) // a slot is free again
	var st keyapi.KeyStatus
	wantOK(t, f.do("GET", pathStatus, nil, map[string]string{"PF-API-KEY": keys[1]}), 200, &st)
	if st.Status != "active" || st.WalletAddress != w.Account {
		t.Fatalf("status: %+v", st)
	}
}

// TestStatusUsageRollsOverAtUTCMidnight: usage_today counts the UTC day
// of the flush and reads as zero from 00:00 UTC on (fake clock), while
// usage_total keeps everything; pending (unflushed) usage shows at once;
// the operator view reports the same.
func TestStatusUsageRollsOverAtUTCMidnight(t *testing.T) {
	var u *auth.Usage
	f := newFixture(t, func(o *keyapi.Options) {
		u = auth.NewUsage(auth.UsageOptions{Store: o.Store})
		o.Usage = u
	})
	key := f.createKey(newWallet(1))
	prefix := key[:8]
	hdr := map[string]string{"PF-API-KEY": key}
	status := func() keyapi.KeyStatus {
		t.Helper()
		var st keyapi.KeyStatus
		wantOK(t, f.do("GET", pathStatus, nil, hdr), 200, &st)
		return st
	}
	m := func(msgs, bytes, credits int64) auth.UsageCounters {
		return auth.UsageCounters{MessagesDelivered: msgs, BytesDelivered: bytes, Credits: credits}
	}
	u.AddDelivered(prefix, 10, 400)
	u.AddCharged(prefix, 1, 5, f.clock.Now())
	if st := status(); st.UsageToday != m(10, 400, 5) || st.UsageTotal != m(10, 400, 5) {
		t.Fatalf("pending: %+v %+v", st.UsageToday, st.UsageTotal)
	}
	if err := u.FlushAt(context.Background(), f.clock.Now()); err != nil {
		t.Fatal(err)
	}
	u.AddDelivered(prefix, 2, 80)
	if st := status(); st.UsageToday != m(12, 480, 5) || st.UsageTotal != m(12, 480, 5) {
		t.Fatalf("stored + pending: %+v %+v", st.UsageToday, st.UsageTotal)
	}
	if err := u.FlushAt(context.Background(), f.clock.Now()); err != nil {
		t.Fatal(err)
	}
	midnight := time.Date(2025, 5, 21, 0, 0, 0, 0, time.UTC)
	if got := auth.NextUTCMidnight(f.clock.Now()); !got.Equal(midnight) {
		t.Fatalf("next midnight %v", got)
	}
	f.clock.Set(midnight.Add(-time.Nanosecond))
	if st := status(); st.UsageToday != m(12, 480, 5) {
		t.Fatalf("23:59:59.999999999: %+v", st.UsageToday)
	}
	f.clock.Set(midnight)
	if st := status(); st.UsageToday != (auth.UsageCounters{}) || st.UsageTotal != m(12, 480, 5) {
		t.Fatalf("00:00 UTC: today %+v total %+v", st.UsageToday, st.UsageTotal)
	}
	u.AddDelivered(prefix, 3, 90)
	if err := u.FlushAt(context.Background(), f.clock.Now()); err != nil {
		t.Fatal(err)
	}
	if st := status(); st.UsageToday != m(3, 90, 0) || st.UsageTotal != m(15, 570, 5) {
		t.Fatalf("next day: today %+v total %+v", st.UsageToday, st.UsageTotal)
	}
	var v keyapi.KeyView
	wantOK(t, f.admin("GET", "/admin/v1/keys/"+prefix, nil), 200, &v)
	if v.UsageToday != m(3, 90, 0) || v.UsageTotal != m(15, 570, 5) {
		t.Fatalf("operator view: %+v %+v", v.UsageToday, v.UsageTotal)
	}
}

// Without a limiter the status endpoint reports each configured quota
// unused, reset_at at the next calendar boundary (calendar quotas) and no
// reset_at for total.
func TestStatus_CalendarQuotasWithoutLimiter(t *testing.T) {
	f := newFixture(t, nil)
	ck := f.adminCreate(`{"account":"` + newWallet(1).Account + `","quotas":{"daily":100,"weekly":500,"total":9000,"calendar":true}}`)
	r := f.do("GET", pathStatus, nil, map[string]string{"PF-API-KEY": ck.APIKey})
	// t0 is Tuesday 2025-05-20 12:00:00.001 UTC.
	want := `"quotas":{"daily":{"limit":100,"used":0,"reset_at":"2025-05-21T00:00:00Z"},"total":{"limit":9000,"used":0},"weekly":{"limit":500,"used":0,"reset_at":"2025-05-26T00:00:00Z"}}`
	if r.status != 200 || !strings.Contains(r.raw, want) {
		t.Fatalf("%d %s\nwant %s", r.status, r.raw, want)
	}
	// calendar alone (no daily, weekly or monthly quota) is accepted and
	// changes nothing; the status has no quotas.
	ck = f.adminCreate(`{"account":"` + newWallet(2).Account + `","quotas":{"calendar":true}}`)
	if !ck.Key.Quotas.Calendar {
		t.Fatalf("calendar flag not kept: %+v", ck.Key.Quotas)
	}
	r = f.do("GET", pathStatus, nil, map[string]string{"PF-API-KEY": ck.APIKey})
	if r.status != 200 || strings.Contains(r.raw, `"quotas"`) {
		t.Fatalf("%d %s", r.status, r.raw)
	}
}
