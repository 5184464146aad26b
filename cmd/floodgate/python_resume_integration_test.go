//go:build integration

package main_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestIntegrationPythonResume runs examples/resume.py against floodgate
// serve on the real NATS with --history on and the demo feed (its own
// subject prefix, so its own stream, deleted afterwards): the client reads
// BTC trades, is away 3 s, resumes with since, and gets exactly the trades
// it missed, then live ones (the script checks the seq/prev chain and
// exits 1 on a gap, a duplicate or recovered:false).
func TestIntegrationPythonResume(t *testing.T) {
	natsURL := os.Getenv("NATS_URL")
	if natsURL == "" {
		t.Skip("NATS_URL not set")
	}
	py := python(t)
	rnd := make([]byte, 4)
	_, _ = rand.Read(rnd)
	prefix := "it" + hex.EncodeToString(rnd)
	stream := "FLOODGATE_" + strings.ToUpper(prefix)
	t.Cleanup(func() {
		nc, err := nats.Connect(natsURL)
		if err != nil {
			t.Error(err)
			return
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := js.DeleteStream(ctx, stream); err != nil {
			t.Errorf("delete stream %s: %v", stream, err)
		}
	})
	p := startServe(t, "--nats-url", natsURL, "--history", "on", "--subject-prefix", prefix, "--demo-feed")
	script, _ := filepath.Abs("../../examples/resume.py")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, py, script, "--ws", p.wsURL, "--away", "3", "--read", "1.5").CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatalf("resume.py: %v", err)
	}
	for _, want := range []string{"recovered=true", "no gap, no duplicate"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("resume.py output lacks %q", want)
		}
	}
}
