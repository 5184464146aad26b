package node

import (
	"strings"
	"testing"
)

// TestRedactArgs: pprof's cmdline shows no admin token and no URL
// password, in either flag form.
func TestRedactArgs(t *testing.T) {
	args := []string{"floodgate", "serve", "--admin-token", "s3cret-admin-token-1", "--admin-token=s3cret-admin-token-2",
		"--redis-url", "redis://:hunter2@redis:6379/0", "--redis-url=rediss://user:hunter3@redis:6380",
		"--nats-url", "nats://u:hunter4@a:4222,nats://TOKEN5@b:4222", "-admin-token", "s3cret-admin-token-6",
		"--listen", ":8080", "--redis-namespace", "prod:"}
	got := strings.Join(redactArgs(args), " ")
	for _, secret := range []string{"s3cret", "hunter", "TOKEN5"} {
		if strings.Contains(got, secret) {
			t.Fatalf("secret %q in %s", secret, got)
		}
	}
	for _, kept := range []string{"--listen :8080", "--redis-namespace prod:", "redis://:xxxxx@redis:6379/0", "nats://xxxxx@b:4222", "--admin-token [redacted]"} {
		if !strings.Contains(got, kept) {
			t.Fatalf("%q missing from %s", kept, got)
		}
	}
}
