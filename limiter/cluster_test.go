package limiter_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"floodgate/limiter"
)

// clusterNodes builds n limiters sharing one Redis.
func clusterNodes(t testing.TB, rc redis.UniversalClient, prefix string, n int, cfg *limiter.Config) []*limiter.Limiter {
	t.Helper()
	nodes := make([]*limiter.Limiter, n)
	for i := range nodes {
		l, err := limiter.New(limiter.Options{
			Config: cfg, Redis: rc, KeyPrefix: prefix, ExpectedNodes: n,
			NodeID: string(rune('a' + i)), RedisTimeout: time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = l.Close() })
		nodes[i] = l
	}
	return nodes
}

func newMiniredis(t testing.TB) (*miniredis.Miniredis, *redis.Client) {
	t.Helper()
	mr := miniredis.RunT(t)
	rc := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1, DialerRetries: 1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = rc.Close() })
	return mr, rc
}

// runAccuracy drives three nodes with uneven, shifting traffic for several
// windows in 50 ms steps (one sync round per node per step, as Run does) and
// checks what they admit together against L per window.
func runAccuracy(t *testing.T, rc redis.UniversalClient, prefix string) {
	const (
		L       = 300
		windows = 4
		step    = 100 * time.Millisecond
	)
	cfg := fastConns()
	nodes := clusterNodes(t, rc, prefix, 3, cfg)
	ctx := context.Background()
	req := keyReq("Cluster0")
	conns := make([]*limiter.Conn, 3)
	for i, l := range nodes {
		conns[i] = mustAdmit(t, l, req, t0)
	}
	// Attempts per node per step, by window: far above 5 credits/s, skewed.
	shape := [windows][3]int{{10, 0, 0}, {6, 3, 1}, {1, 1, 8}, {0, 5, 5}}
	perWindow := make([]int, windows)
	now := t0
	for w := range windows {
		for s := 0; s < int(time.Minute/step); s++ {
			for i, l := range nodes {
				if err := l.Sync(ctx, now); err != nil {
					t.Fatal(err)
				}
				for range shape[w][i] {
					if conns[i].Charge(1, now).Allowed {
						perWindow[w]++
					}
				}
			}
			now = now.Add(step)
		}
	}
	total := 0
	for _, n := range perWindow {
		total += n
	}
	t.Logf("admitted per window %v, total %d (limit: burst %d + %d per window)", perWindow, total, L, L)
	// First window: the burst plus one window of refill.
	if d := perWindow[0] - 2*L; d < -2*L/20 || d > 2*L/20 {
		t.Errorf("window 1 admitted %d, want %d ± 5%%", perWindow[0], 2*L)
	}
	for w := 1; w < windows; w++ {
		if d := perWindow[w] - L; d < -L/20 || d > L/20 {
			t.Errorf("window %d admitted %d, want %d ± 5%%", w+1, perWindow[w], L)
		}
	}
	if want := L * (windows + 1); total > want+want/20 || total < want-want/20 {
		t.Errorf("total %d, want %d ± 5%%", total, want)
	}
}

func TestCluster_CreditsAccuracy(t *testing.T) {
	_, rc := newMiniredis(t)
	runAccuracy(t, rc, "test:")
}

func TestCluster_ConnectionsAndConnectRate(t *testing.T) {
	_, rc := newMiniredis(t)
	runConnections(t, rc, "test:")
}

// runConnections checks the cluster-wide connection cap and connect rate
// of three nodes sharing rc.
func runConnections(t *testing.T, rc redis.UniversalClient, prefix string) {
	cfg := limiter.DefaultConfig()
	cfg.Tiers.Key.MaxConnections = 10
	cfg.Tiers.Key.Connects = 15
	nodes := clusterNodes(t, rc, prefix, 3, &cfg)
	req := keyReq("Conns000")
	ctx := context.Background()
	var conns []*limiter.Conn
	for i := range 10 {
		conns = append(conns, mustAdmit(t, nodes[i%3], req, t0))
	}
	for i, l := range nodes {
		_, err := l.Admit(ctx, req, t0)
		refusalOf(t, err, limiter.ErrTooManyConnections)
		_ = i
	}
	// A release reaches Redis at the next sync of its node.
	conns[4].Release()
	if _, err := nodes[0].Admit(ctx, req, t0); err == nil {
		t.Fatal("admitted before the release was synced")
	}
	if err := nodes[1].Sync(ctx, t0); err != nil {
		t.Fatal(err)
	}
	mustAdmit(t, nodes[2], req, t0)
	// 10 + 3 + 1 + 1 = 15 connect attempts so far: the connect rate is used up
	// cluster-wide.
	conns[0].Release()
	_ = nodes[0].Sync(ctx, t0)
	_, err := nodes[2].Admit(ctx, req, t0)
	r := refusalOf(t, err, limiter.ErrConnectRate)
	if r.RetryAfter != 20*time.Second { // 5 min / 15
		t.Fatalf("retry %v", r.RetryAfter)
	}
	u := nodes[1].Usage(ctx, req, t0)
	if !u.Cluster || u.Connections != 9 { // 10 - 1 + 1 - 1
		t.Fatalf("usage %+v", u)
	}
	allHealthy(t, nodes)
}

// allHealthy fails t unless every node still runs on cluster budgets: a
// Redis error (a script crossing hash slots on a Redis Cluster, say) would
// have put it on local shares.
func allHealthy(t *testing.T, nodes []*limiter.Limiter) {
	t.Helper()
	for i, l := range nodes {
		if err := l.Health(); err != nil {
			t.Errorf("node %d: %v", i, err)
		}
	}
}

func TestCluster_QuotaAcrossNodes(t *testing.T) {
	_, rc := newMiniredis(t)
	runQuota(t, rc, "test:")
}

// runQuota spends a daily quota of 100 from three nodes sharing rc.
func runQuota(t *testing.T, rc redis.UniversalClient, prefix string) {
	nodes := clusterNodes(t, rc, prefix, 3, fastConns())
	req := keyReq("Quota100")
	req.Quotas = limiter.Quotas{Daily: 100}
	ctx := context.Background()
	conns := make([]*limiter.Conn, 3)
	for i, l := range nodes {
		conns[i] = mustAdmit(t, l, req, t0)
	}
	admitted := 0
	now := t0
	var last limiter.Decision
	closed := make([]bool, 3)
	for range 400 { // 20 s
		for i, l := range nodes {
			_ = l.Sync(ctx, now)
			for range i + 1 {
				if closed[i] {
					break
				}
				if d := conns[i].Charge(1, now); d.Allowed {
					admitted++
				} else if d.Close { // the broker closes the connection
					last, closed[i] = d, true
					conns[i].Release()
				}
			}
		}
		now = now.Add(50 * time.Millisecond)
	}
	if admitted > 100 || admitted < 95 {
		t.Fatalf("admitted %d under a cluster daily quota of 100", admitted)
	}
	if last.Budget != limiter.BudgetQuota || last.Quota != limiter.QuotaDaily || !last.Close {
		t.Fatalf("last refusal %+v", last)
	}
	_, err := nodes[0].Admit(ctx, req, now)
	refusalOf(t, err, limiter.ErrQuotaExceeded)
	u := nodes[2].Usage(ctx, req, now)
	if len(u.Quotas) != 1 || u.Quotas[0].Used < 95 || u.Quotas[0].Used > 100 {
		t.Fatalf("usage %+v", u)
	}
	allHealthy(t, nodes)
}

func TestCluster_RedisOutageAndRecovery(t *testing.T) {
	mr, rc := newMiniredis(t)
	addr := mr.Addr()
	nodes := clusterNodes(t, rc, "test:", 3, fastConns())
	l := nodes[0]
	ctx := context.Background()
	req := keyReq("Outage00")
	c := mustAdmit(t, l, req, t0)
	if err := l.Health(); err != nil {
		t.Fatal(err)
	}
	now := t0
	for range 5 {
		c.Charge(1, now)
	}
	mr.Close()
	// Sync notices; no panic, returns quickly.
	start := time.Now()
	err := l.Sync(ctx, now)
	if !errors.Is(err, limiter.ErrClusterDegraded) || !errors.Is(l.Health(), limiter.ErrClusterDegraded) {
		t.Fatalf("health %v", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Fatalf("sync stalled %v", time.Since(start))
	}
	// Local fallback: the share is 300/3 = 100 credits, fresh.
	allowed := 0
	for c.Charge(1, now).Allowed {
		allowed++
	}
	if allowed != 100 {
		t.Fatalf("fallback allowed %d, want 100", allowed)
	}
	// Admission keeps working on local shares (100/3 = 34 connections).
	for range 33 {
		mustAdmit(t, l, req, now)
	}
	_, err = l.Admit(ctx, req, now)
	refusalOf(t, err, limiter.ErrTooManyConnections)
	// Another node that has not noticed yet finds out at admission.
	start = time.Now()
	mustAdmit(t, nodes[1], req, now)
	if time.Since(start) > 2*time.Second || nodes[1].Health() == nil {
		t.Fatalf("admission during outage: %v, health %v", time.Since(start), nodes[1].Health())
	}
	// Probes are rate limited to ProbeInterval.
	now = now.Add(500 * time.Millisecond)
	_ = l.Sync(ctx, now)
	// Redis comes back on the same address (empty).
	mr2 := miniredis.NewMiniRedis()
	if err := mr2.StartAddr(addr); err != nil {
		t.Fatal(err)
	}
	defer mr2.Close()
	now = now.Add(time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for l.Sync(ctx, now) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("never recovered: %v", l.Health())
		}
		now = now.Add(time.Second)
	}
	// Leases resume: the next sync grants this node's connections a lease
	// and rewrites their count.
	if err := l.Sync(ctx, now); err != nil {
		t.Fatal(err)
	}
	if got := l.Leased(req.Identity); got <= 0 {
		t.Fatalf("no lease after recovery: %d", got)
	}
	if d := c.Charge(1, now); !d.Allowed {
		t.Fatalf("refused after recovery: %+v", d)
	}
	if u := l.Usage(ctx, req, now); !u.Cluster || u.Connections != 34 {
		t.Fatalf("usage after recovery %+v", u)
	}
}

func TestCluster_RunRefillsInBackground(t *testing.T) {
	_, rc := newMiniredis(t)
	l, err := limiter.New(limiter.Options{Config: fastConns(), Redis: rc, KeyPrefix: "run:", SyncInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	c := mustAdmit(t, l, keyReq("Running0"), time.Now())
	// The admission lease is one connection burst (20); the background
	// refill keeps frames flowing beyond it.
	allowed := 0
	deadline := time.Now().Add(5 * time.Second)
	for allowed < 60 && time.Now().Before(deadline) {
		now := time.Now()
		if c.Charge(1, now).Allowed {
			allowed++
		}
	}
	if allowed < 60 {
		t.Fatalf("only %d allowed in 5 s", allowed)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestCluster_FirstFrameAfterIdleIsAdmitted: an idle lease goes back to
// Redis but the node keeps a couple of credits while the identity has live
// connections, so the first frame after a quiet second is admitted.
func TestCluster_FirstFrameAfterIdleIsAdmitted(t *testing.T) {
	_, rc := newMiniredis(t)
	l, err := limiter.New(limiter.Options{Redis: rc, KeyPrefix: "idle:"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	c := mustAdmit(t, l, keyReq("Idle0000"), t0)
	now := t0
	for i := 0; i < 3; i++ {
		if err := l.Sync(ctx, now); err != nil {
			t.Fatal(err)
		}
		now = now.Add(100 * time.Millisecond)
		if d := c.Charge(1, now); !d.Allowed {
			t.Fatalf("warm-up frame %d refused: %+v", i, d)
		}
	}
	// Quiet for 5 s: syncs return the idle lease.
	for i := 0; i < 50; i++ {
		now = now.Add(100 * time.Millisecond)
		if err := l.Sync(ctx, now); err != nil {
			t.Fatal(err)
		}
	}
	if d := c.Charge(1, now); !d.Allowed {
		t.Fatalf("first frame after idle refused: %+v", d)
	}
	if got := l.Leased(limiter.KeyIdentity("Idle0000")); got > 2 {
		t.Fatalf("%d credits parked on an idle node, want at most 2", got)
	}
}

// TestCluster_RedisDownFallsBackAtOnce: a Redis failure found by someone
// else (the node's health check) puts the limiter on local shares at once;
// the next sync probes Redis and resumes cluster budgets when it answers.
func TestCluster_RedisDownFallsBackAtOnce(t *testing.T) {
	_, rc := newMiniredis(t)
	l := clusterNodes(t, rc, "down:", 2, fastConns())[0]
	ctx := context.Background()
	req := keyReq("Down0000")
	mustAdmit(t, l, req, t0)
	l.RedisDown(errors.New("health check: i/o timeout"))
	if err := l.Health(); !errors.Is(err, limiter.ErrClusterDegraded) || !strings.Contains(err.Error(), "health check") {
		t.Fatalf("health after RedisDown: %v", err)
	}
	// Admission is local now: no Redis round trip counts this connection.
	mustAdmit(t, l, req, t0)
	if err := l.Sync(ctx, t0.Add(time.Second)); err != nil {
		t.Fatalf("Redis answers, the next sync must resume: %v", err)
	}
	if u := l.Usage(ctx, req, t0.Add(time.Second)); !u.Cluster || u.Connections != 2 {
		t.Fatalf("usage after the resume %+v, want cluster counts with both connections", u)
	}
}

// TestKeyPrefixWithBracesRefused: a hash tag in the prefix would put every
// identity of a Redis Cluster in one slot.
func TestKeyPrefixWithBracesRefused(t *testing.T) {
	_, rc := newMiniredis(t)
	_, err := limiter.New(limiter.Options{Redis: rc, KeyPrefix: "{floodgate}:lim:"})
	if err == nil || !strings.Contains(err.Error(), "must not contain { or }") {
		t.Fatalf("New with a braced prefix: %v", err)
	}
}

// TestCluster_CostAboveLeaseIsRefused: a frame costing more than the
// node's lease is refused and spends nothing (the lease is not driven into
// debt); one costing exactly the lease is admitted and empties it.
func TestCluster_CostAboveLeaseIsRefused(t *testing.T) {
	_, rc := newMiniredis(t)
	l := clusterNodes(t, rc, "cost:", 1, fastConns())[0]
	req := keyReq("Cost0000")
	c := mustAdmit(t, l, req, t0)
	leased := l.Leased(req.Identity)
	if leased < 2 {
		t.Fatalf("first lease %d, want at least 2", leased)
	}
	if d := c.Charge(leased+1, t0); d.Allowed || d.Budget != limiter.BudgetCredits {
		t.Fatalf("cost %d over a lease of %d: %+v", leased+1, leased, d)
	}
	if got := l.Leased(req.Identity); got != leased {
		t.Fatalf("a refused frame spent the lease: %d -> %d", leased, got)
	}
	if d := c.Charge(leased, t0); !d.Allowed {
		t.Fatalf("cost %d with a lease of %d refused: %+v", leased, leased, d)
	}
	if got := l.Leased(req.Identity); got != 0 {
		t.Fatalf("lease after spending it whole: %d", got)
	}
}
