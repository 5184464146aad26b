package node

import (
	"context"
	"net/http"
	"time"

	"floodgate/auth"
	"floodgate/broker"
	"floodgate/fanout"
	"floodgate/limiter"
)

// NewTestBudget admits one key connection on lim and returns its budget as
// the node builds it, for hot-path tests.
func NewTestBudget(lim *limiter.Limiter, usage *auth.Usage, prefix string, now time.Time) (broker.Budget, error) {
	conn, err := lim.Admit(context.Background(), limiter.Request{Identity: limiter.KeyIdentity(prefix), Tier: limiter.TierKey}, now)
	if err != nil {
		return nil, err
	}
	srcs, err := fanout.NewSources(fanout.SourcesConfig{})
	if err != nil {
		return nil, err
	}
	cs := &costs{}
	cs.p.Store(newCostTable(lim.Costs(), srcs))
	return &budget{conn: conn, limiter: lim, usage: usage, costs: cs, prefix: prefix}, nil
}

// ClientIP exposes clientIP.
var ClientIP = clientIP

// PresentedKey exposes presentedKey: the key, whether an empty key was
// presented, and the refusal's code ("" when none).
func PresentedKey(r *http.Request, allowQuery bool) (string, bool, string) {
	key, empty, ref := presentedKey(r, allowQuery)
	if ref != nil {
		return key, empty, ref.Code
	}
	return key, empty, ""
}

// SampleView takes one stats and key-traffic sample at now, as the node
// does every 2 s.
func (n *Node) SampleView(now time.Time) { n.console.Sample(now) }

// Heartbeat records and publishes the node's heartbeat at now, as the node
// does every 5 s.
func (n *Node) Heartbeat(now time.Time) { n.console.Heartbeat(now) }

// AdminRoutes lists the operator endpoints the node serves itself, as
// "METHOD /path".
func (n *Node) AdminRoutes() []string { return n.console.Routes() }

// FlushUsage runs one usage flush at now, as the node does every second:
// the sessions' delivery counts are folded in (and delivery quotas
// checked), then the batch goes to the store.
func (n *Node) FlushUsage(now time.Time) error {
	return n.usage.FlushAt(context.Background(), now)
}
