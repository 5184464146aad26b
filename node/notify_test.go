package node_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"testing"
	"time"

	"floodgate/auth"
	"floodgate/fanout"
	"floodgate/keyapi"
	"floodgate/node"
	"floodgate/node/nodetest"

	"github.com/alicebob/miniredis/v2"
	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
)

// gauge reads a metric without labels from reg (-1 when absent).
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			m := mf.GetMetric()[0]
			if g := m.GetGauge(); g != nil {
				return g.GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	return -1
}

// pongQuota pings over c and returns the credit quota of the answer (rl.q
// of the pong, or of the RATE_LIMITED error while a lease refills).
func pongQuota(c *client) int64 {
	c.t.Helper()
	c.send(`{"method":"ping"}`)
	var pong struct {
		Channel string `json:"channel"`
		RL      struct {
			Q int64 `json:"q"`
		} `json:"rl"`
	}
	if got := c.read(); json.Unmarshal([]byte(got), &pong) != nil || (pong.Channel != "pong" && pong.Channel != "error") {
		c.t.Fatalf("ping answered %s", got)
	}
	return pong.RL.Q
}

// waitFor polls cond every 10 ms for at most d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
}

// TestLocalChangesApplyAtOnceWithoutNATS: with NATS gone, a revoke and a
// limit change made through node A's API answer at once and apply to A's
// own sessions at once; the revoke is published when NATS is back, and
// node B (which rechecks every 5 s while it cannot hear events) closes its
// session of the key too.
func TestLocalChangesApplyAtOnceWithoutNATS(t *testing.T) {
	ns, err := fanout.StartEmbedded(fanout.EmbeddedOptions{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	addr := ns.Addr().(*net.TCPAddr).String()
	stopNATS := func() { ns.Shutdown(); ns.WaitForShutdown() }
	t.Cleanup(func() { stopNATS() })
	mr := miniredis.RunT(t)
	cfg := func() node.Config {
		return node.Config{NATSURL: ns.ClientURL(), RedisURL: "redis://" + mr.Addr(), AdminToken: adminToken}
	}
	start := func() *testNode {
		n := nodetest.Start(t, cfg())
		return &testNode{t: t, n: n, srv: n.Broker(), reg: n.Registry(), wsURL: n.WSURL,
			admin: keyapi.NewAdminClient(n.APIURL, adminToken, nil)}
	}
	a, b := start(), start()
	revoked := a.createKey(keyapi.CreateKeyRequest{Account: accountA})
	limited := a.createKey(keyapi.CreateKeyRequest{Account: accountA})
	onA, onB := a.dial(keyHeader(revoked.APIKey)), b.dial(keyHeader(revoked.APIKey))
	for _, c := range []*client{onA, onB} {
		if q := pongQuota(c); q != 300 {
			t.Fatalf("credit quota %d before the changes, want 300", q)
		}
	}
	lim := a.dial(keyHeader(limited.APIKey))
	if q := pongQuota(lim); q != 300 {
		t.Fatalf("credit quota %d before the limit change, want 300", q)
	}

	stopNATS()
	waitFor(t, 5*time.Second, "node A sees NATS down", func() bool { return gauge(t, a.reg, "floodgate_nats_connected") == 0 })

	st := auth.StatusRevoked
	began := time.Now()
	if _, err := a.admin.PatchKey(context.Background(), revoked.Key.Prefix, keyapi.KeyPatch{Status: &st}); err != nil {
		t.Fatal(err)
	}
	took := time.Since(began)
	code, reason, at := onA.closed(2 * time.Second)
	if code != websocket.StatusPolicyViolation || reason != "api key revoked" {
		t.Fatalf("close on A: %d %q", code, reason)
	}
	t.Logf("revoke with NATS down: answered in %v, A's session closed %v after the call", took, at.Sub(began))
	if took > time.Second || at.Sub(began) > time.Second {
		t.Fatalf("revoke answered in %v, A closed after %v; want both at once", took, at.Sub(began))
	}
	if got := gauge(t, a.reg, "floodgate_control_events_unpublished"); got != 1 {
		t.Fatalf("floodgate_control_events_unpublished = %v, want 1", got)
	}

	credits := int64(50)
	if _, err := a.admin.PatchKey(context.Background(), limited.Key.Prefix, keyapi.KeyPatch{Limits: &keyapi.LimitsPatch{CreditsPerMinute: &credits}}); err != nil {
		t.Fatal(err)
	}
	if q := pongQuota(lim); q != 50 {
		t.Fatalf("credit quota %d after the limit change on A, want the new 50 at once", q)
	}

	// NATS back on the same address: A publishes what it queued; B closes
	// its session of the revoked key (by the event, or its 5 s recheck).
	ns2, err := fanout.StartEmbedded(fanout.EmbeddedOptions{Listen: addr})
	if err != nil {
		t.Fatal(err)
	}
	stopNATS = func() { ns2.Shutdown(); ns2.WaitForShutdown() }
	back := time.Now()
	code, reason, at = onB.closed(10 * time.Second)
	if code != websocket.StatusPolicyViolation || reason != "api key revoked" {
		t.Fatalf("close on B: %d %q", code, reason)
	}
	waitFor(t, 5*time.Second, "the revoke published", func() bool {
		return gauge(t, a.reg, "floodgate_control_events_unpublished") == 0 && gauge(t, a.reg, "floodgate_control_events_published_total") == 2
	})
	t.Logf("B closed its session %v after NATS came back", at.Sub(back))
	if _, status, _ := b.tryDial(keyHeader(revoked.APIKey)); status != http.StatusUnauthorized {
		t.Fatalf("revoked key on B: %d", status)
	}
}
