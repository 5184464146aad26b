package auth_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"floodgate/auth"
	"floodgate/auth/storetest"
)

// countingStore counts Get calls, and can block them or make them fail.
type countingStore struct {
	auth.Store
	gets    atomic.Int64
	entered chan struct{} // if set, receives on every Get
	gate    chan struct{} // if set, Get waits for it
	fail    atomic.Bool
}

func (c *countingStore) Get(ctx context.Context, prefix string) (auth.Record, error) {
	c.gets.Add(1)
	if c.entered != nil {
		c.entered <- struct{}{}
	}
	if c.gate != nil {
		<-c.gate
	}
	if c.fail.Load() {
		return auth.Record{}, errors.New("store down")
	}
	return c.Store.Get(ctx, prefix)
}

func TestKeyring_Verify(t *testing.T) {
	cs := &countingStore{Store: storetest.OpenBolt(t)}
	k := auth.NewKeyring(auth.KeyringOptions{Store: cs})
	now := t0
	good := storetest.AddKey(t, cs, "acct", t0, func(r *auth.Record) {
		r.Limits.CreditsPerMinute = 77
		r.Quotas.Daily = 5
		r.ExpiresAt = t0.Add(time.Hour)
	})
	inactive := storetest.AddKey(t, cs, "acct", t0, func(r *auth.Record) { r.Status = auth.StatusInactive })
	revoked := storetest.AddKey(t, cs, "acct", t0, func(r *auth.Record) { r.Status = auth.StatusRevoked })
	expired := storetest.AddKey(t, cs, "acct", t0, func(r *auth.Record) { r.ExpiresAt = t0 })

	info, err := k.Verify(good, now)
	if err != nil || info.Prefix != good[:8] || info.Account != "acct" || info.Status != auth.StatusActive ||
		info.Limits.CreditsPerMinute != 77 || info.Quotas.Daily != 5 || !info.ExpiresAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("Verify: %+v %v", info, err)
	}
	for name, tc := range map[string]struct {
		key  string
		want error
	}{
		"malformed":    {"nope", auth.ErrInvalidKey},
		"unknown":      {"AbCdEfGh_2mT8xQ9wY3kP7vN5rL1cZ", auth.ErrInvalidKey},
		"wrong secret": {good[:9] + "2mT8xQ9wY3kP7vN5rL1cZ", auth.ErrInvalidKey},
		"revoked":      {revoked, auth.ErrInvalidKey},
		"inactive":     {inactive, auth.ErrInactiveKey},
		"expired":      {expired, auth.ErrExpiredKey}, // at exactly ExpiresAt
	} {
		if _, err := k.Verify(tc.key, now); err != tc.want {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	if _, err := k.Verify(good, t0.Add(time.Hour)); err != auth.ErrExpiredKey {
		t.Fatalf("good key at expiry: %v", err)
	}

	// Warm: no store access, no allocation, for good and bad secrets alike.
	gets := cs.gets.Load()
	wrong := good[:9] + "2mT8xQ9wY3kP7vN5rL1cZ"
	for i := 0; i < 100; i++ {
		_, _ = k.Verify(good, now)
		_, _ = k.Verify(wrong, now)
		_, _ = k.Verify("AbCdEfGh_2mT8xQ9wY3kP7vN5rL1cZ", now) // negative cache
		_, _ = k.Verify(revoked, now)
	}
	if cs.gets.Load() != gets {
		t.Fatalf("warm verifies hit the store %d times", cs.gets.Load()-gets)
	}
}

func TestKeyring_VerifyWarmAllocs(t *testing.T) {
	cs := &countingStore{Store: storetest.OpenBolt(t)}
	k := auth.NewKeyring(auth.KeyringOptions{Store: cs})
	good := storetest.AddKey(t, cs, "acct", t0, nil)
	wrong := good[:auth.PrefixLen+1] + "2mT8xQ9wY3kP7vN5rL1cZ"
	if _, err := k.Verify(good, t0); err != nil { // warm the cache
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(200, func() { _, _ = k.Verify(good, t0) }); n != 0 {
		t.Fatalf("warm Verify allocates %v", n)
	}
	if n := testing.AllocsPerRun(200, func() { _, _ = k.Verify(wrong, t0) }); n != 0 {
		t.Fatalf("warm Verify of a wrong key allocates %v", n)
	}
}

func TestKeyring_InvalidateAndTTL(t *testing.T) {
	cs := &countingStore{Store: storetest.OpenBolt(t)}
	k := auth.NewKeyring(auth.KeyringOptions{Store: cs, TTL: time.Minute, NegativeTTL: 10 * time.Second})
	ctx := context.Background()
	key := storetest.AddKey(t, cs, "acct", t0, nil)
	prefix := key[:8]
	if _, err := k.Verify(key, t0); err != nil {
		t.Fatal(err)
	}
	_, _ = cs.Update(ctx, prefix, 0, func(r *auth.Record) error { r.Status = auth.StatusInactive; return nil })
	if _, err := k.Verify(key, t0); err != nil {
		t.Fatalf("cached record not used: %v", err)
	}
	k.HandleEvent(auth.KeyEvent{Type: auth.EventDeactivated, Prefix: prefix})
	if _, err := k.Verify(key, t0); err != auth.ErrInactiveKey {
		t.Fatalf("after invalidate: %v", err)
	}
	// After the TTL the record is reloaded without an event.
	_, _ = cs.Update(ctx, prefix, 0, func(r *auth.Record) error { r.Status = auth.StatusActive; return nil })
	if _, err := k.Verify(key, t0.Add(59*time.Second)); err != auth.ErrInactiveKey {
		t.Fatalf("before TTL: %v", err)
	}
	if _, err := k.Verify(key, t0.Add(61*time.Second)); err != nil {
		t.Fatalf("after TTL: %v", err)
	}
	// Store down after the TTL: the stale record keeps serving.
	cs.fail.Store(true)
	if _, err := k.Verify(key, t0.Add(3*time.Minute)); err != nil {
		t.Fatalf("stale record on store error: %v", err)
	}
	// Store down, nothing cached: an error that is none of the sentinels.
	other := storetest.AddKey(t, cs.Store, "acct", t0, nil)
	_, err := k.Verify(other, t0)
	if err == nil || errors.Is(err, auth.ErrInvalidKey) || errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("store down, cold: %v", err)
	}
	cs.fail.Store(false)

	// Negative cache: remembered for NegativeTTL; Invalidate forgets it.
	unknownKey, unknownPrefix, _ := auth.Generate(rand.Reader)
	gets := cs.gets.Load()
	for i := 0; i < 10; i++ {
		if _, err := k.Verify(unknownKey, t0); err != auth.ErrInvalidKey {
			t.Fatal(err)
		}
	}
	if cs.gets.Load() != gets+1 {
		t.Fatalf("unknown key: %d store reads", cs.gets.Load()-gets)
	}
	_, _ = k.Verify(unknownKey, t0.Add(11*time.Second))
	if cs.gets.Load() != gets+2 {
		t.Fatal("negative entry outlived NegativeTTL")
	}
	if err := cs.Create(ctx, auth.Record{Prefix: unknownPrefix, Hash: auth.Hash(unknownKey), Account: "a", Status: auth.StatusActive, CreatedAt: t0}, 0); err != nil {
		t.Fatal(err)
	}
	k.Invalidate(unknownPrefix)
	if _, err := k.Verify(unknownKey, t0.Add(11*time.Second)); err != nil {
		t.Fatalf("created after negative entry: %v", err)
	}
}

func TestKeyring_NegativeBound(t *testing.T) {
	k := auth.NewKeyring(auth.KeyringOptions{Store: storetest.OpenBolt(t), MaxNegative: 10})
	for i := 0; i < 100; i++ {
		key, _, _ := auth.Generate(rand.Reader)
		_, _ = k.Verify(key, t0)
		if n := k.NegativeLen(); n > 10 {
			t.Fatalf("%d negative entries", n)
		}
	}
}

func TestKeyring_SingleFlight(t *testing.T) {
	cs := &countingStore{Store: storetest.OpenBolt(t), entered: make(chan struct{}, 1), gate: make(chan struct{})}
	key := storetest.AddKey(t, cs.Store, "acct", t0, nil)
	k := auth.NewKeyring(auth.KeyringOptions{Store: cs})
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := k.Verify(key, t0)
			errs <- err
		}()
	}
	<-cs.entered
	deadline := time.Now().Add(5 * time.Second)
	for k.FlightWaiters(key[:8]) != n-1 {
		if time.Now().After(deadline) {
			t.Fatalf("waiters: %d", k.FlightWaiters(key[:8]))
		}
		runtime.Gosched()
	}
	close(cs.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if cs.gets.Load() != 1 {
		t.Fatalf("%d store reads for %d concurrent cold verifies", cs.gets.Load(), n)
	}
}

// An Invalidate during a lookup keeps the (possibly stale) result out of
// the cache.
func TestKeyring_InvalidateDuringLookup(t *testing.T) {
	cs := &countingStore{Store: storetest.OpenBolt(t), entered: make(chan struct{}, 1), gate: make(chan struct{}, 1)}
	key := storetest.AddKey(t, cs.Store, "acct", t0, nil)
	k := auth.NewKeyring(auth.KeyringOptions{Store: cs})
	done := make(chan error)
	go func() { _, err := k.Verify(key, t0); done <- err }()
	<-cs.entered
	k.Invalidate(key[:8])
	cs.gate <- struct{}{}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	cs.gate <- struct{}{}
	if _, err := k.Verify(key, t0); err != nil {
		t.Fatal(err)
	}
	<-cs.entered
	if cs.gets.Load() != 2 {
		t.Fatalf("result of an invalidated lookup was cached (%d reads)", cs.gets.Load())
	}
}

func BenchmarkKeyring_Warm(b *testing.B) {
	s, err := auth.OpenBolt(b.TempDir(), auth.BoltOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	key := storetest.AddKey(b, s, "acct", t0, nil)
	k := auth.NewKeyring(auth.KeyringOptions{Store: s})
	if _, err := k.Verify(key, t0); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := k.Verify(key, t0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkKeyring_WarmParallel(b *testing.B) {
	s, err := auth.OpenBolt(b.TempDir(), auth.BoltOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	k := auth.NewKeyring(auth.KeyringOptions{Store: s})
	keys := make([]string, 64)
	for i := range keys {
		keys[i] = storetest.AddKey(b, s, fmt.Sprint("acct", i), t0, nil)
		_, _ = k.Verify(keys[i], t0)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := k.Verify(keys[i&63], t0); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

func BenchmarkKeyring_ColdBbolt(b *testing.B) {
	s, err := auth.OpenBolt(b.TempDir(), auth.BoltOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	keys := make([]string, 256)
	for i := range keys {
		keys[i] = storetest.AddKey(b, s, fmt.Sprint("acct", i%64), t0, nil)
	}
	k := auth.NewKeyring(auth.KeyringOptions{Store: s})
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		key := keys[i%len(keys)]
		k.Invalidate(key[:8])
		if _, err := k.Verify(key, t0); err != nil {
			b.Fatal(err)
		}
	}
}
