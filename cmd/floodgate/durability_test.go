package main_test

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mr-tron/base58"
)

const testAdmin = "durability-admin-token"

// account returns the base58 public key of a deterministic wallet i.
func account(i int) string {
	seed := make([]byte, ed25519.SeedSize)
	seed[0] = byte(i + 1)
	return base58.Encode(ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey))
}

func adminDo(t *testing.T, method, url string, body any) (int, map[string]any) {
	t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, _ := http.NewRequest(method, url, rd)
	req.Header.Set("Authorization", "Bearer "+testAdmin)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var env map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&env)
	return resp.StatusCode, env
}

// TestKeysSurviveSIGKILL: keys created and revoked through the API of a
// child `floodgate serve` are all there, in the acknowledged state, after
// the process is killed with SIGKILL and restarted on the same data dir.
func TestKeysSurviveSIGKILL(t *testing.T) {
	dir := t.TempDir()
	p := startServe(t, "--data-dir", dir, "--admin-token", testAdmin)
	const n = 25
	prefixes := make([]string, 0, n)
	for i := 0; i < n; i++ {
		status, env := adminDo(t, "POST", p.apiURL+"/admin/v1/keys", map[string]any{"account": account(i % 5)})
		if status != 201 && status != 200 {
			t.Fatalf("create %d: %d %v", i, status, env)
		}
		data := env["data"].(map[string]any)
		prefixes = append(prefixes, data["key"].(map[string]any)["prefix"].(string))
	}
	// The last acknowledged write is a revocation.
	revoked := prefixes[n-1]
	if status, env := adminDo(t, "PATCH", p.apiURL+"/admin/v1/keys/"+revoked, map[string]any{"status": "revoked"}); status != 200 {
		t.Fatalf("revoke: %d %v", status, env)
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.exited

	q := startServe(t, "--data-dir", dir, "--admin-token", testAdmin)
	for _, prefix := range prefixes {
		status, env := adminDo(t, "GET", q.apiURL+"/admin/v1/keys/"+prefix, nil)
		if status != 200 {
			t.Fatalf("key %s lost after SIGKILL: %d %v", prefix, status, env)
		}
		want := "active"
		if prefix == revoked {
			want = "revoked"
		}
		if got := env["data"].(map[string]any)["status"]; got != want {
			t.Fatalf("key %s is %v after restart, want %s", prefix, got, want)
		}
	}
}

func TestSidecarServesKeysAlone(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(binary, "sidecar", "--api-listen", "127.0.0.1:0", "--data-dir", dir, "--admin-token", testAdmin, "--log-format", "json")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	apic := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var ev map[string]any
			if json.Unmarshal(sc.Bytes(), &ev) == nil && ev["message"] == "floodgate sidecar serving" {
				apic <- "http://" + ev["api_listen"].(string)
			}
		}
	}()
	var api string
	select {
	case api = <-apic:
	case <-time.After(10 * time.Second):
		t.Fatal("sidecar did not start in 10 s")
	}
	status, env := adminDo(t, "POST", api+"/admin/v1/keys", map[string]any{"account": account(0)})
	if status != 201 && status != 200 {
		t.Fatalf("create: %d %v", status, env)
	}
	key := env["data"].(map[string]any)["api_key"].(string)
	req, _ := http.NewRequest("GET", api+"/api/v1/api_keys/status", nil)
	req.Header.Set("PF-API-KEY", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&st)
	if resp.StatusCode != 200 || st["data"].(map[string]any)["status"] != "active" {
		t.Fatalf("status: %d %v", resp.StatusCode, st)
	}
	if code, body := get(t, api+"/readyz"); code != 200 {
		t.Fatalf("readyz %d %s", code, body)
	}
}

func TestKeysCLIAgainstServe(t *testing.T) {
	p := startServe(t, "--admin-token", testAdmin)
	run := func(args ...string) string {
		t.Helper()
		all := append([]string{"keys"}, args...)
		all = append(all, "--api-url", p.apiURL, "--admin-token", testAdmin)
		out, err := exec.Command(binary, all...).CombinedOutput()
		if err != nil {
			t.Fatalf("floodgate %s: %v\n%s", strings.Join(all, " "), err, out)
		}
		return string(out)
	}
	acct := account(7)
	out := run("create", "--account", acct, "--alias", "bot-1", "--json")
	var created struct {
		APIKey string `json:"api_key"`
		Key    struct {
			Prefix string `json:"prefix"`
		} `json:"key"`
	}
	if err := json.Unmarshal([]byte(out), &created); err != nil || created.APIKey == "" {
		t.Fatalf("create --json: %v %s", err, out)
	}
	if out := run("list", "--account", acct); !strings.Contains(out, created.Key.Prefix) || !strings.Contains(out, "bot-1") {
		t.Fatalf("list lacks the key:\n%s", out)
	}
	// update changes what its flags name, and nothing else.
	out = run("update", created.Key.Prefix, "--credits-per-minute", "900", "--quota-daily", "5000", "--calendar", "--expires-at", "2031-01-02T03:04:05Z",
		"--scopes", "market", "--allowed-cidrs", "10.1.2.3/8,2001:db8::1/32", "--quota-delivered-daily", "7", "--json")
	var upd struct {
		Alias        string   `json:"alias"`
		ExpiresAt    string   `json:"expires_at"`
		Scopes       []string `json:"scopes"`
		AllowedCIDRs []string `json:"allowed_cidrs"`
		Limits       struct {
			CreditsPerMinute int64 `json:"credits_per_minute"`
			MaxConnections   int64 `json:"max_connections"`
		} `json:"limits"`
		Quotas struct {
			Daily          int64 `json:"daily"`
			Calendar       bool  `json:"calendar"`
			DeliveredDaily int64 `json:"delivered_daily"`
		} `json:"quotas"`
	}
	if err := json.Unmarshal([]byte(out), &upd); err != nil || upd.Limits.CreditsPerMinute != 900 || upd.Quotas.Daily != 5000 || !upd.Quotas.Calendar ||
		upd.ExpiresAt != "2031-01-02T03:04:05Z" || upd.Alias != "bot-1" || upd.Limits.MaxConnections != 0 ||
		strings.Join(upd.Scopes, ",") != "market" || strings.Join(upd.AllowedCIDRs, ",") != "10.0.0.0/8,2001:db8::/32" || upd.Quotas.DeliveredDaily != 7 {
		t.Fatalf("update: %v %s", err, out)
	}
	if out, err := exec.Command(binary, "keys", "update", created.Key.Prefix, "--api-url", p.apiURL, "--admin-token", testAdmin).CombinedOutput(); err == nil ||
		!strings.Contains(string(out), "nothing to update") {
		t.Fatalf("update without flags: %v %s", err, out)
	}
	// rotate keeps every setting; the alias moves to the new key.
	out = run("rotate", created.Key.Prefix, "--json")
	var rot struct {
		Key struct {
			Prefix string `json:"prefix"`
			Alias  string `json:"alias"`
			Limits struct {
				CreditsPerMinute int64 `json:"credits_per_minute"`
			} `json:"limits"`
		} `json:"key"`
	}
	if err := json.Unmarshal([]byte(out), &rot); err != nil || rot.Key.Alias != "bot-1" || rot.Key.Limits.CreditsPerMinute != 900 {
		t.Fatalf("rotate: %v %s", err, out)
	}
	run("deactivate", created.Key.Prefix)
	if out := run("show", created.Key.Prefix, "--json"); !strings.Contains(out, `"inactive"`) || strings.Contains(out, "bot-1") {
		t.Fatalf("show after rotate and deactivate:\n%s", out)
	}
	// Without the token the operator API refuses.
	out2, err := exec.Command(binary, "keys", "list", "--api-url", p.apiURL, "--admin-token", "wrong").CombinedOutput()
	if err == nil || !strings.Contains(string(out2), "Invalid admin token") {
		t.Fatalf("wrong token: %v %s", err, out2)
	}
}
