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

// TestRun_ExactAccounting: 21 connections on 3 channels through the relay;
// every measured message must reach its 7 subscribers, in order.
func TestRun_ExactAccounting(t *testing.T) {
	natsURL := natsServer(t)
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
	if rep.ConnectionsOK != 21 || rep.ConnectionsFailed != 0 {
		t.Fatalf("connections ok %d failed %d %v", rep.ConnectionsOK, rep.ConnectionsFailed, rep.ConnectFailures)
	}
	if rep.Published < 60 || rep.Published > 180 {
		t.Fatalf("published %d measured messages at 300/s for 0.4 s", rep.Published)
	}
	if rep.ExpectedDeliveries != 7*rep.Published {
		t.Fatalf("expected %d, want 7 × %d", rep.ExpectedDeliveries, rep.Published)
	}
	if rep.Delivered != rep.ExpectedDeliveries || rep.LossPct != 0 {
		t.Fatalf("delivered %d of %d (loss %v%%)", rep.Delivered, rep.ExpectedDeliveries, rep.LossPct)
	}
	if rep.OutOfOrder != 0 || rep.ErrorFrames != 0 || len(rep.Disconnects) != 0 {
		t.Fatalf("out of order %d, error frames %d, disconnects %v", rep.OutOfOrder, rep.ErrorFrames, rep.Disconnects)
	}
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

// TestRun_BrokerDropsClient: the relay closes one connection with 1013 after
// 3 messages; the report shows the loss and the disconnect.
func TestRun_BrokerDropsClient(t *testing.T) {
	natsURL := natsServer(t)
	rl := newRelay(t, natsURL, func(r *relay) { r.dropAfter = 3 })
	rep, err := loadtest.Run(context.Background(), loadtest.Config{
		URL:      rl.wsURL(),
		NATSURL:  natsURL,
		Conns:    4,
		Channels: 1,
		Rate:     200,
		Duration: 300 * time.Millisecond,
		Drain:    300 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if rep.ConnectionsOK != 4 || rep.ExpectedDeliveries != 4*rep.Published {
		t.Fatalf("ok %d, expected %d for %d published", rep.ConnectionsOK, rep.ExpectedDeliveries, rep.Published)
	}
	if rep.Disconnects["close 1013"] != 1 {
		t.Fatalf("disconnects %v", rep.Disconnects)
	}
	if lost := rep.ExpectedDeliveries - rep.Delivered; lost != rep.Published-3 {
		t.Fatalf("lost %d, want %d (all but 3 of one client's)", lost, rep.Published-3)
	}
	if rep.LossPct <= 20 || rep.LossPct >= 25 {
		t.Fatalf("loss %v%%, want just under 25%%", rep.LossPct)
	}
	err = rep.Gate(1, -1)
	if !errors.Is(err, loadtest.ErrThreshold) || !strings.Contains(err.Error(), "loss") {
		t.Fatalf("Gate = %v", err)
	}
}

// TestRun_ConnectFailures: refused upgrades and refused subscriptions are
// counted by reason and left out of the expected deliveries.
func TestRun_ConnectFailures(t *testing.T) {
	natsURL := natsServer(t)
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
	natsURL := natsServer(t)
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
		{URL: "ws://127.0.0.1:1/ws", NATSURL: "nats://127.0.0.1:1", Scenario: "storm"},
		{URL: "ws://127.0.0.1:1/ws", NATSURL: "nats://127.0.0.1:1", Size: 10},
		{URL: "ws://127.0.0.1:1/ws", NATSURL: "nats://127.0.0.1:1", Conns: 2, Channels: 3},
	} {
		if _, err := loadtest.Run(context.Background(), c); !errors.Is(err, loadtest.ErrConfig) {
			t.Errorf("Run(%+v) = %v, want ErrConfig", c, err)
		}
	}
}

// TestReport_JSONFields is the golden list of the --json field names: change
// it only together with docs and whoever parses the file.
func TestReport_JSONFields(t *testing.T) {
	b, err := json.Marshal(loadtest.Report{})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	var got []string
	for k := range m {
		got = append(got, k)
	}
	slices.Sort(got)
	want := []string{
		"broker_cpu_s_per_million", "broker_kib_per_conn", "broker_rss_bytes",
		"channels", "connect_failures", "connect_p50_ms", "connect_p99_ms",
		"connections_failed", "connections_ok", "conns", "delivered", "delivered_per_s",
		"disconnects", "duration_s", "elapsed_s", "error_frames", "expected_deliveries",
		"generator_cpu_s", "latency_max_ms", "latency_p50_ms", "latency_p90_ms",
		"latency_p999_ms", "latency_p99_ms", "loss_pct", "out_of_order", "published",
		"rate", "scenario", "size", "url", "warmup_s",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("JSON fields changed:\ngot  %q\nwant %q", got, want)
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
