package limiter_test

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"

	"floodgate/limiter"
)

// Charging with the default key tier, time advancing 200 ms per frame so
// every frame is allowed (the common case).
func BenchmarkCharge_Single(b *testing.B) {
	l := newLimiter(b, nil)
	c := mustAdmit(b, l, keyReq("Bench000"), t0)
	now := t0
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(200 * time.Millisecond)
		if !c.Charge(1, now).Allowed {
			b.Fatal("refused")
		}
	}
}

// The refusal path (budget exhausted).
func BenchmarkCharge_Refused(b *testing.B) {
	cfg := limiter.DefaultConfig()
	cfg.Violations.MaxRefusals = 10000
	l := newLimiter(b, &cfg)
	c := mustAdmit(b, l, keyReq("Bench000"), t0)
	b.ReportAllocs()
	for b.Loop() {
		c.Charge(1, t0)
	}
}

// Parallel callers, one connection and identity each (sessions of
// different clients): the case that must scale.
func BenchmarkCharge_Parallel(b *testing.B) {
	l := newLimiter(b, nil)
	var seq atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		c := mustAdmit(b, l, keyReq(fmt.Sprintf("Par%05d", seq.Add(1))), t0)
		now := t0
		for pb.Next() {
			now = now.Add(200 * time.Millisecond)
			c.Charge(1, now)
		}
	})
}

// Parallel callers on connections of one identity: they share its cell.
func BenchmarkCharge_ParallelSameIdentity(b *testing.B) {
	l := newLimiter(b, fastConns())
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		c := mustAdmit(b, l, keyReq("Shared00"), t0)
		now := t0
		for pb.Next() {
			now = now.Add(200 * time.Millisecond)
			c.Charge(1, now)
		}
	})
}

// Reference: golang.org/x/time/rate, one limiter (10/s burst 20), AllowN at
// an explicit time like Charge.
func BenchmarkRate_Allow(b *testing.B) {
	lim := rate.NewLimiter(10, 20)
	now := t0
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(200 * time.Millisecond)
		lim.AllowN(now, 1)
	}
}

func BenchmarkRate_AllowParallel(b *testing.B) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		lim := rate.NewLimiter(10, 20)
		now := t0
		for pb.Next() {
			now = now.Add(200 * time.Millisecond)
			lim.AllowN(now, 1)
		}
	})
}

// Two x/time/rate limiters per frame (connection + identity), the closest
// equivalent of one Charge.
func BenchmarkRate_AllowTwo(b *testing.B) {
	conn, ident := rate.NewLimiter(10, 20), rate.NewLimiter(5, 300)
	now := t0
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(200 * time.Millisecond)
		if conn.AllowN(now, 1) {
			ident.AllowN(now, 1)
		}
	}
}

// Table memory: heap bytes per anonymous identity that connected and sent a
// frame (cell, map entry, name), measured over 200k identities.
func BenchmarkTable_Memory(b *testing.B) {
	const n = 200_000
	for b.Loop() {
		perIdentity(b, n)
	}
	b.ReportMetric(perIdentity(b, n), "bytes/identity")
}

func perIdentity(tb testing.TB, n int) float64 {
	l, err := limiter.New(limiter.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	addrs := make([]netip.Addr, n)
	for i := range addrs {
		addrs[i] = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	ctx := context.Background()
	for _, a := range addrs {
		// The identity string is built per connection, as the broker does,
		// and kept by the table.
		c, err := l.Admit(ctx, limiter.Request{Identity: limiter.AddrIdentity(a), IP: a}, t0)
		if err != nil {
			tb.Fatal(err)
		}
		c.Charge(1, t0)
		c.Release()
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(l)
	runtime.KeepAlive(addrs)
	if l.Identities() != n {
		tb.Fatalf("identities %d", l.Identities())
	}
	return float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
}

func TestTable_MemoryPerIdentity(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	got := perIdentity(t, 50_000)
	t.Logf("%.0f bytes per identity", got)
	if got > 400 {
		t.Fatalf("%.0f bytes per identity, budget 400", got)
	}
}

// Cluster mode, lease path: Charge on a lease kept full by Sync (run every
// 100 frames here, as Run would in the background), against miniredis.
// Reports p99 of the per-frame latency.
func BenchmarkCluster_ChargeLease(b *testing.B) {
	_, rc := newMiniredis(b)
	cfg := fastConns()
	cfg.Tiers.Key.Credits = 1 << 30
	l, err := limiter.New(limiter.Options{Config: cfg, Redis: rc, KeyPrefix: "bench:"})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	c := mustAdmit(b, l, keyReq("Lease000"), t0)
	lat := make([]time.Duration, 0, 1<<20)
	now := t0
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		now = now.Add(time.Microsecond)
		if i%100 == 0 {
			b.StopTimer()
			_ = l.Sync(ctx, now)
			b.StartTimer()
		}
		i++
		s := time.Now()
		c.Charge(1, now)
		if len(lat) < cap(lat) {
			lat = append(lat, time.Since(s))
		}
	}
	b.ReportMetric(p99(lat), "p99-ns")
}

// Cluster mode without leases: one Redis round trip (the lease script for
// one credit) per frame, against miniredis over loopback TCP. miniredis runs
// the Lua in Go in the same process (its allocations are counted here);
// BenchmarkIntegrationCluster_RoundTripPerFrame measures a real
// redis-server.
func BenchmarkCluster_RoundTripPerFrame(b *testing.B) {
	_, rc := newMiniredis(b)
	benchRoundTrip(b, rc, "bench:")
}

// benchRoundTrip takes one credit from Redis per iteration and reports the
// p99 latency.
func benchRoundTrip(b *testing.B, rc redis.UniversalClient, prefix string) {
	ctx := context.Background()
	lat := make([]time.Duration, 0, 1<<20)
	b.ReportAllocs()
	for b.Loop() {
		s := time.Now()
		if err := limiter.TakeOnce(ctx, rc, prefix+"{key:Rtt}", t0); err != nil {
			b.Fatal(err)
		}
		if len(lat) < cap(lat) {
			lat = append(lat, time.Since(s))
		}
	}
	b.ReportMetric(p99(lat), "p99-ns")
}

func p99(lat []time.Duration) float64 {
	if len(lat) == 0 {
		return 0
	}
	slices.Sort(lat)
	return float64(lat[len(lat)*99/100])
}
