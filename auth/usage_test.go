package auth_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"floodgate/auth"
	"floodgate/auth/storetest"
)

// batchStore records AddUsage batches and can fail them.
type batchStore struct {
	auth.Store
	mu      sync.Mutex
	batches []map[string]auth.UsageDelta
	fail    atomic.Bool
}

func (b *batchStore) AddUsage(ctx context.Context, batch map[string]auth.UsageDelta) error {
	if b.fail.Load() {
		return errors.New("store down")
	}
	b.mu.Lock()
	b.batches = append(b.batches, batch)
	b.mu.Unlock()
	return b.Store.AddUsage(ctx, batch)
}

func (b *batchStore) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.batches)
}

func TestUsage_Flush(t *testing.T) {
	bs := &batchStore{Store: storetest.OpenBolt(t)}
	ka, kb := storetest.AddKey(t, bs, "a", t0, nil), storetest.AddKey(t, bs, "b", t0, nil)
	pa, pb := ka[:8], kb[:8]
	u := auth.NewUsage(auth.UsageOptions{Store: bs})
	ctx := context.Background()

	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				u.Add(pa, 1, t0.Add(time.Duration(g)*time.Second))
			}
		}()
	}
	u.Add(pb, 0, t0) // a connection: last use without a message
	wg.Wait()
	if n, last := u.Pending(pa); n != 8000 || !last.Equal(t0.Add(7*time.Second)) {
		t.Fatalf("pending: %d %v", n, last)
	}
	if err := u.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if bs.count() != 1 {
		t.Fatalf("%d store writes, want 1 batch", bs.count())
	}
	ra, _ := bs.Get(ctx, pa)
	rb, _ := bs.Get(ctx, pb)
	if ra.RequestCount != 8000 || !ra.LastUsedAt.Equal(t0.Add(7*time.Second)) || rb.RequestCount != 0 || !rb.LastUsedAt.Equal(t0) {
		t.Fatalf("stored: %+v %+v", ra, rb)
	}
	if n, last := u.Pending(pa); n != 0 || !last.IsZero() {
		t.Fatalf("pending after flush: %d %v", n, last)
	}
	// Nothing pending: no write.
	if err := u.Flush(ctx); err != nil || bs.count() != 1 {
		t.Fatalf("empty flush wrote (%d, %v)", bs.count(), err)
	}
	// A failed flush keeps the counts for the next one.
	u.Add(pa, 5, t0.Add(time.Minute))
	bs.fail.Store(true)
	if err := u.Flush(ctx); err == nil {
		t.Fatal("flush error lost")
	}
	u.Add(pa, 1, t0.Add(30*time.Second))
	bs.fail.Store(false)
	if err := u.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	ra, _ = bs.Get(ctx, pa)
	if ra.RequestCount != 8006 || !ra.LastUsedAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("after retry: %d %v", ra.RequestCount, ra.LastUsedAt)
	}
	if n, _ := u.Pending("Unknown1"); n != 0 {
		t.Fatal("pending of unknown prefix")
	}
}

func TestUsage_Run(t *testing.T) {
	bs := &batchStore{Store: storetest.OpenBolt(t)}
	key := storetest.AddKey(t, bs, "a", t0, nil)
	u := auth.NewUsage(auth.UsageOptions{Store: bs, Interval: time.Millisecond}) // raised to 1 s
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { u.Run(ctx); close(done) }()
	for i := 0; i < 10000; i++ {
		u.Add(key[:8], 1, t0)
	}
	cancel()
	<-done
	// The final flush wrote everything; at most one periodic flush ran
	// before (the interval is 1 s, not 1 ms).
	if c := bs.count(); c < 1 || c > 2 {
		t.Fatalf("%d flushes", c)
	}
	rec, _ := bs.Get(context.Background(), key[:8])
	if rec.RequestCount != 10000 {
		t.Fatalf("count %d after Run", rec.RequestCount)
	}
}

func TestUsage_AddAllocs(t *testing.T) {
	u := auth.NewUsage(auth.UsageOptions{Store: storetest.OpenBolt(t)})
	key := "AbCdEfGh_2mT8xQ9wY3kP7vN5rL1cZ"
	prefix := key[:8]
	u.Add(prefix, 1, t0)
	if n := testing.AllocsPerRun(1000, func() { u.Add(prefix, 1, t0) }); n != 0 {
		t.Fatalf("Add allocates %v", n)
	}
}

func BenchmarkUsage_Add(b *testing.B) {
	u := auth.NewUsage(auth.UsageOptions{Store: nil})
	prefix := "AbCdEfGh"
	now := t0
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			u.Add(prefix, 1, now)
		}
	})
}
