package main_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runLoad runs `floodgate load args...` and returns stdout, stderr and the
// exit status.
func runLoad(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"load"}, args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee):
			code = ee.ExitCode()
		default:
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("floodgate load %v did not finish\nstderr:\n%s", args, errOut.String())
	}
	return out.String(), errOut.String(), code
}

// readReport decodes the --json file.
func readReport(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%v in %s", err, b)
	}
	return m
}

// TestLoad_SelfBroadcast: `floodgate load --self` works with nothing else
// running, delivers everything, writes --json, and --max-p99 gates (exit 2).
func TestLoad_SelfBroadcast(t *testing.T) {
	t.Parallel()
	jsonFile := filepath.Join(t.TempDir(), "report.json")
	out, errOut, code := runLoad(t, "--self", "--conns", "20", "--channels", "2", "--rate", "100",
		"--duration", "1s", "--warmup", "200ms", "--json", jsonFile, "--max-loss", "0")
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	m := readReport(t, jsonFile)
	if m["scenario"] != "broadcast" || m["delivered"].(float64) == 0 || m["delivered"] != m["expected_deliveries"] || m["loss_pct"].(float64) != 0 {
		t.Fatalf("report %v", m)
	}
	if !strings.Contains(out, "expected deliveries") || !strings.Contains(errOut, "conns 20 ok") {
		t.Fatalf("stdout:\n%s\nstderr:\n%s", out, errOut)
	}

	_, errOut, code = runLoad(t, "--self", "--conns", "4", "--duration", "300ms", "--warmup", "0s", "--max-p99", "1ns")
	if code != 2 || !strings.Contains(errOut, "p99") {
		t.Fatalf("--max-p99 1ns: exit %d, stderr:\n%s", code, errOut)
	}
}

// TestLoad_SelfStorm: churn beside a steady population through --self.
func TestLoad_SelfStorm(t *testing.T) {
	t.Parallel()
	jsonFile := filepath.Join(t.TempDir(), "storm.json")
	out, errOut, code := runLoad(t, "--self", "--scenario", "storm", "--conns", "30", "--ramp", "50", "--hold", "200ms",
		"--rate", "100", "--duration", "1s", "--warmup", "200ms", "--json", jsonFile)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	m := readReport(t, jsonFile)
	s, _ := m["storm"].(map[string]any)
	if s == nil || s["steady_conns"].(float64) != 20 || s["connects_ok"].(float64) < 30 || s["connects_failed"].(float64) != 0 {
		t.Fatalf("storm %v", s)
	}
	if m["loss_pct"].(float64) != 0 || m["delivered"].(float64) == 0 {
		t.Fatalf("report %v", m)
	}
}

// TestLoad_SelfThrottleCreateKeys: --create-keys makes keys on the --self
// broker (whose admin token the command sets), and the throttle scenario
// finds their admitted rate within tolerance of the configured 600 per
// minute.
func TestLoad_SelfThrottleCreateKeys(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "limits.yaml")
	if err := os.WriteFile(cfg, []byte(`limits:
  tiers:
    key:
      credits: 20
      credit_window: 2s
      conn_messages_per_second: 100
      conn_burst: 100
`), 0o600); err != nil {
		t.Fatal(err)
	}
	jsonFile := filepath.Join(dir, "throttle.json")
	out, errOut, code := runLoad(t, "--self", "--self-config", cfg, "--scenario", "throttle", "--create-keys", "2",
		"--conns", "4", "--send-rate", "20", "--expect-rate", "600", "--warmup", "500ms", "--duration", "3s", "--json", jsonFile)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "created 2 API keys") || !strings.Contains(out, "every identity within tolerance") {
		t.Fatalf("stdout:\n%s\nstderr:\n%s", out, errOut)
	}
	m := readReport(t, jsonFile)
	tr, _ := m["throttle"].(map[string]any)
	if tr == nil || tr["identities"].(float64) != 2 || tr["within_tolerance"] != true {
		t.Fatalf("throttle %v", tr)
	}
	for _, v := range tr["per_identity"].([]any) {
		id := v.(map[string]any)
		if !strings.HasPrefix(id["identity"].(string), "key:") || id["configured_per_s"].(float64) != 10 {
			t.Fatalf("identity %v", id)
		}
	}
}
