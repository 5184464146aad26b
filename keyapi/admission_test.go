package keyapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"floodgate/internal/testdeps"
	"floodgate/keyapi"
	"floodgate/limiter"

	"github.com/nats-io/nats.go"
)

// testClientIP is the client address of the sidecar tests: the
// X-Test-Client header, else the socket peer (the node's real rule, with
// trusted proxies, is tested in package node over real sockets).
func testClientIP(r *http.Request) netip.Addr {
	if h := r.Header.Get("X-Test-Client"); h != "" {
		return netip.MustParseAddr(h)
	}
	ap, _ := netip.ParseAddrPort(r.RemoteAddr)
	return ap.Addr()
}

// withLimiter gives the sidecar a real limiter with cfg.
func withLimiter(t *testing.T, cfg limiter.Config) func(*keyapi.Options) {
	l, err := limiter.New(limiter.Options{Config: &cfg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return func(o *keyapi.Options) { o.Limiter, o.ClientIP = l, testClientIP }
}

func from(ip string, h map[string]string) map[string]string {
	out := map[string]string{"X-Test-Client": ip}
	for k, v := range h {
		out[k] = v
	}
	return out
}

// TestStatus_IPBudget: the status endpoint takes limits.status_api per
// client IP, whatever the key (also unknown ones), with the RateLimit
// fields; other IPs are unaffected.
func TestStatus_IPBudget(t *testing.T) {
	cfg := limiter.DefaultConfig()
	cfg.StatusAPI.PerIPPerMinute = 5
	f := newFixture(t, withLimiter(t, cfg))
	key := f.createKey(newWallet(1))
	hdr := from("198.51.100.1", map[string]string{"PF-API-KEY": key})
	for i := 0; i < 5; i++ {
		r := f.do("GET", pathStatus, nil, hdr)
		wantOK(t, r, 200, nil)
		if r.header.Get("RateLimit-Policy") != `"status_api";q=5;w=60` || !strings.HasPrefix(r.header.Get("RateLimit"), `"status_api";r=`) {
			t.Fatalf("request %d: %v", i, r.header)
		}
	}
	r := f.do("GET", pathStatus, nil, hdr)
	wantError(t, r, http.StatusTooManyRequests, "RATE_LIMITED", "Rate limit exceeded")
	if r.header.Get("Retry-After") != "12" || r.header.Get("RateLimit") != `"status_api";r=0;t=12` || r.header.Get("RateLimit-Policy") != `"status_api";q=5;w=60` {
		t.Fatalf("429 fields: %v", r.header)
	}
	// Any key, even none, is charged to the IP.
	wantError(t, f.do("GET", pathStatus, nil, from("198.51.100.1", nil)), http.StatusTooManyRequests, "RATE_LIMITED", "Rate limit exceeded")
	wantOK(t, f.do("GET", pathStatus, nil, from("198.51.100.2", map[string]string{"PF-API-KEY": key})), 200, nil)
	f.clock.Advance(12 * time.Second)
	wantOK(t, f.do("GET", pathStatus, nil, hdr), 200, nil)
}

// TestStatus_KeyBudget: besides the per-IP budget, one key may be asked
// about limits.status_api.per_key_per_minute times per minute whatever the
// IP (docs/rest.md: 60): polling a key from many IPs is refused too, other
// keys are unaffected, and the key's budget refills; a refused request is
// not a failed key attempt.
func TestStatus_KeyBudget(t *testing.T) {
	cfg := limiter.DefaultConfig()
	cfg.StatusAPI.PerKeyPerMinute = 4
	f := newFixture(t, withLimiter(t, cfg))
	w := newWallet(1)
	key, other := f.createKey(w), f.createKey(w)
	for i := 0; i < 4; i++ {
		ip := "198.51.100." + string(rune('1'+i))
		wantOK(t, f.do("GET", pathStatus, nil, from(ip, map[string]string{"PF-API-KEY": key})), 200, nil)
	}
	r := f.do("GET", pathStatus, nil, from("198.51.100.9", map[string]string{"PF-API-KEY": key}))
	wantError(t, r, http.StatusTooManyRequests, "RATE_LIMITED", "Rate limit exceeded")
	if r.header.Get("Retry-After") != "15" || r.header.Get("RateLimit-Policy") != `"status_api_key";q=4;w=60` || r.header.Get("RateLimit") != `"status_api_key";r=0;t=15` {
		t.Fatalf("429 fields: %v", r.header)
	}
	wantOK(t, f.do("GET", pathStatus, nil, from("198.51.100.9", map[string]string{"PF-API-KEY": other})), 200, nil)
	for i := 0; i < 25; i++ { // refusals are not failed attempts: no IP block
		wantError(t, f.do("GET", pathStatus, nil, from("198.51.100.10", map[string]string{"PF-API-KEY": key})), http.StatusTooManyRequests, "RATE_LIMITED", "Rate limit exceeded")
	}
	f.clock.Advance(15 * time.Second)
	wantOK(t, f.do("GET", pathStatus, nil, from("198.51.100.10", map[string]string{"PF-API-KEY": key})), 200, nil)
}

// TestStatus_FailedKeys: unknown, malformed, wrong and revoked keys on the
// status endpoint are failed key attempts of the IP: the 21st within 60 s
// blocks it (403 IP_BLOCKED, for valid keys too), as at the upgrade.
func TestStatus_FailedKeys(t *testing.T) {
	f := newFixture(t, withLimiter(t, limiter.DefaultConfig()))
	w := newWallet(1)
	key := f.createKey(w)
	revoked := f.createKey(w)
	mustRevoke := f.admin("PATCH", "/admin/v1/keys/"+revoked[:8], `{"status":"revoked"}`)
	wantOK(t, mustRevoke, 200, nil)
	bad := []string{"nonsense", "Unkn0wn1_2222222222222222222222", "Unknown1_2222222222222222222222", key[:9] + "2222222222222222222222", revoked}
	ip := "203.0.113.9"
	for i := 0; i < 20; i++ {
		wantError(t, f.do("GET", pathStatus, nil, from(ip, map[string]string{"PF-API-KEY": bad[i%len(bad)]})), 401, "INVALID_API_KEY", "Invalid API Key")
	}
	r := f.do("GET", pathStatus, nil, from(ip, map[string]string{"PF-API-KEY": bad[0]}))
	wantError(t, r, http.StatusForbidden, "IP_BLOCKED", "IP temporarily blocked")
	if r.header.Get("Retry-After") != "300" || r.header.Get("RateLimit-Policy") != `"ip_block";q=20;w=60` {
		t.Fatalf("block fields: %v", r.header)
	}
	wantError(t, f.do("GET", pathStatus, nil, from(ip, map[string]string{"PF-API-KEY": key})), http.StatusForbidden, "IP_BLOCKED", "IP temporarily blocked")
	wantOK(t, f.do("GET", pathStatus, nil, from("203.0.113.10", map[string]string{"PF-API-KEY": key})), 200, nil)
	// A missing header is not a guess.
	for i := 0; i < 30; i++ {
		wantError(t, f.do("GET", pathStatus, nil, from("203.0.113.11", nil)), 401, "API_KEY_NOT_FOUND", "API key not found: send it in the PF-API-KEY header")
	}
}

// TestAccount_IPBudget: create, revoke and list share one per-IP budget
// (limits.account_api), charged before the body is read: a bad body costs
// a request too. The 429 carries Retry-After and the RateLimit fields, and
// stores nothing.
func TestAccount_IPBudget(t *testing.T) {
	cfg := limiter.DefaultConfig()
	cfg.AccountAPI.PerIPPerMinute = 3
	f := newFixture(t, withLimiter(t, cfg))
	w := newWallet(1)
	ip := from("198.51.100.7", nil)
	fresh := func() time.Time { f.clock.Advance(time.Millisecond); return f.clock.Now() }
	wantOK(t, f.do("POST", pathCreate, w.Body(t, keyapi.TypeCreateAPIKey, nil, fresh(), 5000), ip), 200, nil)
	r := f.do("POST", pathList, w.Body(t, keyapi.TypeListAPIKeys, nil, fresh(), 5000), ip)
	wantOK(t, r, 200, nil)
	if r.header.Get("RateLimit") != `"account_api";r=1;t=40` || r.header.Get("RateLimit-Policy") != `"account_api";q=3;w=60` {
		t.Fatalf("fields: %v", r.header)
	}
	wantError(t, f.do("POST", pathRevoke, "{", ip), 400, "BAD_REQUEST", "Invalid JSON body")
	before := f.snapshot()
	r = f.do("POST", pathCreate, w.Body(t, keyapi.TypeCreateAPIKey, nil, fresh(), 5000), ip)
	wantError(t, r, http.StatusTooManyRequests, "RATE_LIMITED", "Rate limit exceeded")
	if r.header.Get("Retry-After") != "20" || r.header.Get("RateLimit") != `"account_api";r=0;t=20` {
		t.Fatalf("429 fields: %v", r.header)
	}
	if f.snapshot() != before {
		t.Fatal("a refused create stored something")
	}
	wantOK(t, f.do("POST", pathCreate, w.Body(t, keyapi.TypeCreateAPIKey, nil, fresh(), 5000), from("198.51.100.8", nil)), 200, nil)
	// The admin API and /openapi.json are not charged.
	for i := 0; i < 5; i++ {
		wantOK(t, f.do("GET", "/admin/v1/keys", nil, from("198.51.100.7", map[string]string{"Authorization": "Bearer " + adminToken})), 200, nil)
	}
}

// TestAccount_FileVerifier: only the wallets of the file may create keys
// (403 ACCOUNT_NOT_ALLOWED otherwise, nothing stored); Reload re-reads it;
// keys made before stay usable, listable and revocable.
func TestAccount_FileVerifier(t *testing.T) {
	w1, w2 := newWallet(1), newWallet(2)
	path := filepath.Join(t.TempDir(), "allow.txt")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("# allowed wallets\n" + w1.Account + "\n\n")
	v, err := keyapi.NewFileVerifier(path)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(o *keyapi.Options) { o.Verifier = v })
	key1 := f.createKey(w1)
	before := f.snapshot()
	f.clock.Advance(time.Millisecond)
	wantError(t, f.do("POST", pathCreate, w2.Body(t, keyapi.TypeCreateAPIKey, nil, f.clock.Now(), 5000), nil),
		403, "ACCOUNT_NOT_ALLOWED", "Account not allowed to create API keys")
	if f.snapshot() != before {
		t.Fatal("refused account stored a key")
	}
	// A bad signature is still a bad signature, not a refused account.
	body := w2.Body(t, keyapi.TypeCreateAPIKey, nil, f.clock.Now(), 5000)
	body["signature"] = w1.Body(t, keyapi.TypeCreateAPIKey, nil, f.clock.Now(), 5000)["signature"]
	wantError(t, f.do("POST", pathCreate, body, nil), 400, "INVALID_SIGNATURE", "Invalid signature")

	write(w2.Account + "\n")
	if err := v.Reload(); err != nil {
		t.Fatal(err)
	}
	f.createKey(w2)
	f.clock.Advance(time.Millisecond)
	wantError(t, f.do("POST", pathCreate, w1.Body(t, keyapi.TypeCreateAPIKey, nil, f.clock.Now(), 5000), nil),
		403, "ACCOUNT_NOT_ALLOWED", "Account not allowed to create API keys")
	// w1's key still works everywhere.
	wantOK(t, f.do("GET", pathStatus, nil, map[string]string{"PF-API-KEY": key1}), 200, nil)
	f.clock.Advance(time.Millisecond)
	wantOK(t, f.do("POST", pathList, w1.Body(t, keyapi.TypeListAPIKeys, nil, f.clock.Now(), 5000), nil), 200, nil)
	f.clock.Advance(time.Millisecond)
	wantOK(t, f.do("POST", pathRevoke, w1.Body(t, keyapi.TypeRevokeAPIKey, map[string]any{"api_key": key1}, f.clock.Now(), 5000), nil), 200, nil)

	// A bad file is refused with its line, and a failed reload keeps the list.
	write(w1.Account + "\nnot-a-wallet\n")
	if err := v.Reload(); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("bad file: %v", err)
	}
	if v.Len() != 1 {
		t.Fatalf("list after a failed reload: %d", v.Len())
	}
	if _, err := keyapi.NewFileVerifier(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("missing file accepted")
	}
}

// TestAccount_NATSVerifier: a service answers over NATS; a refusal is 403,
// no answer within the timeout or no responder at all 503 UNAVAILABLE
// with Retry-After.
func TestAccount_NATSVerifier(t *testing.T) {
	nc, err := nats.Connect(testdeps.EmbeddedNATS(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	w1, w2, w3 := newWallet(1), newWallet(2), newWallet(3)
	sub, err := nc.Subscribe("accounts.allowed", func(m *nats.Msg) {
		var req struct{ Account string }
		_ = json.Unmarshal(m.Data, &req)
		switch req.Account {
		case w1.Account:
			_ = m.Respond([]byte(`{"allowed":true}`))
		case w2.Account:
			_ = m.Respond([]byte(`{"allowed":false}`))
		} // w3: silence
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	v := keyapi.NewNATSVerifier(nc, "accounts.allowed", 200*time.Millisecond)
	f := newFixture(t, func(o *keyapi.Options) { o.Verifier = v })
	f.createKey(w1)
	f.clock.Advance(time.Millisecond)
	wantError(t, f.do("POST", pathCreate, w2.Body(t, keyapi.TypeCreateAPIKey, nil, f.clock.Now(), 5000), nil),
		403, "ACCOUNT_NOT_ALLOWED", "Account not allowed to create API keys")
	f.clock.Advance(time.Millisecond)
	start := time.Now()
	r := f.do("POST", pathCreate, w3.Body(t, keyapi.TypeCreateAPIKey, nil, f.clock.Now(), 5000), nil)
	wantError(t, r, 503, "UNAVAILABLE", "account verifier unavailable, retry")
	if took := time.Since(start); took > 2*time.Second || r.header.Get("Retry-After") != "1" {
		t.Fatalf("timeout answered after %v, Retry-After %q", took, r.header.Get("Retry-After"))
	}
	noone := keyapi.NewNATSVerifier(nc, "accounts.nobody", time.Second)
	if _, err := noone.Allowed(context.Background(), w1.Account); err == nil {
		t.Fatal("no responder answered")
	}
	for _, spec := range []string{"nats:", "file:", "ldap:x", "nats:a b"} {
		if _, err := keyapi.ParseAccountVerifier(spec, nc); err == nil {
			t.Errorf("spec %q accepted", spec)
		}
	}
	if _, err := keyapi.ParseAccountVerifier("nats:accounts.allowed", nil); err == nil {
		t.Error("nats verifier without a connection accepted")
	}
	if v, err := keyapi.ParseAccountVerifier("open", nil); err != nil || v == nil {
		t.Errorf("open: %v", err)
	}
}

// TestAccount_ExpiryWindow: an expiry_window above the maximum (5 min by
// default) is refused before anything is stored; the replay entry of an
// accepted request lives no longer than its window.
func TestAccount_ExpiryWindow(t *testing.T) {
	f := newFixture(t, nil)
	w := newWallet(1)
	f.clock.Advance(time.Millisecond)
	before := f.snapshot()
	wantError(t, f.do("POST", pathCreate, w.Body(t, keyapi.TypeCreateAPIKey, nil, f.clock.Now(), 300001), nil),
		400, "EXPIRY_WINDOW_TOO_LONG", "expiry_window too long (max 300000 ms)")
	wantError(t, f.do("POST", pathCreate, w.Body(t, keyapi.TypeCreateAPIKey, nil, f.clock.Now(), 315_360_000_000_000), nil),
		400, "EXPIRY_WINDOW_TOO_LONG", "expiry_window too long (max 300000 ms)")
	if f.snapshot() != before {
		t.Fatal("refused request stored something")
	}
	wantOK(t, f.do("POST", pathCreate, w.Body(t, keyapi.TypeCreateAPIKey, nil, f.clock.Now(), 300000), nil), 200, nil)

	g := newFixture(t, func(o *keyapi.Options) { o.MaxExpiryWindow = time.Minute })
	g.clock.Advance(time.Millisecond)
	wantError(t, g.do("POST", pathCreate, w.Body(t, keyapi.TypeCreateAPIKey, nil, g.clock.Now(), 60001), nil),
		400, "EXPIRY_WINDOW_TOO_LONG", "expiry_window too long (max 60000 ms)")
}

// TestAccount_CORS: the account endpoints answer preflights of the
// allowed origins and refuse other cross-origin pages; nothing else on
// the API is CORS-enabled.
func TestAccount_CORS(t *testing.T) {
	f := newFixture(t, func(o *keyapi.Options) { o.AllowedOrigins = []string{"app.example.com", "https://*.trade.example"} })
	raw := func(method, path, origin string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, strings.NewReader(""))
		req.Host = "api.floodgate.example"
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "content-type")
		rec := httptest.NewRecorder()
		f.h.ServeHTTP(rec, req)
		return rec
	}
	for _, path := range []string{pathCreate, pathRevoke, pathList} {
		for _, origin := range []string{"https://app.example.com", "https://web.trade.example"} {
			r := raw("OPTIONS", path, origin)
			h := r.Header()
			if r.Code != 204 || h.Get("Access-Control-Allow-Origin") != origin || h.Get("Access-Control-Allow-Methods") != "POST" ||
				h.Get("Access-Control-Allow-Headers") != "Content-Type" || h.Get("Vary") != "Origin" {
				t.Fatalf("preflight %s from %s: %d %v", path, origin, r.Code, h)
			}
		}
		r := raw("OPTIONS", path, "https://evil.example")
		if r.Code != 403 || r.Header().Get("Access-Control-Allow-Origin") != "" || !strings.Contains(r.Body.String(), "ORIGIN_NOT_ALLOWED") {
			t.Fatalf("preflight from a stranger: %d %v %s", r.Code, r.Header(), r.Body)
		}
		if r := raw("OPTIONS", path, ""); r.Code != 204 || r.Header().Get("Allow") != "POST, OPTIONS" {
			t.Fatalf("plain OPTIONS: %d %v", r.Code, r.Header())
		}
	}
	// Real requests: the allowed origin gets the field, a stranger 403.
	w := newWallet(1)
	f.clock.Advance(time.Millisecond)
	r := f.do("POST", pathCreate, w.Body(t, keyapi.TypeCreateAPIKey, nil, f.clock.Now(), 5000), map[string]string{"Origin": "https://app.example.com"})
	wantOK(t, r, 200, nil)
	if r.header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
		t.Fatalf("create from an allowed origin: %v", r.header)
	}
	f.clock.Advance(time.Millisecond)
	before := f.snapshot()
	wantError(t, f.do("POST", pathCreate, w.Body(t, keyapi.TypeCreateAPIKey, nil, f.clock.Now(), 5000), map[string]string{"Origin": "https://evil.example"}),
		403, "ORIGIN_NOT_ALLOWED", "origin not allowed")
	if f.snapshot() != before {
		t.Fatal("cross-origin create stored a key")
	}
	// Status, admin and openapi: no preflight, no CORS fields.
	for _, path := range []string{pathStatus, "/admin/v1/keys", "/openapi.json"} {
		r := raw("OPTIONS", path, "https://app.example.com")
		if r.Code == 204 || r.Header().Get("Access-Control-Allow-Origin") != "" {
			t.Fatalf("OPTIONS %s: %d %v", path, r.Code, r.Header())
		}
	}
	r = f.do("GET", pathStatus, nil, map[string]string{"Origin": "https://app.example.com", "PF-API-KEY": "x"})
	if r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatal("status endpoint sent a CORS field")
	}
}
