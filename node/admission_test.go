package node_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"floodgate/auth"
	"floodgate/keyapi"
	"floodgate/node"
	"floodgate/node/nodetest"

	"github.com/coder/websocket"
	"github.com/mr-tron/base58"
)

// Account admission, the status endpoint, signatures, purge and secrets,
// through a node's API listener (issue 11, "Account admission",
// "Signatures", "Key records", "Secrets").

// testWallet signs account requests like the Pacifica SDK.
type testWallet struct {
	priv    ed25519.PrivateKey
	account string
	lastTS  int64 // each request gets a later timestamp: a fresh signature
}

func newTestWallet(t testing.TB) *testWallet {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &testWallet{priv: priv, account: base58.Encode(priv.Public().(ed25519.PublicKey))}
}

// signed returns a signed request body of typ with payload fields at the
// top level.
func (w *testWallet) signed(t testing.TB, typ string, payload map[string]any, window int64) []byte {
	t.Helper()
	ts := max(time.Now().UnixMilli(), w.lastTS+1)
	w.lastTS = ts
	b, err := keyapi.SignRequest(w.priv, typ, payload, ts, window)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(b)
	return out
}

// apiResult is an API answer.
type apiResult struct {
	status int
	header http.Header
	env    keyapi.Envelope
}

func (r apiResult) code() string {
	if r.env.Code == nil {
		return ""
	}
	return *r.env.Code
}

// call makes one API request with headers (pairs) over a fresh socket.
func call(t testing.TB, n *nodetest.Node, method, path string, body []byte, headers ...string) apiResult {
	t.Helper()
	req, err := http.NewRequest(method, n.APIURL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	req.Close = true
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := apiResult{status: resp.StatusCode, header: resp.Header}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &r.env); err != nil {
			t.Fatalf("%s %s: %d %q", method, path, resp.StatusCode, raw)
		}
	}
	return r
}

const (
	pathCreate = "/api/v1/account/api_keys/create"
	pathList   = "/api/v1/account/api_keys"
	pathStatus = "/api/v1/api_keys/status"
)

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

// TestFreshWalletsFromOneIPAreBudgeted: one IP minting keys with a fresh
// wallet per request gets limits.account_api (30) of them, then 429 with
// Retry-After and the RateLimit fields; another client IP (told by the
// trusted proxy) has its own budget. Before: 100 keys in 0.79 s.
func TestFreshWalletsFromOneIPAreBudgeted(t *testing.T) {
	n := startNode(t, func(c *node.Config) { c.TrustedProxies = loopback })
	created, refused := 0, 0
	var last apiResult
	start := time.Now()
	for i := 0; i < 40; i++ {
		r := call(t, n, "POST", pathCreate, newTestWallet(t).signed(t, keyapi.TypeCreateAPIKey, nil, 5000), "X-Forwarded-For", "203.0.113.5")
		switch r.status {
		case 200:
			created++
		case 429:
			refused++
			last = r
		default:
			t.Fatalf("create %d: %d %s", i, r.status, r.code())
		}
	}
	// 30 at once, plus one per 2 s refilled while the loop ran.
	if bound := 30 + int(time.Since(start)/(2*time.Second)); created < 30 || created > bound {
		t.Fatalf("%d keys created from one IP in %v (bound %d), %d refused", created, time.Since(start), bound, refused)
	}
	if last.code() != "RATE_LIMITED" || last.header.Get("Retry-After") == "" ||
		last.header.Get("RateLimit-Policy") != `"account_api";q=30;w=60` || !strings.HasPrefix(last.header.Get("RateLimit"), `"account_api";r=0;t=`) {
		t.Fatalf("429: %s %v", last.code(), last.header)
	}
	// The list shares the budget; another IP does not.
	if r := call(t, n, "POST", pathList, newTestWallet(t).signed(t, keyapi.TypeListAPIKeys, nil, 5000), "X-Forwarded-For", "203.0.113.5"); r.status != 429 {
		t.Fatalf("list from the same IP: %d", r.status)
	}
	if r := call(t, n, "POST", pathCreate, newTestWallet(t).signed(t, keyapi.TypeCreateAPIKey, nil, 5000), "X-Forwarded-For", "203.0.113.6"); r.status != 200 {
		t.Fatalf("create from another IP: %d %s", r.status, r.code())
	}
}

// TestStatusEndpointIsNoKeyOracle: bad keys on the status endpoint count
// toward the IP block, which then holds for upgrades as well; the status
// endpoint has its own per-IP budget. Before: unknown keys there did not
// count.
func TestStatusEndpointIsNoKeyOracle(t *testing.T) {
	n := startNode(t, func(c *node.Config) { c.TrustedProxies = loopback })
	admin := keyapi.NewAdminClient(n.APIURL, adminToken, nil)
	good, err := admin.CreateKey(context.Background(), keyapi.CreateKeyRequest{Account: accountA})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		r := call(t, n, "GET", pathStatus, nil, "X-Forwarded-For", "203.0.113.7", "PF-API-KEY", fmt.Sprintf("Guess%03d_2mT8xQ9wY3kP7vN5rL1cZ", i))
		if r.status != 401 || r.code() != "INVALID_API_KEY" {
			t.Fatalf("guess %d: %d %s", i, r.status, r.code())
		}
	}
	r := call(t, n, "GET", pathStatus, nil, "X-Forwarded-For", "203.0.113.7", "PF-API-KEY", "Guess999_2mT8xQ9wY3kP7vN5rL1cZ")
	if r.status != 403 || r.code() != "IP_BLOCKED" {
		t.Fatalf("21st guess: %d %s", r.status, r.code())
	}
	r = call(t, n, "GET", pathStatus, nil, "X-Forwarded-For", "203.0.113.7", "PF-API-KEY", good.APIKey)
	if r.status != 403 || r.code() != "IP_BLOCKED" {
		t.Fatalf("after 21 guesses, even the good key: %d %s", r.status, r.code())
	}
	// The block is the IP's: its upgrades are refused too.
	h := http.Header{"X-Forwarded-For": {"203.0.113.7"}}
	if _, resp, err := websocket.Dial(context.Background(), n.WSURL, &websocket.DialOptions{HTTPHeader: h}); err == nil || resp == nil || resp.StatusCode != 403 {
		t.Fatalf("upgrade from the blocked IP: %v", err)
	}
	// Another IP: one key 60 times a minute (the key's budget), then 429;
	// the IP's 120 a minute whatever the key, then 429.
	for i := 0; i < 60; i++ {
		if r := call(t, n, "GET", pathStatus, nil, "X-Forwarded-For", "198.51.100.3", "PF-API-KEY", good.APIKey); r.status != 200 {
			t.Fatalf("status %d: %d %s", i, r.status, r.code())
		}
	}
	r = call(t, n, "GET", pathStatus, nil, "X-Forwarded-For", "198.51.100.3", "PF-API-KEY", good.APIKey)
	if r.status != 429 || r.header.Get("RateLimit-Policy") != `"status_api_key";q=60;w=60` || r.header.Get("Retry-After") == "" {
		t.Fatalf("61st status of one key: %d %v", r.status, r.header)
	}
	for i := 61; i < 120; i++ { // no key: charged to the IP, not a failed attempt
		if r := call(t, n, "GET", pathStatus, nil, "X-Forwarded-For", "198.51.100.3"); r.status != 401 || r.code() != "API_KEY_NOT_FOUND" {
			t.Fatalf("status %d: %d %s", i, r.status, r.code())
		}
	}
	r = call(t, n, "GET", pathStatus, nil, "X-Forwarded-For", "198.51.100.3", "PF-API-KEY", good.APIKey)
	if r.status != 429 || r.header.Get("RateLimit-Policy") != `"status_api";q=120;w=60` || r.header.Get("Retry-After") == "" {
		t.Fatalf("121st status: %d %v", r.status, r.header)
	}
}

// TestAccountVerifierOverTheNode: with --account-verifier file:PATH only
// listed wallets create keys; Reload (SIGHUP) re-reads the file; keys
// made before keep working.
func TestAccountVerifierOverTheNode(t *testing.T) {
	w1, w2 := newTestWallet(t), newTestWallet(t)
	path := filepath.Join(t.TempDir(), "wallets")
	if err := os.WriteFile(path, []byte(w1.account+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n := startNode(t, func(c *node.Config) { c.AccountVerifier = "file:" + path })
	if r := call(t, n, "POST", pathCreate, w1.signed(t, keyapi.TypeCreateAPIKey, nil, 5000)); r.status != 200 {
		t.Fatalf("listed wallet: %d %s", r.status, r.code())
	}
	var key struct {
		APIKey string `json:"api_key"`
	}
	r := call(t, n, "POST", pathCreate, w1.signed(t, keyapi.TypeCreateAPIKey, nil, 5001))
	_ = json.Unmarshal(r.env.Data, &key)
	if r := call(t, n, "POST", pathCreate, w2.signed(t, keyapi.TypeCreateAPIKey, nil, 5000)); r.status != 403 || r.code() != "ACCOUNT_NOT_ALLOWED" {
		t.Fatalf("unlisted wallet: %d %s", r.status, r.code())
	}
	if err := os.WriteFile(path, []byte(w2.account+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := n.Reload(node.DefaultFile()); err != nil {
		t.Fatal(err)
	}
	if r := call(t, n, "POST", pathCreate, w2.signed(t, keyapi.TypeCreateAPIKey, nil, 5000)); r.status != 200 {
		t.Fatalf("wallet listed after reload: %d %s", r.status, r.code())
	}
	if r := call(t, n, "POST", pathCreate, w1.signed(t, keyapi.TypeCreateAPIKey, nil, 5002)); r.status != 403 {
		t.Fatalf("wallet removed by reload: %d", r.status)
	}
	c, _, err := websocket.Dial(context.Background(), n.WSURL, &websocket.DialOptions{HTTPHeader: keyHeader(key.APIKey)})
	if err != nil {
		t.Fatalf("key of a wallet no longer listed: %v", err)
	}
	c.CloseNow()
	// A broken file is refused by Reload and the old list stays.
	if err := os.WriteFile(path, []byte("nonsense\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := n.Reload(node.DefaultFile()); err == nil {
		t.Fatal("reload accepted a broken allow list")
	}
	if r := call(t, n, "POST", pathCreate, w2.signed(t, keyapi.TypeCreateAPIKey, nil, 5003)); r.status != 200 {
		t.Fatalf("after a refused reload: %d", r.status)
	}
}

// TestLongExpiryWindowRefused: a signature valid for 10,000 years is
// refused; nothing is remembered for it. Before: accepted, and kept.
func TestLongExpiryWindowRefused(t *testing.T) {
	n := startNode(t, nil)
	w := newTestWallet(t)
	r := call(t, n, "POST", pathCreate, w.signed(t, keyapi.TypeCreateAPIKey, nil, 10_000*365*24*3600*1000))
	if r.status != 400 || r.code() != "EXPIRY_WINDOW_TOO_LONG" || *r.env.Error != "expiry_window too long (max 300000 ms)" {
		t.Fatalf("10,000-year window: %d %s", r.status, r.code())
	}
	if r := call(t, n, "POST", pathCreate, w.signed(t, keyapi.TypeCreateAPIKey, nil, 300000)); r.status != 200 {
		t.Fatalf("5-minute window: %d %s", r.status, r.code())
	}
}

// TestRevokedKeysArePurged: a key revoked longer ago than the retention
// is deleted with its events by the node's purge; live keys stay.
func TestRevokedKeysArePurged(t *testing.T) {
	n := startNode(t, func(c *node.Config) { c.PurgeInterval, c.RevokedRetention = 50*time.Millisecond, 300*time.Millisecond })
	admin := keyapi.NewAdminClient(n.APIURL, adminToken, nil)
	ctx := context.Background()
	live, _ := admin.CreateKey(ctx, keyapi.CreateKeyRequest{Account: accountA})
	gone, _ := admin.CreateKey(ctx, keyapi.CreateKeyRequest{Account: accountA, Alias: "bot"})
	c, _, err := websocket.Dial(ctx, n.WSURL, &websocket.DialOptions{HTTPHeader: keyHeader(gone.APIKey)})
	if err != nil {
		t.Fatal(err)
	}
	st := auth.StatusRevoked
	v, err := admin.PatchKey(ctx, gone.Key.Prefix, keyapi.KeyPatch{Status: &st})
	if err != nil || v.RevokedAt == nil {
		t.Fatalf("revoke: %+v %v", v, err)
	}
	c.CloseNow()
	eventually(t, "the close event", func() bool { evs, _ := admin.KeyEvents(ctx, gone.Key.Prefix, 10); return len(evs) > 0 })
	eventually(t, "the purge", func() bool { _, err := admin.GetKey(ctx, gone.Key.Prefix); return err != nil })
	if _, err := admin.KeyEvents(ctx, gone.Key.Prefix, 10); err == nil {
		t.Fatal("events outlived their key")
	}
	if _, err := admin.GetKey(ctx, live.Key.Prefix); err != nil {
		t.Fatalf("live key purged: %v", err)
	}
	if _, err := admin.CreateKey(ctx, keyapi.CreateKeyRequest{Account: accountA, Alias: "bot"}); err != nil {
		t.Fatalf("alias of the purged key: %v", err)
	}
	if v := metricValue(t, n, "floodgate_keys_purged_total"); v != 1 {
		t.Fatalf("purged metric %v", v)
	}
}

// TestRefusalFloodIsCoalesced: thousands of refused upgrades of one key
// in a burst become one event per second (Count), written in a few store
// transactions, and no other key's event is dropped. Before: one fsynced
// transaction per refusal through one shared queue (7,843 writes and
// 7,157 events of other keys dropped for 15k refusals). The 15k figure is
// BenchmarkFigure_RefusalFlood.
func TestRefusalFloodIsCoalesced(t *testing.T) {
	n := startNode(t, nil)
	r := refusalEventFlood(t, n, 2000, 16, 20)
	if r.dropped != 0 || r.otherEvents != 20 || r.counted != 2000 || r.refusalEvents > r.seconds+1 || r.writes > float64(8*r.seconds+25) {
		t.Fatalf("%+v", r)
	}
}

// eventFloodResult is what refusalEventFlood measured.
type eventFloodResult struct {
	refusals, seconds           int
	refusalEvents, counted      int     // events of the flooded key; refusals they count
	otherEvents                 int     // close events of the other key
	writes, dropped             float64 // store writes of events; dropped events
	elapsed                     time.Duration
	refusalsPerSecond           float64
	otherSessions, floodWorkers int
}

// refusalEventFlood sends total refused upgrades of one inactive key with
// workers sockets at a time while another key opens and closes others
// sessions, then reads both keys' events.
func refusalEventFlood(t testing.TB, n *nodetest.Node, total, workers, others int) eventFloodResult {
	admin := keyapi.NewAdminClient(n.APIURL, adminToken, nil)
	ctx := context.Background()
	off := false
	flooded, err := admin.CreateKey(ctx, keyapi.CreateKeyRequest{Account: accountA, Active: &off})
	if err != nil {
		t.Fatal(err)
	}
	other, err := admin.CreateKey(ctx, keyapi.CreateKeyRequest{Account: accountA})
	if err != nil {
		t.Fatal(err)
	}
	writes0 := metricValue(t, n, "floodgate_key_event_writes_total")
	req := upgradeRequest("PF-API-KEY: " + flooded.APIKey + "\r\n")
	start := time.Now()
	var wg sync.WaitGroup
	next := make(chan struct{})
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				c := dialRaw(t, n.WSAddr())
				c.send(req)
				if resp := c.response(); resp.StatusCode != 401 {
					t.Errorf("flooded key: %d", resp.StatusCode)
				}
				c.c.Close()
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < others; i++ {
			c, _, err := websocket.Dial(ctx, n.WSURL, &websocket.DialOptions{HTTPHeader: keyHeader(other.APIKey)})
			if err != nil {
				t.Error(err)
				return
			}
			_ = c.Close(websocket.StatusNormalClosure, "bye")
		}
	}()
	for i := 0; i < total; i++ {
		next <- struct{}{}
	}
	close(next)
	wg.Wait()
	elapsed := time.Since(start)
	res := eventFloodResult{refusals: total, seconds: int(elapsed/time.Second) + 1, elapsed: elapsed,
		refusalsPerSecond: float64(total) / elapsed.Seconds(), otherSessions: others, floodWorkers: workers}
	eventually(t, "every event", func() bool {
		evs, _ := admin.KeyEvents(ctx, flooded.Key.Prefix, 1000)
		res.refusalEvents, res.counted = len(evs), 0
		for _, e := range evs {
			res.counted += max(e.Count, 1)
		}
		oe, _ := admin.KeyEvents(ctx, other.Key.Prefix, 1000)
		res.otherEvents = len(oe)
		return res.counted >= total && res.otherEvents >= others
	})
	res.writes = metricValue(t, n, "floodgate_key_event_writes_total") - writes0
	res.dropped = metricValue(t, n, "floodgate_key_events_dropped_total", "reason=queue_full") +
		metricValue(t, n, "floodgate_key_events_dropped_total", "reason=store_error")
	t.Logf("%+v", res)
	return res
}

// TestReadyzDetailsNeedTheAdminToken: a not-ready node names its reasons
// to anyone, the raw errors (hosts, ports) only to the admin token.
func TestReadyzDetailsNeedTheAdminToken(t *testing.T) {
	shared := nodetest.NewShared(t)
	f := node.DefaultFile()
	n := nodetest.Start(t, shared.Config(node.Config{File: &f, AdminToken: adminToken}))
	if r := call(t, n, "GET", "/readyz", nil); r.status != 200 {
		t.Fatalf("ready node: %d", r.status)
	}
	shared.Redis.Close()
	var anon, admin map[string]any
	eventually(t, "not ready", func() bool {
		resp, err := http.Get(n.APIURL + "/readyz")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		anon = nil
		_ = json.NewDecoder(resp.Body).Decode(&anon)
		return resp.StatusCode == 503
	})
	if _, ok := anon["details"]; ok || !strings.Contains(fmt.Sprint(anon["reasons"]), "redis") {
		t.Fatalf("anonymous readyz: %v", anon)
	}
	req, _ := http.NewRequest("GET", n.APIURL+"/readyz", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_ = json.NewDecoder(resp.Body).Decode(&admin)
	details, _ := admin["details"].(map[string]any)
	if resp.StatusCode != 503 || details["redis"] == nil || !strings.Contains(fmt.Sprint(details["redis"]), "127.0.0.1") {
		t.Fatalf("admin readyz: %d %v", resp.StatusCode, admin)
	}
}

// TestConfigRefusesWeakSecretsAndBracedNamespaces: an admin token under
// 16 characters and a Redis namespace with braces stop the node at start.
func TestConfigRefusesWeakSecretsAndBracedNamespaces(t *testing.T) {
	f := node.DefaultFile()
	for _, cfg := range []node.Config{
		{AdminToken: "short-token", File: &f},
		{RedisNamespace: "{floodgate}:", File: &f},
		{AccountVerifier: "ldap:x", File: &f},
		{AccountVerifier: "file:/nonexistent/wallets", File: &f},
		{HeaderTimeout: time.Minute, File: &f},
	} {
		if err := node.Check(cfg); err == nil {
			t.Errorf("Check accepted %+v", cfg)
		}
	}
	cfg := node.Config{AdminToken: "short-token", File: &f, Listen: "127.0.0.1:0", APIListen: "127.0.0.1:0", DataDir: t.TempDir()}
	if n, err := node.New(cfg); err == nil {
		n.Close()
		t.Fatal("New accepted an 11-character admin token")
	} else if !strings.Contains(err.Error(), "at least 16") {
		t.Fatalf("error: %v", err)
	}
}
