package node

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"floodgate/auth"
	"floodgate/internal/testdeps"
	"floodgate/limiter"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// TestRedisModes: each --redis-mode reads its URL form with go-redis's own
// parser and gets Floodgate's defaults (context deadlines honoured, dial
// 500 ms, read/write/pool 250 ms, no retries, one dial attempt) unless the
// URL overrides them.
func TestRedisModes(t *testing.T) {
	type got struct {
		dial, read, write, pool time.Duration
		retries, dialRetries    int
		ctx                     bool
	}
	defaults := got{500 * time.Millisecond, 250 * time.Millisecond, 250 * time.Millisecond, 250 * time.Millisecond, -1, 1, true}
	for _, tc := range []struct {
		name, url, mode string
		want            got
		check           func(t *testing.T, c redisConfig)
	}{
		{name: "single default mode", url: "redis://:pw@10.0.0.1:6380/2", want: defaults, check: func(t *testing.T, c redisConfig) {
			if c.single == nil || c.single.Addr != "10.0.0.1:6380" || c.single.DB != 2 || c.single.Password != "pw" {
				t.Fatalf("single options %+v", c.single)
			}
		}},
		{name: "single overrides", url: "redis://h:1?dial_timeout=1s&read_timeout=100ms&write_timeout=2s&pool_timeout=300ms&max_retries=2", mode: RedisSingle,
			want: got{time.Second, 100 * time.Millisecond, 2 * time.Second, 300 * time.Millisecond, 2, 1, true}},
		{name: "cluster", url: "redis://h1:7000?addr=h2:7001&addr=h3:7002", mode: RedisCluster, want: defaults, check: func(t *testing.T, c redisConfig) {
			if c.cluster == nil || strings.Join(c.cluster.Addrs, ",") != "h1:7000,h2:7001,h3:7002" {
				t.Fatalf("cluster options %+v", c.cluster)
			}
		}},
		{name: "cluster overrides", url: "redis://h1:7000?read_timeout=1s&dialer_retries=3", mode: RedisCluster,
			want: got{500 * time.Millisecond, time.Second, 250 * time.Millisecond, 250 * time.Millisecond, -1, 3, true}},
		{name: "sentinel", url: "redis://s1:26379?addr=s2:26379&master_name=mymaster&password=pw", mode: RedisSentinel, want: defaults, check: func(t *testing.T, c redisConfig) {
			if c.failover == nil || c.failover.MasterName != "mymaster" || strings.Join(c.failover.SentinelAddrs, ",") != "s1:26379,s2:26379" || c.failover.Password != "pw" {
				t.Fatalf("failover options %+v", c.failover)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseRedis(tc.url, tc.mode)
			if err != nil {
				t.Fatal(err)
			}
			var g got
			switch {
			case c.single != nil:
				o := c.single
				g = got{o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.PoolTimeout, o.MaxRetries, o.DialerRetries, o.ContextTimeoutEnabled}
			case c.cluster != nil:
				o := c.cluster
				g = got{o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.PoolTimeout, o.MaxRetries, o.DialerRetries, o.ContextTimeoutEnabled}
			case c.failover != nil:
				o := c.failover
				g = got{o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.PoolTimeout, o.MaxRetries, o.DialerRetries, o.ContextTimeoutEnabled}
			}
			if g != tc.want {
				t.Fatalf("settings %+v, want %+v", g, tc.want)
			}
			if tc.check != nil {
				tc.check(t, c)
			}
			rdb := c.client()
			defer rdb.Close()
			if d := redisCallTimeout(rdb); d != tc.want.read {
				t.Fatalf("call timeout %v, want the read timeout %v", d, tc.want.read)
			}
		})
	}
}

// TestRedisURLErrors: each bad URL or mode is refused with an error that
// says what is wrong and never repeats the password.
func TestRedisURLErrors(t *testing.T) {
	for _, tc := range []struct{ url, mode, want string }{
		{"redis://:s3cret@h:1", "replicated", `--redis-mode "replicated": want single, cluster or sentinel`},
		{"http://:s3cret@h:1", "", "invalid URL scheme: http"},
		{"redis://:s3cret@h:notaport", "", "invalid port"},
		{"redis://:s3cret@h:1?read_timeout=0", "", "read_timeout must be positive"},
		{"redis://:s3cret@h:1?dial_timeout=-1s", RedisCluster, "dial_timeout must be positive"},
		{"redis://:s3cret@h:1?bogus=1", RedisSingle, "unexpected option: bogus"},
		{"redis://:s3cret@h:1?addr=x", RedisCluster, "unable to parse addr param: x"},
		{"redis://:s3cret@s:26379", RedisSentinel, "needs master_name=<name>"},
		{"redis://:s3cret@s:26379?master_name=m&route_randomly=true", RedisSentinel, "route_randomly"},
	} {
		_, err := parseRedis(tc.url, tc.mode)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s (mode %q): error %v, want it to say %q", tc.url, tc.mode, err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: the error repeats the password: %v", tc.url, err)
		}
		if err := Check(Config{RedisURL: tc.url, RedisMode: tc.mode}); err == nil {
			t.Errorf("%s (mode %q): Check passed", tc.url, tc.mode)
		}
	}
}

// TestLimiterPrefixDropsHashTags: a namespace with a hash tag (for the key
// store on a Redis Cluster) must not pin every budget to one slot.
func TestLimiterPrefixDropsHashTags(t *testing.T) {
	for ns, want := range map[string]string{"floodgate:": "floodgate:lim:", "{fg}:": "fg:lim:", "x{fg}y:": "xfgy:lim:"} {
		if got := limiterPrefix(ns); got != want {
			t.Errorf("limiterPrefix(%q) = %q, want %q", ns, got, want)
		}
	}
}

// TestGuardKeepsCachedKeysWhileRedisHangs: with Redis stopped (SIGSTOP),
// a key cached any time ago is still admitted and an uncached one fails,
// both at once after the first lookup that times out (which also puts the
// limiter on local budgets); a revoked key stays refused; the next passing
// check opens the store again.
func TestGuardKeepsCachedKeysWhileRedisHangs(t *testing.T) {
	srv := testdeps.StartRedis(t, nil)
	rdb, err := newRedisClient(srv.URL(), "")
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	store := auth.NewRedisStore(rdb, auth.RedisOptions{})
	lim, err := limiter.New(limiter.Options{Redis: rdb})
	if err != nil {
		t.Fatal(err)
	}
	defer lim.Close()
	h := &health{}
	h.init(store, rdb, nil, lim, redisCallTimeout(rdb), prometheus.NewRegistry())
	kr := auth.NewKeyring(auth.KeyringOptions{Store: h.guard, TTL: time.Minute, LookupTimeout: redisCallTimeout(rdb)})
	ctx := context.Background()
	now := time.Now()
	newKey := func(st auth.Status) string {
		key, prefix, err := auth.Generate(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		rec := auth.Record{Prefix: prefix, Hash: auth.Hash(key), Account: "FAe4sisG95oZ42w7buUn5qEE4TAnfTTFPiguZUHmhiF", Status: st, CreatedAt: now}
		if err := store.Create(ctx, rec, 0); err != nil {
			t.Fatal(err)
		}
		return key
	}
	cached, revoked, uncached := newKey(auth.StatusActive), newKey(auth.StatusRevoked), newKey(auth.StatusActive)
	if _, err := kr.Verify(cached, now); err != nil {
		t.Fatal(err)
	}
	if _, err := kr.Verify(revoked, now); !errors.Is(err, auth.ErrInvalidKey) {
		t.Fatalf("revoked key: %v", err)
	}
	h.check(ctx, now)
	if p := h.storeErr.Load(); p != nil {
		t.Fatalf("check with Redis up: %v", *p)
	}

	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Resume() })
	later := now.Add(24 * time.Hour) // the cached record is a day old: stale
	start := time.Now()
	if _, err := kr.Verify(cached, later); err != nil {
		t.Fatalf("a day-old cached key with Redis hung: %v", err)
	}
	first := time.Since(start)
	if lim.Health() == nil {
		t.Fatal("the lookup timed out but the limiter still waits for Redis")
	}
	start = time.Now()
	if _, err := kr.Verify(cached, later); err != nil {
		t.Fatalf("cached key again: %v", err)
	}
	_, errUncached := kr.Verify(uncached, later)
	_, errRevoked := kr.Verify(revoked, later)
	rest := time.Since(start)
	t.Logf("with Redis hung: the first stale lookup took %v, then a cached and an uncached key %v together", first, rest)
	if first > 2*redisReadTimeout || rest > 50*time.Millisecond {
		t.Fatalf("first lookup %v (want <= %v), then %v (want at once)", first, 2*redisReadTimeout, rest)
	}
	if errUncached == nil || errors.Is(errUncached, auth.ErrInvalidKey) || !errors.Is(errUncached, errStoreDown) {
		t.Fatalf("uncached key with Redis hung: %v, want the store-down error (503)", errUncached)
	}
	if !errors.Is(errRevoked, auth.ErrInvalidKey) {
		t.Fatalf("revoked key with Redis hung: %v, want still refused", errRevoked)
	}
	h.check(ctx, later)
	if h.storeErr.Load() == nil {
		t.Fatal("the check passed with Redis hung")
	}

	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
	h.check(ctx, later)
	if p := h.storeErr.Load(); p != nil {
		t.Fatalf("check after SIGCONT: %v", *p)
	}
	if _, err := kr.Verify(uncached, later); err != nil {
		t.Fatalf("uncached key once Redis answers: %v", err)
	}
	var reply redis.Error
	if errors.As(errUncached, &reply) {
		t.Fatalf("a timeout must not look like a Redis reply: %v", errUncached)
	}
}
