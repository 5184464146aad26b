//go:build chaos

package chaos_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"

	"floodgate/internal/testdeps"
	"floodgate/internal/testdeps/procnode"
	"floodgate/keyapi"
)

// natsCase is the setup of a NATS outage test: two nodes on one private
// nats-server and redis-server, a publisher, on every node a stream of
// each symbol and a stream of key K.
type natsCase struct {
	nats    *testdeps.Server
	nodes   []*procnode.Node
	streams []*stream // every anonymous stream
	keyed   []*stream // K's stream on node i
	key     keyapi.CreatedKey
}

func newNATSCase(t *testing.T) *natsCase {
	t.Helper()
	nsrv := testdeps.StartNATS(t, nil)
	rsrv := testdeps.StartRedis(t, nil)
	prefix := "cn" + procnode.RandomToken(4)
	c := &natsCase{nats: nsrv}
	c.nodes = suite.StartNodes(t,
		procnode.Spec{ID: "node1", NATSURL: nsrv.URL(), RedisURL: rsrv.URL(), Prefix: prefix, ClusterNodes: 2},
		procnode.Spec{ID: "node2", NATSURL: nsrv.URL(), RedisURL: rsrv.URL(), Prefix: prefix, ClusterNodes: 2})
	startPublisher(t, nsrv.URL(), prefix)
	c.key = c.nodes[0].CreateKey(t, procnode.NewAccount(), nil)
	for i, n := range c.nodes {
		for _, sym := range symbols {
			c.streams = append(c.streams, openStream(t, n, "", sym, fmt.Sprintf("node%d %s stream", i+1, sym)))
		}
		c.keyed = append(c.keyed, openStream(t, n, c.key.APIKey, "BTC", fmt.Sprintf("node%d key stream", i+1)))
	}
	if _, ok := procnode.Poll(time.Now(), 5*time.Second, func() bool {
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
	d, ok := procnode.Poll(start, timeout, func() bool { _, _, _, ok := s.closed(); return ok })
	if !ok {
		return d, false
	}
	code, reason, at, _ := s.closed()
	if code != websocket.StatusPolicyViolation {
		t.Errorf("%s closed with %d %q, want 1008 (revoked)", s.name, code, reason)
	}
	return at.Sub(start), true
}

// recovered waits until every stream got a trade after from, then until
// every node's /readyz says 200 (an error past maxRecover), and returns
// the worst delay of each.
func (c *natsCase) recovered(t *testing.T, from time.Time) (toData, toReady time.Duration) {
	t.Helper()
	for _, s := range c.streams {
		if _, ok := procnode.Poll(from, 15*time.Second, func() bool { _, ok := s.firstAfter(from); return ok }); !ok {
			t.Errorf("%s: no trade within 15 s after NATS came back", s.name)
			continue
		}
		at, _ := s.firstAfter(from)
		toData = max(toData, at.Sub(from))
	}
	for _, n := range c.nodes {
		d, ok := procnode.Poll(from, 10*time.Second, func() bool { return n.Ready().Status == http.StatusOK })
		if !ok || d > maxRecover {
			t.Errorf("%s: /readyz 200 after %v (reached %v), want <= %v", n.ID(), d, ok, maxRecover)
		}
		toReady = max(toReady, d)
	}
	return toData, toReady
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
	unpublished, _ := n1.Metric("floodgate_control_events_unpublished")

	var toNotReady [2]time.Duration
	for i, n := range c.nodes {
		d, ok := procnode.Poll(pausedAt, 20*time.Second, func() bool {
			r := n.Ready()
			v, vok := n.Metric("floodgate_nats_connected")
			return r.Status == http.StatusServiceUnavailable && r.Has("nats") && vok && v == 0
		})
		if !ok || d > maxNATSNotReady {
			t.Errorf("%s: /readyz 503 nats and floodgate_nats_connected 0 after %v (reached %v), want <= %v", n.ID(), d, ok, maxNATSNotReady)
		}
		toNotReady[i] = d
	}
	remoteClose, remoteOK := closedBy(t, c.keyed[1], revokeAt, 25*time.Second)
	age, _ := n2.Metric("floodgate_nats_last_message_age_seconds")
	outageEnd := time.Now()

	if err := c.nats.Resume(); err != nil {
		t.Fatal(err)
	}
	resumedAt := time.Now()
	toData, toReady := c.recovered(t, resumedAt)
	toPublished, pubOK := procnode.Poll(resumedAt, 10*time.Second, func() bool {
		v, ok := n1.Metric("floodgate_control_events_unpublished")
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
		d, ok := procnode.Poll(killedAt, 10*time.Second, func() bool {
			r := n.Ready()
			return r.Status == http.StatusServiceUnavailable && r.Has("nats")
		})
		if !ok || d > 2*time.Second {
			t.Errorf("%s: /readyz 503 nats after %v (reached %v), want <= 2 s", n.ID(), d, ok)
		}
		toNotReady = max(toNotReady, d)
	}
	time.Sleep(time.Until(killedAt.Add(2 * time.Second))) // the outage lasts 2 s
	if err := c.nats.Restart(); err != nil {
		t.Fatal(err)
	}
	restartedAt := time.Now()
	toData, toReady := c.recovered(t, restartedAt)
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
