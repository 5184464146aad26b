package loadtest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"floodgate/internal/testdeps"
	"floodgate/loadtest"
)

// lockedBuffer is a goroutine-safe progress sink.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestRun_RelayMetricsArithmetic: 21 connections on 3 channels through the
// relay, whose /metrics reports made-up RSS and CPU figures; the report's
// broker figures follow from them exactly (the real broker's cannot be
// predicted; TestRun_RealBroker_ExactAccounting covers the deliveries).
func TestRun_RelayMetricsArithmetic(t *testing.T) {
	natsURL := testdeps.EmbeddedNATS(t)
	var samples atomic.Int64
	rl := newRelay(t, natsURL, func(r *relay) {
		r.metrics = func() (float64, float64) {
			n := float64(samples.Add(1))
			return 100e6 + n*21*8192, n // RSS grows 8 KiB per connection per sample, CPU 1 s per sample
		}
	})
	var progress lockedBuffer
	rep, err := loadtest.Run(context.Background(), loadtest.Config{
		URL:              rl.wsURL(),
		NATSURL:          natsURL,
		MetricsURL:       rl.URL + "/metrics",
		Conns:            21,
		Channels:         3,
		Rate:             300,
		Size:             120,
		Warmup:           100 * time.Millisecond,
		Duration:         400 * time.Millisecond,
		Progress:         &progress,
		ProgressInterval: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	wantExact(t, rep, 21, 7, 60, 180) // 300 msgs/s for 0.4 s
	if rep.LatencyP50Ms <= 0 || rep.LatencyP99Ms < rep.LatencyP50Ms || rep.LatencyMaxMs < rep.LatencyP999Ms {
		t.Fatalf("latency p50 %v p99 %v p99.9 %v max %v", rep.LatencyP50Ms, rep.LatencyP99Ms, rep.LatencyP999Ms, rep.LatencyMaxMs)
	}
	if rep.ConnectP50Ms <= 0 || rep.DeliveredPerS <= 0 || rep.GeneratorCPUS <= 0 {
		t.Fatalf("connect p50 %v, delivered/s %v, generator CPU %v", rep.ConnectP50Ms, rep.DeliveredPerS, rep.GeneratorCPUS)
	}
	// Samples: before connecting, connected, publish start, end.
	if rep.BrokerKiBPerConn != 8 || rep.BrokerRSSBytes != 100e6+4*21*8192 {
		t.Fatalf("broker KiB/conn %v, RSS %v", rep.BrokerKiBPerConn, rep.BrokerRSSBytes)
	}
	if want := 1 / float64(rep.Delivered) * 1e6; rep.BrokerCPUSPerMillion != want {
		t.Fatalf("broker CPU per million %v, want %v", rep.BrokerCPUSPerMillion, want)
	}
	if !strings.Contains(progress.String(), "conns 21 ok, 0 failed") {
		t.Fatalf("progress:\n%s", progress.String())
	}
	var table strings.Builder
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"loss                 0.000 %", "connections          ok 21, failed 0", "latency", "broker RSS"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	if err := rep.Gate(0, time.Minute); err != nil {
		t.Fatalf("Gate: %v", err)
	}
}

// TestRun_ConnectFailures: refused upgrades and refused subscriptions are
// counted by reason and left out of the expected deliveries.
func TestRun_ConnectFailures(t *testing.T) {
	natsURL := testdeps.EmbeddedNATS(t)
	rl := newRelay(t, natsURL, func(r *relay) { r.refuseEvery = 4; r.badSymbol = "LOAD2" })
	rep, err := loadtest.Run(context.Background(), loadtest.Config{
		URL:             rl.wsURL(),
		NATSURL:         natsURL,
		Conns:           12,
		Channels:        3,
		Rate:            300,
		Duration:        200 * time.Millisecond,
		DialConcurrency: 1, // upgrades in order: every 4th is refused
		APIKeys:         []string{"k1", "k2"},
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if rep.ConnectFailures["http 429 TOO_MANY_CONNECTIONS"] != 3 {
		t.Fatalf("failures %v", rep.ConnectFailures)
	}
	if rep.ConnectFailures["subscribe INVALID_PARAMS"] == 0 || rep.ConnectionsOK+rep.ConnectionsFailed != 12 {
		t.Fatalf("ok %d, failures %v", rep.ConnectionsOK, rep.ConnectFailures)
	}
	if rep.Delivered != rep.ExpectedDeliveries || rep.LossPct != 0 || rep.Delivered == 0 {
		t.Fatalf("delivered %d of %d", rep.Delivered, rep.ExpectedDeliveries)
	}
}

func TestRun_Cancelled(t *testing.T) {
	natsURL := testdeps.EmbeddedNATS(t)
	rl := newRelay(t, natsURL, nil)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	rep, err := loadtest.Run(ctx, loadtest.Config{URL: rl.wsURL(), NATSURL: natsURL, Conns: 2, Duration: time.Hour})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v", err)
	}
	if rep.ConnectionsOK != 2 || rep.Delivered == 0 {
		t.Fatalf("partial report: ok %d delivered %d", rep.ConnectionsOK, rep.Delivered)
	}
}

func TestRun_BadConfig(t *testing.T) {
	for _, c := range []loadtest.Config{
		{NATSURL: "nats://127.0.0.1:1"},
		{URL: "ws://127.0.0.1:1/ws"},
		{URL: "ws://127.0.0.1:1/ws", NATSURL: "nats://127.0.0.1:1", Scenario: "bogus"},
		{URL: "ws://127.0.0.1:1/ws", NATSURL: "nats://127.0.0.1:1", Scenario: "storm", Conns: 10, Ramp: 10, Hold: time.Second},
		{URL: "ws://127.0.0.1:1/ws", NATSURL: "nats://127.0.0.1:1", Scenario: "storm", Conns: 10, Channels: 5, Ramp: 10, Hold: 600 * time.Millisecond},
		{URL: "ws://127.0.0.1:1/ws", Scenario: "throttle", Identities: 3, APIKeys: []string{"a_1", "b_2"}},
		{URL: "ws://10.1.2.3:1/ws", Scenario: "throttle", Identities: 2},
		{URL: "ws://127.0.0.1:1/ws", Scenario: "throttle", Identities: 2, Conns: 1},
		{Scenario: "throttle"},
		{URL: "ws://127.0.0.1:1/ws", NATSURL: "nats://127.0.0.1:1", Size: 10},
		{URL: "ws://127.0.0.1:1/ws", NATSURL: "nats://127.0.0.1:1", Conns: 2, Channels: 3},
	} {
		if _, err := loadtest.Run(context.Background(), c); !errors.Is(err, loadtest.ErrConfig) {
			t.Errorf("Run(%+v) = %v, want ErrConfig", c, err)
		}
	}
}

// TestReport_JSONFields is the golden list of the --json field names,
// nested ones as parent.child ([] for list elements): change it only
// together with docs and whoever parses the file.
func TestReport_JSONFields(t *testing.T) {
	b, err := json.Marshal(loadtest.Report{
		Storm:    &loadtest.StormReport{},
		Throttle: &loadtest.ThrottleReport{PerIdentity: []loadtest.IdentityReport{{}}},
		Hot:      &loadtest.HotReport{},
		Resume:   &loadtest.ResumeReport{},
	})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	var got []string
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch v := v.(type) {
		case map[string]any:
			if prefix != "" && len(v) == 0 {
				return // a reason map, empty here
			}
			for k, c := range v {
				got = append(got, prefix+k)
				walk(prefix+k+".", c)
			}
		case []any:
			for _, c := range v {
				walk(strings.TrimSuffix(prefix, ".")+"[].", c)
			}
		}
	}
	walk("", m)
	slices.Sort(got)
	want := []string{
		"broker_cpu_s_per_million", "broker_kib_per_conn", "broker_rss_bytes",
		"channels", "connect_failures", "connect_p50_ms", "connect_p99_ms",
		"connections_failed", "connections_ok", "conns", "deflate_conns", "delivered", "delivered_per_s",
		"disconnects", "duration_s", "elapsed_s", "error_frames", "expected_deliveries",
		"generator_cpu_s",
		"hot", "hot.hot_received", "hot.join_failed", "hot.join_failures", "hot.join_s", "hot.joined_ok", "hot.joiners", "hot.joins_per_s",
		"hot.leave_alloc_bytes", "hot.leave_cpu_s", "hot.leave_s", "hot.left_ok",
		"hot.snapshot_after_ack", "hot.snapshot_after_ack.max_ms", "hot.snapshot_after_ack.p50_ms", "hot.snapshot_after_ack.p99_ms",
		"hot.snapshot_after_ack.samples", "hot.snapshots",
		"hot.steady_before", "hot.steady_before.max_ms", "hot.steady_before.p50_ms", "hot.steady_before.p99_ms", "hot.steady_before.samples",
		"hot.steady_conns",
		"hot.steady_during", "hot.steady_during.max_ms", "hot.steady_during.p50_ms", "hot.steady_during.p99_ms", "hot.steady_during.samples",
		"hot.storm_alloc_bytes", "hot.storm_cpu_s",
		"latency_max_ms", "latency_p50_ms", "latency_p90_ms",
		"latency_p999_ms", "latency_p99_ms", "loss_pct", "out_of_order", "published",
		"rate",
		"resume", "resume.away_s", "resume.conns", "resume.duplicates", "resume.failed", "resume.failures", "resume.gaps",
		"resume.last_live_s", "resume.live_frames", "resume.live_p50_ms", "resume.live_p99_ms", "resume.lost", "resume.missed",
		"resume.not_recovered", "resume.recovered", "resume.replayed", "resume.resumed", "resume.retries",
		"resume.storm_alloc_bytes", "resume.storm_cpu_s",
		"scenario", "size",
		"storm", "storm.churn_attempts", "storm.churn_per_s", "storm.connect_failures",
		"storm.connect_p50_ms", "storm.connect_p99_ms", "storm.connects_failed", "storm.connects_ok",
		"storm.disconnects", "storm.hold_s", "storm.ramp", "storm.received", "storm.steady_conns",
		"storm.subscribe_p50_ms", "storm.subscribe_p99_ms",
		"throttle", "throttle.credit_window_s", "throttle.expect_rate", "throttle.identities",
		"throttle.per_identity",
		"throttle.per_identity[].admitted", "throttle.per_identity[].admitted_by_second",
		"throttle.per_identity[].admitted_per_s", "throttle.per_identity[].closes",
		"throttle.per_identity[].configured_per_s", "throttle.per_identity[].conns",
		"throttle.per_identity[].error_pct", "throttle.per_identity[].identity",
		"throttle.per_identity[].method", "throttle.per_identity[].other_errors",
		"throttle.per_identity[].redial_failures", "throttle.per_identity[].redials",
		"throttle.per_identity[].refused", "throttle.per_identity[].refused_by_second",
		"throttle.per_identity[].refused_conn", "throttle.per_identity[].send_per_s",
		"throttle.per_identity[].within_tolerance",
		"throttle.send_rate", "throttle.tolerance_pct", "throttle.within_tolerance",
		"url", "warmup_s", "wire_bytes_per_frame",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("JSON fields changed:\ngot  %q\nwant %q", got, want)
	}
	// Without the scenario objects, the top level is what it always was.
	b, _ = json.Marshal(loadtest.Report{})
	if strings.Contains(string(b), "storm") || strings.Contains(string(b), "throttle") || strings.Contains(string(b), `"hot"`) || strings.Contains(string(b), `"resume"`) {
		t.Fatalf("empty report: %s", b)
	}
}

func TestReport_GateThrottle(t *testing.T) {
	rep := loadtest.Report{Throttle: &loadtest.ThrottleReport{TolerancePct: 5, PerIdentity: []loadtest.IdentityReport{
		{Identity: "key:a", WithinTolerance: true},
		{Identity: "key:b", AdmittedPerS: 12, ConfiguredPerS: 10, ErrorPct: 20},
	}}}
	err := rep.Gate(-1, -1)
	if !errors.Is(err, loadtest.ErrThreshold) || !strings.Contains(err.Error(), "key:b") || strings.Contains(err.Error(), "key:a") {
		t.Fatalf("Gate = %v", err)
	}
}

func TestReport_Gate(t *testing.T) {
	rep := loadtest.Report{LossPct: 0.5, LatencyP99Ms: 30}
	for _, c := range []struct {
		loss float64
		p99  time.Duration
		ok   bool
	}{
		{-1, -1, true}, {1, 50 * time.Millisecond, true}, {0.1, -1, false},
		{-1, 20 * time.Millisecond, false}, {0.5, 30 * time.Millisecond, true},
	} {
		if err := rep.Gate(c.loss, c.p99); (err == nil) != c.ok {
			t.Errorf("Gate(%v, %v) = %v", c.loss, c.p99, err)
		}
	}
}

func TestParseProcessMetrics(t *testing.T) {
	rss, cpu, err := loadtest.ParseProcessMetrics("# HELP x\nprocess_cpu_seconds_total 12.5\n" +
		"process_resident_memory_bytes 1.048576e+07\nprocess_open_fds 10\n")
	if err != nil || rss != 10485760 || cpu != 12.5 {
		t.Fatalf("got %v %v %v", rss, cpu, err)
	}
	if _, _, err := loadtest.ParseProcessMetrics("go_goroutines 3\n"); err == nil {
		t.Fatal("missing metrics accepted")
	}
}

func TestAutoSourceAddrs(t *testing.T) {
	if got := loadtest.AutoSourceAddrs("ws://127.0.0.1:8080/ws", 1000); got != nil {
		t.Fatalf("1000 conns: %v", got)
	}
	got := loadtest.AutoSourceAddrs("ws://localhost:8080/ws", 50_000)
	want := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3")}
	if !slices.Equal(got, want) {
		t.Fatalf("50k conns: %v", got)
	}
	if got := loadtest.AutoSourceAddrs("ws://10.1.2.3:8080/ws", 50_000); got != nil {
		t.Fatalf("remote broker: %v", got)
	}
}
