package loadtest_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"floodgate/broker"
	"floodgate/keyapi"
	"floodgate/limiter"
	"floodgate/loadtest"

	"github.com/nats-io/nats.go"
)

// TestRun_RealBroker_ExactAccounting: 21 connections on 3 channels through
// the real broker; every measured message reaches its 7 subscribers, in
// order, and the broker's process metrics are sampled.
func TestRun_RealBroker_ExactAccounting(t *testing.T) {
	t.Parallel()
	n := startNode(t, testNodeOptions{})
	rep, err := loadtest.Run(context.Background(), loadtest.Config{
		URL:        n.wsURL,
		NATSURL:    n.natsURL,
		MetricsURL: n.metricsURL,
		Conns:      21,
		Channels:   3,
		Rate:       300,
		Size:       150,
		Warmup:     100 * time.Millisecond,
		Duration:   500 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	wantExact(t, rep, 21, 7, 75, 225) // 300 msgs/s for 0.5 s
	if rep.LatencyP50Ms <= 0 || rep.LatencyP99Ms < rep.LatencyP50Ms {
		t.Fatalf("latency p50 %v p99 %v", rep.LatencyP50Ms, rep.LatencyP99Ms)
	}
	if rep.BrokerRSSBytes <= 0 || rep.BrokerCPUSPerMillion < 0 {
		t.Fatalf("broker RSS %v, CPU per million %v", rep.BrokerRSSBytes, rep.BrokerCPUSPerMillion)
	}
	if err := rep.Gate(0, time.Minute); err != nil {
		t.Fatalf("Gate: %v", err)
	}
}

// TestRun_RealBroker_DropsClient: the broker closes one key's connection
// (as on revocation) while publishing; the report shows the disconnect and
// exactly that client's missing deliveries as loss.
func TestRun_RealBroker_DropsClient(t *testing.T) {
	t.Parallel()
	n := startNode(t, testNodeOptions{})
	keys := n.createKeys(t, 2)
	nc, err := nats.Connect(n.natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var seen, closed atomic.Int64
	if _, err := nc.Subscribe("md.trades.LOAD0", func(*nats.Msg) {
		if seen.Add(1) == 20 {
			closed.Store(int64(n.srv.CloseKey(keyPrefix(keys[0]), broker.ReasonKeyRevoked)))
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	rep, err := loadtest.Run(context.Background(), loadtest.Config{
		URL:      n.wsURL,
		NATSURL:  n.natsURL,
		Conns:    4,
		Rate:     200,
		Duration: 500 * time.Millisecond,
		Drain:    300 * time.Millisecond,
		APIKeys:  []string{keys[0], keys[1], keys[1], keys[1]}, // connection 0 alone on keys[0]
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if closed.Load() != 1 {
		t.Fatalf("CloseKey closed %d sessions", closed.Load())
	}
	if rep.ConnectionsOK != 4 || rep.ExpectedDeliveries != 4*rep.Published {
		t.Fatalf("ok %d, expected %d for %d published", rep.ConnectionsOK, rep.ExpectedDeliveries, rep.Published)
	}
	if len(rep.Disconnects) != 1 || rep.Disconnects["close 1008"] != 1 {
		t.Fatalf("disconnects %v", rep.Disconnects)
	}
	lost := rep.ExpectedDeliveries - rep.Delivered
	if rep.Delivered < 3*rep.Published || lost < rep.Published/2 || lost > rep.Published {
		t.Fatalf("delivered %d, lost %d of %d published: want the other 3 complete and most of one missing",
			rep.Delivered, lost, rep.Published)
	}
	if rep.LossPct < 12.5 || rep.LossPct > 25 {
		t.Fatalf("loss %v%%", rep.LossPct)
	}
	if err := rep.Gate(1, -1); !errors.Is(err, loadtest.ErrThreshold) {
		t.Fatalf("Gate = %v", err)
	}
}

// TestStorm_SteadyPopulationLossless: 50 connections per second churn
// (subscribe, hold 200 ms, close) beside 10 steady ones, which lose
// nothing.
func TestStorm_SteadyPopulationLossless(t *testing.T) {
	t.Parallel()
	n := startNode(t, testNodeOptions{})
	var progress lockedBuffer
	rep, err := loadtest.Run(context.Background(), loadtest.Config{
		Scenario:         loadtest.ScenarioStorm,
		URL:              n.wsURL,
		NATSURL:          n.natsURL,
		Conns:            20, // ⌈50/s × 0.2 s⌉ = 10 churn, 10 stay
		Channels:         2,
		Rate:             200,
		Warmup:           200 * time.Millisecond,
		Duration:         time.Second,
		Ramp:             50,
		Hold:             200 * time.Millisecond,
		Progress:         &progress,
		ProgressInterval: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	s := rep.Storm
	if s == nil || s.SteadyConns != 10 || rep.ConnectionsOK != 10 {
		t.Fatalf("storm %+v, steady ok %d", s, rep.ConnectionsOK)
	}
	if s.ChurnAttempts < 30 || s.ConnectsFailed != 0 || s.ConnectsOK != s.ChurnAttempts {
		t.Fatalf("churn: %d attempts, ok %d, failed %d %v", s.ChurnAttempts, s.ConnectsOK, s.ConnectsFailed, s.ConnectFailures)
	}
	if s.ChurnPerS < 30 || s.ChurnPerS > 60 {
		t.Fatalf("churn %.1f/s at ramp 50/s", s.ChurnPerS)
	}
	if s.Received == 0 || len(s.Disconnects) != 0 || s.ConnectP50Ms <= 0 || s.SubscribeP50Ms < s.ConnectP50Ms {
		t.Fatalf("churn received %d, disconnects %v, connect p50 %v, subscribe p50 %v",
			s.Received, s.Disconnects, s.ConnectP50Ms, s.SubscribeP50Ms)
	}
	if rep.Delivered == 0 || rep.Delivered != rep.ExpectedDeliveries || rep.LossPct != 0 || len(rep.Disconnects) != 0 {
		t.Fatalf("steady population: delivered %d of %d, disconnects %v", rep.Delivered, rep.ExpectedDeliveries, rep.Disconnects)
	}
	if !strings.Contains(progress.String(), "| churn ok ") {
		t.Fatalf("progress:\n%s", progress.String())
	}
	var table strings.Builder
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"steady population", "churn connects", "loss                 0.000 %"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
}

// TestStorm_RefusedConnectsByReason: the anonymous tier allows 25 connects
// per window; the churn beyond them is refused with 429 and counted by
// reason, the steady population unharmed.
func TestStorm_RefusedConnectsByReason(t *testing.T) {
	t.Parallel()
	limits := limiter.DefaultConfig()
	limits.Tiers.Anonymous.Connects = 25
	n := startNode(t, testNodeOptions{limits: &limits})
	rep, err := loadtest.Run(context.Background(), loadtest.Config{
		Scenario: loadtest.ScenarioStorm,
		URL:      n.wsURL,
		NATSURL:  n.natsURL,
		Conns:    15, // 5 churn, 10 stay
		Rate:     100,
		Duration: time.Second,
		Ramp:     50,
		Hold:     100 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	s := rep.Storm
	refused := 0
	for reason, k := range s.ConnectFailures {
		if !strings.HasPrefix(reason, "http 429 ") {
			t.Errorf("failure %q", reason)
		}
		refused += k
	}
	if s.ConnectsOK != 15 || refused == 0 || refused != s.ConnectsFailed {
		t.Fatalf("churn ok %d (want 25 connects - 10 steady), failures %v", s.ConnectsOK, s.ConnectFailures)
	}
	if rep.ConnectionsOK != 10 || rep.Delivered != rep.ExpectedDeliveries || rep.LossPct != 0 {
		t.Fatalf("steady ok %d, delivered %d of %d", rep.ConnectionsOK, rep.Delivered, rep.ExpectedDeliveries)
	}
}

// throttleLimits: 20 credits per 2 s (600 per minute, 10/s) with a
// connection rate that does not bind.
func throttleLimits() *limiter.Config {
	c := limiter.DefaultConfig()
	for _, tier := range []*limiter.Tier{&c.Tiers.Anonymous, &c.Tiers.Key} {
		tier.Credits, tier.CreditWindow = 20, 2*time.Second
		tier.ConnMessagesPerSecond, tier.ConnBurst = 100, 100
	}
	return &c
}

// checkThrottle asserts every identity was driven above its budget and
// admitted within 5 % of 10 per second, without being closed.
func checkThrottle(t *testing.T, rep loadtest.Report, identities, connsEach int) {
	t.Helper()
	tr := rep.Throttle
	if tr == nil || len(tr.PerIdentity) != identities {
		t.Fatalf("throttle report %+v", tr)
	}
	if rep.ConnectionsOK != identities*connsEach || rep.ConnectionsFailed != 0 || len(rep.Disconnects) != 0 {
		t.Fatalf("connections ok %d, failed %v, disconnects %v", rep.ConnectionsOK, rep.ConnectFailures, rep.Disconnects)
	}
	seen := map[string]bool{}
	for _, id := range tr.PerIdentity {
		t.Logf("%s: admitted %d refused %d, %.3f/s by %s (configured %.3f/s, %+.2f%%), by second %v / %v",
			id.Identity, id.Admitted, id.Refused, id.AdmittedPerS, id.Method, id.ConfiguredPerS, id.ErrorPct,
			id.AdmittedBySecond, id.RefusedBySecond)
		if seen[id.Identity] || id.Conns != connsEach {
			t.Errorf("%s: duplicate or %d conns", id.Identity, id.Conns)
		}
		seen[id.Identity] = true
		if id.ConfiguredPerS != 10 || !id.WithinTolerance || id.Method != "refusals" {
			t.Errorf("%s: configured %v, within %v, method %s", id.Identity, id.ConfiguredPerS, id.WithinTolerance, id.Method)
		}
		if id.Refused == 0 || id.RefusedConn != 0 || id.OtherErrors != 0 || len(id.Closes) != 0 {
			t.Errorf("%s: refused %d, conn-refused %d, other %d, closes %v", id.Identity, id.Refused, id.RefusedConn, id.OtherErrors, id.Closes)
		}
		adm := 0
		for _, k := range id.AdmittedBySecond {
			adm += k
		}
		if uint64(adm) != id.Admitted {
			t.Errorf("%s: per-second admitted %v sum to %d, not %d", id.Identity, id.AdmittedBySecond, adm, id.Admitted)
		}
	}
	if !tr.WithinTolerance {
		t.Errorf("not within tolerance")
	}
	if err := rep.Gate(-1, -1); err != nil {
		t.Errorf("Gate: %v", err)
	}
}

// TestThrottle_Keys: two keys with two connections each, the configured
// rate read from the replies' "q" over the credit window.
func TestThrottle_Keys(t *testing.T) {
	t.Parallel()
	n := startNode(t, testNodeOptions{limits: throttleLimits()})
	var progress lockedBuffer
	rep, err := loadtest.Run(context.Background(), loadtest.Config{
		Scenario:         loadtest.ScenarioThrottle,
		URL:              n.wsURL,
		APIKeys:          n.createKeys(t, 2),
		Conns:            4,
		SendRate:         20,
		CreditWindow:     2 * time.Second,
		Warmup:           500 * time.Millisecond,
		Duration:         3 * time.Second,
		Progress:         &progress,
		ProgressInterval: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkThrottle(t, rep, 2, 2)
	if !strings.HasPrefix(rep.Throttle.PerIdentity[0].Identity, "key:") {
		t.Errorf("identity %q", rep.Throttle.PerIdentity[0].Identity)
	}
	if !strings.Contains(progress.String(), "conns 4 open | admitted ") {
		t.Errorf("progress:\n%s", progress.String())
	}
	var table strings.Builder
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), "every identity within tolerance") || !strings.Contains(table.String(), "configured/s") {
		t.Errorf("table:\n%s", table.String())
	}
}

// TestThrottle_AnonymousSourceAddrs: two anonymous identities are two
// source addresses (127.0.0.1 and 127.0.0.2 by default on loopback); the
// configured rate is given as credits per minute.
func TestThrottle_AnonymousSourceAddrs(t *testing.T) {
	t.Parallel()
	n := startNode(t, testNodeOptions{limits: throttleLimits()})
	rep, err := loadtest.Run(context.Background(), loadtest.Config{
		Scenario:   loadtest.ScenarioThrottle,
		URL:        n.wsURL,
		Identities: 2,
		Conns:      4,
		SendRate:   20,
		ExpectRate: 600,
		Warmup:     500 * time.Millisecond,
		Duration:   3 * time.Second,
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkThrottle(t, rep, 2, 2)
	if got := rep.Throttle.PerIdentity[1].Identity; got != "ip:127.0.0.2" {
		t.Errorf("identity %q", got)
	}
}

func TestCreateKeys(t *testing.T) {
	t.Parallel()
	n := startNode(t, testNodeOptions{})
	keys := n.createKeys(t, 7) // two accounts: at most 5 active keys each
	seen := map[string]bool{}
	for _, k := range keys {
		if k == "" || seen[k] {
			t.Fatalf("keys %q", keys)
		}
		seen[k] = true
	}
	ctx := context.Background()
	admin := keyapi.NewAdminClient(n.apiURL, testAdminToken, nil)
	list, err := admin.ListKeys(ctx, "", "", "active")
	if err != nil {
		t.Fatal(err)
	}
	accounts := map[string]int{}
	for _, k := range list {
		accounts[k.Account]++
	}
	if len(list) != 7 || len(accounts) != 2 {
		t.Fatalf("%d keys over accounts %v", len(list), accounts)
	}
	_, err = loadtest.CreateKeys(ctx, loadtest.KeyOptions{AdminURL: n.apiURL, AdminToken: "wrong", N: 1})
	var ae *keyapi.APIError
	if !errors.As(err, &ae) || ae.Status != 401 {
		t.Fatalf("bad token: %v", err)
	}
}

// TestThrottle_RedialsAfterClose: with a violation limit of one refusal
// the broker closes the connection (1008) at the second; the pinger counts
// the close (when it next reads, after its refusal pause) and redials once
// the identity's short cooldown is over.
func TestThrottle_RedialsAfterClose(t *testing.T) {
	t.Parallel()
	limits := throttleLimits()
	limits.Violations.MaxRefusals = 1
	limits.Violations.Cooldowns = []time.Duration{200 * time.Millisecond}
	n := startNode(t, testNodeOptions{limits: limits})
	rep, err := loadtest.Run(context.Background(), loadtest.Config{
		Scenario:     loadtest.ScenarioThrottle,
		URL:          n.wsURL,
		APIKeys:      n.createKeys(t, 1),
		SendRate:     40,
		CreditWindow: 2 * time.Second,
		RefusalPause: 300 * time.Millisecond,
		Warmup:       200 * time.Millisecond,
		Duration:     3 * time.Second,
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	id := rep.Throttle.PerIdentity[0]
	if id.Closes["close 1008"] == 0 || id.Redials == 0 || rep.Disconnects["close 1008"] != id.Closes["close 1008"] {
		t.Fatalf("closes %v, redials %d, redial failures %v, report disconnects %v",
			id.Closes, id.Redials, id.RedialFailures, rep.Disconnects)
	}
	if id.Admitted == 0 || id.Refused == 0 {
		t.Fatalf("admitted %d, refused %d", id.Admitted, id.Refused)
	}
}
