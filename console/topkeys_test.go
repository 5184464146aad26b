package console_test

import (
	"fmt"
	"math"
	"testing"
	"time"

	"floodgate/console"
)

var tk0 = time.Unix(1700000000, 0)

// TestWindowTopRanksAndForgets: counts add up per key and label, the
// ranking is by weight, and buckets older than the window drop out.
func TestWindowTopRanksAndForgets(t *testing.T) {
	w := console.NewWindowTop(time.Second, 3, 8)
	w.Add("a", "RATE_LIMITED", 5, tk0)
	w.Add("b", "RATE_LIMITED", 2, tk0)
	w.Add("a", "QUOTA_EXCEEDED", 1, tk0.Add(time.Second))
	w.Add("c", "x", 0, tk0) // nothing
	keys, parts := w.Top(10, tk0.Add(time.Second))
	if fmt.Sprint(keys) != "[a=6 b=2]" || parts[0]["RATE_LIMITED"] != 5 || parts[0]["QUOTA_EXCEEDED"] != 1 {
		t.Fatalf("top %v %v", keys, parts)
	}
	if keys, _ := w.Top(1, tk0.Add(time.Second)); fmt.Sprint(keys) != "[a=6]" {
		t.Fatalf("top 1: %v", keys)
	}
	// 3 s later the first bucket is out of the window.
	if keys, _ := w.Top(10, tk0.Add(3*time.Second)); fmt.Sprint(keys) != "[a=1]" {
		t.Fatalf("after the window: %v", keys)
	}
	// A bucket reused for a later time starts empty.
	w.Add("d", "x", 1, tk0.Add(3*time.Second))
	if keys, _ := w.Top(10, tk0.Add(3*time.Second)); fmt.Sprint(keys) != "[a=1 d=1]" {
		t.Fatalf("reused bucket: %v", keys)
	}
}

// TestWindowTopIsBoundedAndKeepsHeavyHitters: more keys than a bucket
// holds never grow it, and a heavy key is still ranked first.
func TestWindowTopIsBoundedAndKeepsHeavyHitters(t *testing.T) {
	w := console.NewWindowTop(time.Minute, 1, 16)
	for i := range 10000 {
		w.Add(fmt.Sprintf("k%05d", i), "x", 1, tk0)
		if i%10 == 0 {
			w.Add("heavy", "x", 5, tk0)
		}
	}
	keys, _ := w.Top(100, tk0)
	if len(keys) > 16 || keys[0] != "heavy=5000" {
		t.Fatalf("%d keys, first %v", len(keys), keys[:min(len(keys), 3)])
	}
}

func TestWindowTopAddAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	w := console.NewWindowTop(30*time.Second, 20, 128)
	now := tk0
	w.Add("AbCdEfGh", "RATE_LIMITED", 1, now)
	if n := testing.AllocsPerRun(1000, func() {
		now = now.Add(time.Millisecond)
		w.Add("AbCdEfGh", "RATE_LIMITED", 1, now)
	}); n != 0 {
		t.Fatalf("%v allocs per refusal", n)
	}
}

func BenchmarkWindowTop_Add(b *testing.B) {
	w := console.NewWindowTop(30*time.Second, 20, 128)
	keys := make([]string, 128)
	for i := range keys {
		keys[i] = fmt.Sprintf("Key%05d", i)
	}
	now := tk0
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		w.Add(keys[i%len(keys)], "RATE_LIMITED", 1, now)
		i++
	}
}

// TestP99FromBucketDeltas: the p99 of the observations between two
// cumulative histograms, interpolated within its bucket.
func TestP99FromBucketDeltas(t *testing.T) {
	prev := [][2]float64{{0.001, 100}, {0.01, 100}, {0.1, 100}}
	// 100 new observations: 90 below 1 ms, 10 in (1 ms, 10 ms].
	cur := [][2]float64{{0.001, 190}, {0.01, 200}, {0.1, 200}}
	got := console.P99Delta(prev, cur, 100)
	// rank 99: 9 of the 10 in (1, 10] ms -> 1 + 9*0.9 = 9.1 ms
	if got == nil || math.Abs(*got-9.1) > 1e-9 {
		t.Fatalf("p99 %v, want 9.1 ms", got)
	}
	if console.P99Delta(prev, prev, 0) != nil {
		t.Fatal("p99 of nothing is not nil")
	}
	// Beyond the last bucket: its bound.
	if got := console.P99Delta(prev, [][2]float64{{0.001, 100}, {0.01, 100}, {0.1, 100}}, 5); got == nil || *got != 100 {
		t.Fatalf("p99 above the buckets %v, want 100 ms", got)
	}
}
