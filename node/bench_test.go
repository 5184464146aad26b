package node_test

import (
	"testing"
	"time"

	"floodgate/auth"
	"floodgate/broker"
	"floodgate/fanout"
	"floodgate/limiter"
	"floodgate/node"
)

func testBudget(tb testing.TB) broker.Budget {
	tb.Helper()
	cfg := limiter.DefaultConfig()
	cfg.Tiers.Key.Credits = 1 << 40 // never refuse: measure the admitted path
	cfg.Tiers.Key.ConnMessagesPerSecond = 1e6
	cfg.Tiers.Key.ConnBurst = 1 << 40
	cfg.Costs.Subscribe = limiter.SourceCosts{Default: 1, BySource: map[string]int64{"book": 5, "account_orders": 0}}
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
		if d := bud.Charge(broker.OpPing, nil, now); !d.Allowed {
			b.Fatal(d)
		}
	}
}

// BenchmarkBudget_Charge_SubscribeBySource is a subscribe priced by its
// source (limits.costs.subscribe as a map): one slice index more.
func BenchmarkBudget_Charge_SubscribeBySource(b *testing.B) {
	bud := testBudget(b)
	book := testSource(b, "book")
	now := time.Unix(1700000000, 0)
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(time.Microsecond)
		if d := bud.Charge(broker.OpSubscribe, book, now); !d.Allowed {
			b.Fatal(d)
		}
	}
}

func testSource(tb testing.TB, name string) *fanout.Source {
	tb.Helper()
	srcs, err := fanout.NewSources(fanout.SourcesConfig{})
	if err != nil {
		tb.Fatal(err)
	}
	return srcs.Lookup([]byte(name))
}

func TestBudgetChargeAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	bud := testBudget(t)
	book, orders := testSource(t, "book"), testSource(t, "account_orders")
	now := time.Unix(1700000000, 0)
	bud.Charge(broker.OpPing, nil, now) // the key's usage cell is made once
	if n := testing.AllocsPerRun(1000, func() {
		now = now.Add(time.Microsecond)
		bud.Charge(broker.OpSubscribe, book, now)
		bud.Charge(broker.OpSubscribe, orders, now)
		bud.Charge(broker.OpSubscribe, nil, now)
		bud.Charge(broker.OpUnsubscribe, book, now)
		bud.Charge(broker.OpPing, nil, now)
	}); n != 0 {
		t.Fatalf("%v allocs per five frames", n)
	}
}

// The budget prices a subscribe by its source: book 5, account_orders 0
// (rl.r unchanged), others the default.
func TestBudgetChargeBySource(t *testing.T) {
	bud := testBudget(t)
	now := time.Unix(1700000000, 0)
	r0 := bud.Charge(broker.OpPing, nil, now).RL.Remaining
	for _, tc := range []struct {
		src  string
		cost int64
	}{{"book", 5}, {"account_orders", 0}, {"trades", 1}, {"", 1}} {
		var src *fanout.Source
		if tc.src != "" {
			src = testSource(t, tc.src)
		}
		d := bud.Charge(broker.OpSubscribe, src, now)
		if !d.Allowed || d.RL.Remaining != r0-tc.cost {
			t.Fatalf("%q: %+v, want r %d", tc.src, d, r0-tc.cost)
		}
		r0 = d.RL.Remaining
	}
}
