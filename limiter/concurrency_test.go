package limiter_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"floodgate/limiter"
)

// Frames, overrides, sweeps, usage reads and cluster syncs at once: run with
// -race. The credit count must stay exact.
func TestConcurrent_ChargeOverridesSweepSync(t *testing.T) {
	_, rc := newMiniredis(t)
	for _, cluster := range []bool{false, true} {
		t.Run(fmt.Sprint("cluster=", cluster), func(t *testing.T) {
			cfg := fastConns()
			cfg.Violations.MaxRefusals = 10000
			opts := limiter.Options{Config: cfg, KeyPrefix: "conc:"}
			if cluster {
				opts.Redis = rc
			}
			l, err := limiter.New(opts)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			req := keyReq("Conc0000")
			ctx := context.Background()
			var wg sync.WaitGroup
			var mu sync.Mutex
			allowed := 0
			for range 4 {
				c := mustAdmit(t, l, req, t0) // on the test goroutine: t.Fatal must not run elsewhere
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer c.Release()
					n := 0
					for range 200 {
						if c.Charge(1, t0).Allowed {
							n++
						}
						_ = c.MaxSubscriptions()
					}
					mu.Lock()
					allowed += n
					mu.Unlock()
				}()
			}
			stop := make(chan struct{})
			var bg sync.WaitGroup
			bg.Add(1)
			go func() {
				defer bg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					l.SetOverrides("Conc0000", limiter.Limits{MaxSubscriptions: 10 + i%5}, limiter.Quotas{}, t0)
					l.Sweep(t0)
					_ = l.Usage(ctx, req, t0)
					_ = l.Sync(ctx, t0)
				}
			}()
			wg.Wait()
			close(stop)
			bg.Wait()
			if !cluster && allowed != 300 {
				t.Fatalf("allowed %d, want 300", allowed)
			}
			// In cluster mode no credit is created or lost: what was
			// admitted, what is parked in this node's lease and what is
			// left in Redis add up to the budget (time stands still here,
			// so how they split depends on how many syncs ran while the
			// charging goroutines spun).
			if cluster {
				parked := l.Leased(req.Identity)
				left := l.Usage(ctx, req, t0).Remaining // what Redis still holds
				if allowed > 300 || int64(allowed)+parked+left != 300 {
					t.Fatalf("allowed %d + parked %d + left in Redis %d, want 300", allowed, parked, left)
				}
			}
		})
	}
}

func TestMetrics_AdmitReasonsComplete(t *testing.T) {
	for _, e := range []error{limiter.ErrIPBlocked, limiter.ErrCooldown, limiter.ErrConnectRate, limiter.ErrTooManyConnections, limiter.ErrQuotaExceeded} {
		if limiter.AdmitReasons[e] == "" {
			t.Errorf("%v has no metric label", e)
		}
	}
	if len(limiter.AdmitReasons) != 5 {
		t.Errorf("%d labels", len(limiter.AdmitReasons))
	}
}
