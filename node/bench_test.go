package node_test

import (
	"testing"
	"time"

	"floodgate/auth"
	"floodgate/broker"
	"floodgate/limiter"
	"floodgate/node"
)

func testBudget(tb testing.TB) broker.Budget {
	tb.Helper()
	cfg := limiter.DefaultConfig()
	cfg.Tiers.Key.Credits = 1 << 40 // never refuse: measure the admitted path
	cfg.Tiers.Key.ConnMessagesPerSecond = 1e6
	cfg.Tiers.Key.ConnBurst = 1 << 40
	lim, err := limiter.New(limiter.Options{Config: &cfg})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { lim.Close() })
	st, err := auth.OpenBolt(tb.TempDir(), auth.BoltOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	b, err := node.NewTestBudget(lim, auth.NewUsage(auth.UsageOptions{Store: st}), "AbCdEfGh", time.Unix(1700000000, 0))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// BenchmarkBudget_Charge is the node's per-frame path: usage count, cost
// lookup, limiter charge, the broker decision.
func BenchmarkBudget_Charge(b *testing.B) {
	bud := testBudget(b)
	now := time.Unix(1700000000, 0)
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(time.Microsecond)
		if d := bud.Charge(broker.OpPing, now); !d.Allowed {
			b.Fatal(d)
		}
	}
}

func TestBudgetChargeAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	bud := testBudget(t)
	now := time.Unix(1700000000, 0)
	bud.Charge(broker.OpPing, now) // the key's usage cell is made once
	if n := testing.AllocsPerRun(1000, func() {
		now = now.Add(time.Microsecond)
		bud.Charge(broker.OpSubscribe, now)
		bud.Charge(broker.OpUnsubscribe, now)
		bud.Charge(broker.OpPing, now)
	}); n != 0 {
		t.Fatalf("%v allocs per three frames", n)
	}
}
