//go:build cluster

package cluster_test

import (
	"encoding/json"
	"math"
	"testing"
	"time"

	"floodgate/internal/testdeps/procnode"
)

// The credit test spends one key's credits from connections on all three
// nodes and compares what the cluster admitted with what one budget allows
// (procnode.SpendCredits has the math and the pacing): C = 120 credits per
// 60 s, fifteen connections spread 8/5/2, for creditRun.
const (
	creditsPerMinute = 120
	creditRun        = 20 * time.Second
)

// TestClusterCreditsHoldAcrossNodes: one key's credits, spent from all
// three nodes with an uneven spread, are admitted within 5 % of what one
// budget allows, and never more than it allows.
func TestClusterCreditsHoldAcrossNodes(t *testing.T) {
	natsURL, redisURL := env(t)
	c := startCluster(t, natsURL, redisURL)
	key := c.nodes[0].CreateKey(t, procnode.NewAccount(), map[string]any{"credits_per_minute": creditsPerMinute})
	creditConns := []int{8, 5, 2} // connections per node, uneven on purpose
	r := procnode.SpendCredits(t, c.nodes, creditConns, key.APIKey, creditsPerMinute, creditRun)
	for i := range c.nodes {
		t.Logf("credits node%d: %d connections, %d pongs, %d RATE_LIMITED", i+1, creditConns[i], r.Admitted[i], r.Refused[i])
	}
	t.Logf("credits: C=%d/%v over T=%v: admitted %d (ideal C+C*T/W = %.1f, hard bound %.1f), deviation %+.2f %%; %d refusals, at most %d per connection in 10 s",
		creditsPerMinute, procnode.CreditWindow, r.T.Round(time.Millisecond), r.Pongs, r.Ideal, r.Bound, 100*r.Dev, r.Refusals, r.WorstConn)
	if status, env, err := c.nodes[2].Admin("GET", "/admin/v1/keys/"+key.Key.Prefix, nil); err == nil && status == 200 {
		var v struct {
			RequestCount int64           `json:"request_count"`
			Live         json.RawMessage `json:"live"`
		}
		_ = json.Unmarshal(env.Data, &v)
		t.Logf("credits: key as node3 reports it: request_count %d, live %s", v.RequestCount, v.Live)
	}

	if float64(r.Pongs) > r.Bound {
		t.Errorf("admitted %d pongs, more than one budget allows (%.1f): credits are not shared across nodes", r.Pongs, r.Bound)
	}
	if math.Abs(r.Dev) > 0.05 {
		t.Errorf("admitted %d, %.2f %% off the ideal %.1f (bound: 5 %%)", r.Pongs, 100*r.Dev, r.Ideal)
	}
	if r.WorstConn > 10 {
		t.Errorf("a connection got %d refusals within 10 s; the pacing must keep it at 10 or fewer", r.WorstConn)
	}
	if r.Refusals == 0 {
		t.Errorf("no RATE_LIMITED: the demand did not exceed the budget, so it was not measured")
	}
	for i, admitted := range r.Admitted {
		if admitted == 0 {
			t.Errorf("node%d admitted nothing: the budget was not spread", i+1)
		}
	}
}
