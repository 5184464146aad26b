//go:build chaos

package chaos_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"

	"floodgate/internal/testdeps"
)

// natsCase is the setup of a NATS outage test: two nodes on one private
// nats-server and redis-server, a publisher, on every node a stream of
// each symbol and a stream of key K.
type natsCase struct {
	nats    *testdeps.Server
	nodes   []*node
	streams []*stream // every anonymous stream
	keyed   []*stream // K's stream on node i
	key     createdKey
}

func newNATSCase(t *testing.T) *natsCase {
	t.Helper()
	nsrv := testdeps.StartNATS(t, nil)
	rsrv := testdeps.StartRedis(t, nil)
	prefix := "cn" + randomToken(4)
	c := &natsCase{nats: nsrv}
	c.nodes = startNodes(t,
		nodeSpec{id: "node1", natsURL: nsrv.URL(), redisURL: rsrv.URL(), prefix: prefix, clusterNodes: 2},
		nodeSpec{id: "node2", natsURL: nsrv.URL(), redisURL: rsrv.URL(), prefix: prefix, clusterNodes: 2})
	startPublisher(t, nsrv.URL(), prefix)
	c.key = createKey(t, c.nodes[0], newAccount(), nil)
	for i, n := range c.nodes {
		for _, sym := range symbols {
			c.streams = append(c.streams, openStream(t, n, "", sym, fmt.Sprintf("node%d %s stream", i+1, sym)))
		}
		c.keyed = append(c.keyed, openStream(t, n, c.key.APIKey, "BTC", fmt.Sprintf("node%d key stream", i+1)))
	}
	if _, ok := poll(time.Now(), 5*time.Second, func() bool {
		for _, s := range append(c.streams, c.keyed...) {
			if s.count() == 0 {
				return false
			}
		}
		return true
	}); !ok {
		t.Fatal("not every stream received a trade before the outage")
	}
	return c
}

// closedBy waits (until timeout from start) for s to close with 1008
// and returns when it closed.
func closedBy(t *testing.T, s *stream, start time.Time, timeout time.Duration) (time.Duration, bool) {
	t.Helper()
	d, ok := poll(start, timeout, func() bool { _, _, _, ok := s.closed(); return ok })
	if !ok {
		return d, false
	}
	code, reason, at, _ := s.closed()
	if code != websocket.StatusPolicyViolation {
		t.Errorf("%s closed with %d %q, want 1008 (revoked)", s.name, code, reason)
	}
	return at.Sub(start), true
}

// recovered waits until every stream got a trade after from and returns
// the worst delay.
func (c *natsCase) recovered(t *testing.T, from time.Time) time.Duration {
	t.Helper()
	var worst time.Duration
	for _, s := range c.streams {
		if _, ok := poll(from, 15*time.Second, func() bool { _, ok := s.firstAfter(from); return ok }); !ok {
			t.Errorf("%s: no trade within 15 s after NATS came back", s.name)
			continue
		}
		at, _ := s.firstAfter(from)
		worst = max(worst, at.Sub(from))
	}
	return worst
}

// TestChaosNATSHang stops nats-server with SIGSTOP under two nodes while a
// key is revoked on node 1, and resumes it.
func TestChaosNATSHang(t *testing.T) {
	c := newNATSCase(t)
	n1, n2 := c.nodes[0], c.nodes[1]

	pausedAt := time.Now()
	if err := c.nats.Pause(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.nats.Resume() })
	revokeAt := time.Now()
	apiTook := revoke(t, n1, c.key.Key.Prefix)
	localClose, localOK := closedBy(t, c.keyed[0], revokeAt, 5*time.Second)
	unpublished, _ := metric(n1, "floodgate_control_events_unpublished")

	var toNotReady [2]time.Duration
	for i, n := range c.nodes {
		d, ok := poll(pausedAt, 20*time.Second, func() bool {
			r := ready(n)
			v, vok := metric(n, "floodgate_nats_connected")
			return r.status == http.StatusServiceUnavailable && r.has("nats") && vok && v == 0
		})
		if !ok || d > maxNATSNotReady {
			t.Errorf("%s: /readyz 503 nats and floodgate_nats_connected 0 after %v (reached %v), want <= %v", n.id, d, ok, maxNATSNotReady)
		}
		toNotReady[i] = d
	}
	remoteClose, remoteOK := closedBy(t, c.keyed[1], revokeAt, 25*time.Second)
	age, _ := metric(n2, "floodgate_nats_last_message_age_seconds")
	outageEnd := time.Now()

	if err := c.nats.Resume(); err != nil {
		t.Fatal(err)
	}
	resumedAt := time.Now()
	toData := c.recovered(t, resumedAt)
	var toReady time.Duration
	for _, n := range c.nodes {
		d, ok := poll(resumedAt, 10*time.Second, func() bool { return ready(n).status == http.StatusOK })
		if !ok || d > maxRecover {
			t.Errorf("%s: /readyz 200 after %v (reached %v), want <= %v", n.id, d, ok, maxRecover)
		}
		toReady = max(toReady, d)
	}
	toPublished, pubOK := poll(resumedAt, 10*time.Second, func() bool {
		v, ok := metric(n1, "floodgate_control_events_unpublished")
		return ok && v == 0
	})
	var gap time.Duration
	for _, s := range c.streams {
		gap = max(gap, s.maxGap(pausedAt.Add(-time.Second), time.Now()))
	}

	t.Logf("figure: nats hang: revoke answered in %v; node1 closed the key's session %v after the call; %v event(s) unpublished", apiTook, localClose, unpublished)
	t.Logf("figure: nats hang: /readyz 503 nats, floodgate_nats_connected 0 after %v (node1) and %v (node2)", toNotReady[0], toNotReady[1])
	t.Logf("figure: nats hang: node2 closed the key's session %v after the revoke (key recheck); last message age on node2 %.1f s at the end of the %v outage",
		remoteClose, age, outageEnd.Sub(pausedAt).Round(time.Millisecond))
	t.Logf("figure: nats resumed: every channel of every node delivering after %v, /readyz 200 after %v, event published after %v; longest message gap %v",
		toData, toReady, toPublished, gap)

	if apiTook > maxAPI {
		t.Errorf("revoke with NATS hung answered after %v, want <= %v", apiTook, maxAPI)
	}
	if !localOK || localClose > 500*time.Millisecond {
		t.Errorf("node1's session of the revoked key closed after %v (closed %v), want at once (<= 500 ms)", localClose, localOK)
	}
	if unpublished != 1 {
		t.Errorf("floodgate_control_events_unpublished on node1 during the hang = %v, want 1", unpublished)
	}
	if !remoteOK {
		t.Errorf("node2's session of the revoked key still open %v after the revoke: the 5 s recheck while NATS is down did not close it", remoteClose)
	}
	if age < 5 {
		t.Errorf("floodgate_nats_last_message_age_seconds = %v on node2 during the hang, want > 5", age)
	}
	if toData > maxRecover {
		t.Errorf("data flowing again %v after NATS resumed, want <= %v", toData, maxRecover)
	}
	if !pubOK || toPublished > maxRecover {
		t.Errorf("revoke event published %v after NATS resumed (reached %v), want <= %v", toPublished, pubOK, maxRecover)
	}
}

// TestChaosNATSKill kills nats-server under two nodes while a key is
// revoked on node 1, and restarts it on the same port.
func TestChaosNATSKill(t *testing.T) {
	c := newNATSCase(t)
	n1 := c.nodes[0]

	killedAt := time.Now()
	if err := c.nats.Kill(); err != nil {
		t.Fatal(err)
	}
	revokeAt := time.Now()
	apiTook := revoke(t, n1, c.key.Key.Prefix)
	localClose, localOK := closedBy(t, c.keyed[0], revokeAt, 5*time.Second)
	var toNotReady time.Duration
	for _, n := range c.nodes {
		d, ok := poll(killedAt, 10*time.Second, func() bool {
			r := ready(n)
			return r.status == http.StatusServiceUnavailable && r.has("nats")
		})
		if !ok || d > 2*time.Second {
			t.Errorf("%s: /readyz 503 nats after %v (reached %v), want <= 2 s", n.id, d, ok)
		}
		toNotReady = max(toNotReady, d)
	}
	time.Sleep(time.Until(killedAt.Add(2 * time.Second))) // the outage lasts 2 s
	if err := c.nats.Restart(); err != nil {
		t.Fatal(err)
	}
	restartedAt := time.Now()
	toData := c.recovered(t, restartedAt)
	var toReady time.Duration
	for _, n := range c.nodes {
		d, ok := poll(restartedAt, 10*time.Second, func() bool { return ready(n).status == http.StatusOK })
		if !ok || d > maxRecover {
			t.Errorf("%s: /readyz 200 after %v (reached %v), want <= %v", n.id, d, ok, maxRecover)
		}
		toReady = max(toReady, d)
	}
	remoteClose, remoteOK := closedBy(t, c.keyed[1], revokeAt, time.Until(restartedAt.Add(maxRecover)))
	var gap time.Duration
	for _, s := range c.streams {
		gap = max(gap, s.maxGap(killedAt.Add(-time.Second), time.Now()))
	}
	t.Logf("figure: nats killed: revoke answered in %v, node1 closed the key's session %v after the call; /readyz 503 nats after %v",
		apiTook, localClose, toNotReady)
	t.Logf("figure: nats restarted: every channel delivering after %v, /readyz 200 after %v, node2 closed the key's session %v after the revoke (%v after the restart); longest message gap %v",
		toData, toReady, remoteClose, remoteClose-restartedAt.Sub(revokeAt), gap)
	if apiTook > maxAPI {
		t.Errorf("revoke with NATS killed answered after %v, want <= %v", apiTook, maxAPI)
	}
	if !localOK || localClose > 500*time.Millisecond {
		t.Errorf("node1's session of the revoked key closed after %v (closed %v), want at once (<= 500 ms)", localClose, localOK)
	}
	if !remoteOK {
		t.Errorf("node2's session of the revoked key still open %v after NATS restarted, want closed within %v", time.Since(restartedAt), maxRecover)
	}
	if toData > maxRecover {
		t.Errorf("data flowing again %v after the restart, want <= %v", toData, maxRecover)
	}
}
