package procnode_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"floodgate/internal/testdeps/procnode"
)

func TestScanLog_ServingAddressesAndTail(t *testing.T) {
	var log strings.Builder
	log.WriteString("not json\n")
	log.WriteString(`{"level":"info","message":"starting"}` + "\n")
	log.WriteString(`{"level":"info","listen":"127.0.0.1:1001","api_listen":"127.0.0.1:1002","message":"floodgate serving"}` + "\n")
	log.WriteString(`{"level":"info","listen":"127.0.0.1:9","api_listen":"127.0.0.1:9","message":"floodgate serving"}` + "\n")
	for i := range procnode.LogKeep {
		fmt.Fprintf(&log, "line %d\n", i)
	}
	n, got, ok := procnode.ScanLog(strings.NewReader(log.String()))
	if !ok || got != [2]string{"127.0.0.1:1001", "127.0.0.1:1002"} {
		t.Fatalf("serving addresses %v (found %v), want the first event's", got, ok)
	}
	if got, want := n.Tail(2), fmt.Sprintf("line %d\nline %d", procnode.LogKeep-2, procnode.LogKeep-1); got != want {
		t.Fatalf("Tail(2) = %q, want %q", got, want)
	}
	if n := len(strings.Split(n.Tail(1000), "\n")); n < procnode.LogDrop || n > procnode.LogKeep {
		t.Fatalf("the node keeps %d lines, want %d..%d", n, procnode.LogDrop, procnode.LogKeep)
	}
}

func TestPoll(t *testing.T) {
	calls := 0
	if _, ok := procnode.Poll(time.Now(), time.Second, func() bool { calls++; return calls == 3 }); !ok || calls != 3 {
		t.Fatalf("Poll: ok %v after %d calls, want true after 3", ok, calls)
	}
	start := time.Now().Add(-time.Second) // the deadline has passed: one check
	calls = 0
	if d, ok := procnode.Poll(start, 500*time.Millisecond, func() bool { calls++; return false }); ok || calls != 1 || d < time.Second {
		t.Fatalf("Poll past its deadline: ok %v, %d calls, took %v", ok, calls, d)
	}
}

func TestReadinessHas(t *testing.T) {
	r := procnode.Readiness{Status: 503, Reasons: []string{"nats", "redis"}}
	if !r.Has("redis") || r.Has("draining") {
		t.Fatalf("%+v: Has(redis) %v, Has(draining) %v", r, r.Has("redis"), r.Has("draining"))
	}
}
