//go:build chaos

package chaos_test

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"floodgate/internal/testdeps"
	"floodgate/internal/testdeps/procnode"
	"floodgate/keyapi"
)

// durableRedis makes a private redis-server fsync every write before it
// answers, so that an acknowledged key survives SIGKILL.
var durableRedis = &testdeps.Options{Args: []string{"--appendonly", "yes", "--appendfsync", "always"}}

// Figures the issue sets (docs/operations.md, failure modes).
const (
	maxUpgrade       = 300 * time.Millisecond // every upgrade during a Redis outage
	maxLimiterLocal  = time.Second            // Redis lost -> limiter on local budgets
	maxRedisNotReady = 2 * time.Second        // Redis lost -> /readyz 503 redis
	maxRecover       = 5 * time.Second        // dependency back -> everything back
	maxNATSNotReady  = 15 * time.Second       // NATS hung -> /readyz 503 nats
	maxAPI           = time.Second            // operator API answer during an outage (issue: 2 s)
)

// keyRefusal checks that a is the refusal status/code (with Retry-After
// when retry is set).
func keyRefusal(t *testing.T, what string, a attempt, status int, code string, retry bool) {
	t.Helper()
	if a.status != status || a.code != code || (retry && a.retryAfter == "") {
		t.Errorf("%s: got %d %q Retry-After %q (%v), want %d %s", what, a.status, a.code, a.retryAfter, a.err, status, code)
	}
}

// startRedisCase starts a private nats-server and a durable redis-server,
// one node on them (subject prefix tag plus a random token), a publisher,
// and an anonymous stream of BTC on the node.
func startRedisCase(t *testing.T, tag string) (*testdeps.Server, *procnode.Node, *stream) {
	t.Helper()
	nsrv := testdeps.StartNATS(t, nil)
	rsrv := testdeps.StartRedis(t, durableRedis)
	prefix := tag + procnode.RandomToken(4)
	n := suite.StartNodes(t, procnode.Spec{ID: "node1", NATSURL: nsrv.URL(), RedisURL: rsrv.URL(), Prefix: prefix})[0]
	startPublisher(t, nsrv.URL(), prefix)
	return rsrv, n, openStream(t, n, "", "BTC", "anonymous stream")
}

// TestChaosRedisHang stops Redis with SIGSTOP under a node that streams
// and accepts connections, and resumes it.
func TestChaosRedisHang(t *testing.T) {
	rsrv, n, st := startRedisCase(t, "ch")

	acct := procnode.NewAccount()
	cached, revoked, uncached := n.CreateKey(t, acct, nil), n.CreateKey(t, acct, nil), n.CreateKey(t, acct, nil)
	for _, k := range []keyapi.CreatedKey{cached, revoked} {
		if a := upgrade(n, k.APIKey); a.status != http.StatusSwitchingProtocols {
			t.Fatalf("key upgrade before the outage: %+v", a)
		}
	}
	revoke(t, n, revoked.Key.Prefix)
	keyRefusal(t, "revoked key before the outage", upgrade(n, revoked.APIKey), http.StatusUnauthorized, "INVALID_API_KEY", false)
	if _, ok := procnode.Poll(time.Now(), 5*time.Second, func() bool { return st.count() > 0 }); !ok {
		t.Fatal("no trade reached the stream before the outage")
	}
	if r := n.Ready(); r.Status != http.StatusOK {
		t.Fatalf("not ready before the outage: %+v", r)
	}

	pausedAt := time.Now()
	if err := rsrv.Pause(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rsrv.Resume() }) // a failed test must not leave it stopped for Kill
	stop := make(chan struct{})
	var anon, keyed, unknown []attempt
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); anon = upgrades(n, "", 20*time.Millisecond, stop) }()
	go func() { defer wg.Done(); keyed = upgrades(n, cached.APIKey, 20*time.Millisecond, stop) }()
	go func() { defer wg.Done(); unknown = upgrades(n, uncached.APIKey, 100*time.Millisecond, stop) }()
	toLocal, localOK := procnode.Poll(pausedAt, 5*time.Second, func() bool {
		v, ok := n.Metric("floodgate_limiter_cluster_up")
		return ok && v == 0
	})
	toNotReady, notReadyOK := procnode.Poll(pausedAt, 5*time.Second, func() bool {
		r := n.Ready()
		return r.Status == http.StatusServiceUnavailable && r.Has("redis")
	})
	// Hold the outage for 3 s of upgrades (a fixed length, not a wait for
	// a condition).
	time.Sleep(time.Until(pausedAt.Add(3 * time.Second)))
	close(stop)
	wg.Wait()
	keyRefusal(t, "key revoked before the outage, during it", upgrade(n, revoked.APIKey), http.StatusUnauthorized, "INVALID_API_KEY", false)
	apiStart := time.Now()
	_, apiStatus, apiErr := n.TryCreateKey(acct, nil)
	apiTook := time.Since(apiStart)
	outageEnd := time.Now()

	if err := rsrv.Resume(); err != nil {
		t.Fatal(err)
	}
	resumedAt := time.Now()
	toReady, readyOK := procnode.Poll(resumedAt, 10*time.Second, func() bool { return n.Ready().Status == http.StatusOK })
	toCluster, clusterOK := procnode.Poll(resumedAt, 10*time.Second, func() bool {
		v, ok := n.Metric("floodgate_limiter_cluster_up")
		return ok && v == 1
	})
	toKeys, keysOK := procnode.Poll(resumedAt, 10*time.Second, func() bool {
		return upgrade(n, uncached.APIKey).status == http.StatusSwitchingProtocols
	})
	gap := st.maxGap(pausedAt, outageEnd)

	a50, a99, amax := latencies(anon)
	k50, k99, kmax := latencies(keyed)
	u50, u99, umax := latencies(unknown)
	t.Logf("figure: redis hang: anonymous upgrade p50 %v p99 %v max %v over %d (%v)", a50, a99, amax, len(anon), statuses(anon))
	t.Logf("figure: redis hang: cached-key upgrade p50 %v p99 %v max %v over %d (%v)", k50, k99, kmax, len(keyed), statuses(keyed))
	t.Logf("figure: redis hang: uncached-key refusal p50 %v p99 %v max %v over %d (%v)", u50, u99, umax, len(unknown), statuses(unknown))
	t.Logf("figure: redis hang: limiter on local budgets after %v; /readyz 503 redis after %v; operator create answered %d in %v (%v)",
		toLocal, toNotReady, apiStatus, apiTook, apiErr)
	t.Logf("figure: redis hang: longest gap between trades on a stream during the outage %v", gap)
	t.Logf("figure: redis resumed: /readyz 200 after %v, cluster budgets after %v, uncached key admitted after %v", toReady, toCluster, toKeys)

	for what, as := range map[string][]attempt{"anonymous": anon, "cached-key": keyed} {
		if _, _, worst := latencies(as); worst > maxUpgrade {
			t.Errorf("%s upgrades during the hang: the slowest took %v, want every one <= %v", what, worst, maxUpgrade)
		}
		if s := statuses(as); s[http.StatusSwitchingProtocols] != len(as) {
			t.Errorf("%s upgrades during the hang: %v, want all 101", what, s)
		}
	}
	if umax > maxUpgrade {
		t.Errorf("uncached-key refusals during the hang: the slowest took %v, want every one <= %v", umax, maxUpgrade)
	}
	for _, a := range unknown {
		keyRefusal(t, "uncached key during the hang", a, http.StatusServiceUnavailable, "UNAVAILABLE", true)
	}
	if !localOK || toLocal > maxLimiterLocal {
		t.Errorf("limiter on local budgets after %v (reached %v), want <= %v", toLocal, localOK, maxLimiterLocal)
	}
	if !notReadyOK || toNotReady > maxRedisNotReady {
		t.Errorf("/readyz 503 redis after %v (reached %v), want <= %v", toNotReady, notReadyOK, maxRedisNotReady)
	}
	if apiTook > maxAPI || apiStatus != http.StatusServiceUnavailable {
		t.Errorf("operator create during the hang: %d after %v, want 503 within %v", apiStatus, apiTook, maxAPI)
	}
	if gap > time.Second {
		t.Errorf("a stream stalled %v while Redis hung: streams must not depend on Redis", gap)
	}
	for what, r := range map[string]struct {
		d  time.Duration
		ok bool
	}{"/readyz 200": {toReady, readyOK}, "cluster budgets": {toCluster, clusterOK}, "uncached key admitted": {toKeys, keysOK}} {
		if !r.ok || r.d > maxRecover {
			t.Errorf("after SIGCONT: %s after %v (reached %v), want <= %v", what, r.d, r.ok, maxRecover)
		}
	}
}

// TestChaosRedisKill kills Redis (which fsyncs every write) while keys are
// being created through the operator API, restarts it, and checks that no
// acknowledged key was lost and the node recovered.
func TestChaosRedisKill(t *testing.T) {
	rsrv, n, st := startRedisCase(t, "ck")
	if _, ok := procnode.Poll(time.Now(), 5*time.Second, func() bool { return st.count() > 0 }); !ok {
		t.Fatal("no trade reached the stream before the outage")
	}
	untouched := n.CreateKey(t, procnode.NewAccount(), nil) // never used before the kill

	// Create keys every 20 ms for the whole test, one account per key
	// (the per-account limit stays out of the way).
	stop := make(chan struct{})
	var acked []keyapi.CreatedKey
	refused := map[int]int{}
	created := make(chan struct{})
	go func() {
		defer close(created)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			if k, status, err := n.TryCreateKey(procnode.NewAccount(), nil); err == nil {
				acked = append(acked, k)
			} else {
				refused[status]++
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	time.Sleep(500 * time.Millisecond) // creations before the kill (a fixed length)

	killedAt := time.Now()
	if err := rsrv.Kill(); err != nil {
		t.Fatal(err)
	}
	var anon []attempt
	upStop := make(chan struct{})
	upDone := make(chan struct{})
	go func() { defer close(upDone); anon = upgrades(n, "", 20*time.Millisecond, upStop) }()
	toNotReady, notReadyOK := procnode.Poll(killedAt, 5*time.Second, func() bool {
		r := n.Ready()
		return r.Status == http.StatusServiceUnavailable && r.Has("redis")
	})
	time.Sleep(time.Until(killedAt.Add(2 * time.Second))) // the outage lasts 2 s
	close(upStop)
	<-upDone
	if err := rsrv.Restart(); err != nil {
		t.Fatal(err)
	}
	restartedAt := time.Now()
	toReady, readyOK := procnode.Poll(restartedAt, 10*time.Second, func() bool { return n.Ready().Status == http.StatusOK })
	toKeys, keysOK := procnode.Poll(restartedAt, 10*time.Second, func() bool {
		return upgrade(n, untouched.APIKey).status == http.StatusSwitchingProtocols
	})
	time.Sleep(500 * time.Millisecond) // creations after the restart (a fixed length)
	close(stop)
	<-created

	lost := 0
	for _, k := range append(acked, untouched) {
		if status, _, err := n.Admin("GET", "/admin/v1/keys/"+k.Key.Prefix, nil); err != nil || status != http.StatusOK {
			lost++
			t.Errorf("acknowledged key %s lost after the Redis restart: %d %v", k.Key.Prefix, status, err)
		}
	}
	a50, a99, amax := latencies(anon)
	t.Logf("figure: redis killed: anonymous upgrade p50 %v p99 %v max %v over %d (%v)", a50, a99, amax, len(anon), statuses(anon))
	t.Logf("figure: redis killed: /readyz 503 redis after %v; restarted: /readyz 200 after %v, unused key admitted after %v", toNotReady, toReady, toKeys)
	t.Logf("figure: redis killed: %d keys acknowledged, %d lost; refused while down: %v; longest stream gap %v",
		len(acked)+1, lost, refused, st.maxGap(killedAt, time.Now()))
	if amax > maxUpgrade {
		t.Errorf("anonymous upgrades with Redis killed: the slowest took %v, want every one <= %v", amax, maxUpgrade)
	}
	if s := statuses(anon); s[http.StatusSwitchingProtocols] != len(anon) {
		t.Errorf("anonymous upgrades with Redis killed: %v, want all 101", s)
	}
	if !notReadyOK || toNotReady > maxRedisNotReady {
		t.Errorf("/readyz 503 redis after %v (reached %v), want <= %v", toNotReady, notReadyOK, maxRedisNotReady)
	}
	if !readyOK || toReady > maxRecover || !keysOK || toKeys > maxRecover {
		t.Errorf("after the restart: /readyz 200 after %v (%v), key admitted after %v (%v), want <= %v", toReady, readyOK, toKeys, keysOK, maxRecover)
	}
	if len(refused) == 0 {
		t.Errorf("no creation was refused while Redis was down: the outage was not exercised")
	}
}
