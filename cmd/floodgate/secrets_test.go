package main_test

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alicebob/miniredis/v2"
)

// Secrets stay off the command line and out of pprof (issue 11,
// "Secrets").

func TestShortAdminTokenStopsTheStart(t *testing.T) {
	cmd := exec.Command(binary, "serve", "--admin-token", "0123456789", "--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0",
		"--embedded-nats-listen", "127.0.0.1:0", "--data-dir", t.TempDir())
	out, _ := cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != 1 || !strings.Contains(string(out), "--admin-token: 10 characters; at least 16") {
		t.Fatalf("exit %d: %s", cmd.ProcessState.ExitCode(), out)
	}
	out, _ = exec.Command(binary, "serve", "--check-config", "--admin-token", "0123456789").CombinedOutput()
	if !strings.Contains(string(out), "at least 16") {
		t.Fatalf("check-config: %s", out)
	}
}

// adminGet is a GET with the admin token.
func adminGet(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestSecretsFromFilesAndEnv: the admin token and the Redis password come
// from files or the environment; the node uses them (it reaches a Redis
// that requires the password, the token opens the admin API) and
// /debug/pprof/cmdline shows neither.
func TestSecretsFromFilesAndEnv(t *testing.T) {
	const token, password = "file-admin-token-0123456789", "hunter2-redis-password"
	mr := miniredis.RunT(t)
	mr.RequireAuth(password)
	dir := t.TempDir()
	tokenFile, pwFile := filepath.Join(dir, "token"), filepath.Join(dir, "redis-password")
	os.WriteFile(tokenFile, []byte(token+"\n"), 0o600)
	os.WriteFile(pwFile, []byte(password+"\n"), 0o600)

	p := startServe(t, "--admin-token-file", tokenFile, "--redis-url", "redis://"+mr.Addr()+"/0", "--redis-password-file", pwFile)
	if status, body := adminGet(t, p.apiURL+"/admin/v1/keys", token); status != 200 {
		t.Fatalf("admin API with the file's token: %d %s", status, body)
	}
	if status, _ := get(t, p.apiURL+"/readyz"); status != 200 {
		t.Fatalf("readyz with the file's Redis password: %d", status)
	}
	status, cmdline := adminGet(t, p.apiURL+"/debug/pprof/cmdline", token)
	if status != 200 || strings.Contains(cmdline, token) || strings.Contains(cmdline, password) || !strings.Contains(cmdline, "--admin-token-file") {
		t.Fatalf("cmdline: %d %q", status, cmdline)
	}

	// From the environment.
	t.Setenv("FLOODGATE_ADMIN_TOKEN", token)
	t.Setenv("FLOODGATE_REDIS_PASSWORD", password)
	p = startServe(t, "--redis-url", "redis://"+mr.Addr()+"/0")
	if status, _ := adminGet(t, p.apiURL+"/admin/v1/keys", token); status != 200 {
		t.Fatalf("admin API with the env token: %d", status)
	}
	if status, _ := get(t, p.apiURL+"/readyz"); status != 200 {
		t.Fatalf("readyz with the env Redis password: %d", status)
	}
}

// TestPprofCmdlineRedactsFlags: secrets given as flags anyway are not
// shown by /debug/pprof/cmdline.
func TestPprofCmdlineRedactsFlags(t *testing.T) {
	const token, password = "flag-admin-token-0123456789", "hunter3-redis-password"
	mr := miniredis.RunT(t)
	mr.RequireAuth(password)
	p := startServe(t, "--admin-token", token, "--redis-url", "redis://:"+password+"@"+mr.Addr()+"/0")
	status, cmdline := adminGet(t, p.apiURL+"/debug/pprof/cmdline", token)
	if status != 200 || strings.Contains(cmdline, token) || strings.Contains(cmdline, password) ||
		!strings.Contains(cmdline, "--admin-token\x00[redacted]") || !strings.Contains(cmdline, "redis://:xxxxx@") {
		t.Fatalf("cmdline: %d %q", status, cmdline)
	}
	// Without the token, pprof is closed.
	if status, _ := get(t, p.apiURL+"/debug/pprof/cmdline"); status != 401 {
		t.Fatalf("cmdline without the token: %d", status)
	}
}

func TestSecretFlagConflicts(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "token")
	os.WriteFile(f, []byte("a-long-enough-admin-token\n"), 0o600)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	for _, args := range [][]string{
		{"--admin-token", "another-long-admin-token", "--admin-token-file", f},
		{"--admin-token-file", filepath.Join(dir, "missing")},
		{"--admin-token-file", empty},
	} {
		out, err := exec.Command(binary, append([]string{"serve", "--check-config"}, args...)...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "--admin-token") {
			t.Errorf("%v: %v %s", args, err, out)
		}
	}
}
