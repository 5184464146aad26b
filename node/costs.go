package node

import (
	"sync/atomic"

	"floodgate/fanout"
	"floodgate/limiter"
)

// costTable is limits.costs priced by source index (fanout.Source.Index),
// built when the config is loaded or reloaded, so that charging a
// subscribe or unsubscribe indexes a slice: no map lookup, no allocation.
// Immutable; Reload swaps it whole.
type costTable struct {
	subscribe, unsubscribe []int64 // by source index
	// subDefault and unsubDefault price a frame that names no source the
	// table knows (it is refused after being charged).
	subDefault, unsubDefault int64
}

// newCostTable prices every source of t by c. Names of c the table does
// not know are ignored here: checkCosts refuses them first.
func newCostTable(c limiter.Costs, t *fanout.Sources) *costTable {
	ct := &costTable{subDefault: c.Subscribe.Default, unsubDefault: c.Unsubscribe.Default}
	ct.subscribe = bySource(c.Subscribe, t)
	ct.unsubscribe = bySource(c.Unsubscribe, t)
	return ct
}

func bySource(c limiter.SourceCosts, t *fanout.Sources) []int64 {
	out := make([]int64, t.Len())
	for i := range out {
		out[i] = c.Default
	}
	for name, v := range c.BySource {
		if src := t.Lookup([]byte(name)); src != nil {
			out[src.Index] = v
		}
	}
	return out
}

// cost is the price of src in costs (def when src is nil).
func cost(costs []int64, def int64, src *fanout.Source) int64 {
	if src == nil || src.Index >= len(costs) {
		return def
	}
	return costs[src.Index]
}

// checkCosts refuses per-source costs naming a source that t does not
// have: "limiter: invalid config: costs.subscribe.bokk: no such source".
func checkCosts(c *limiter.Costs, t *fanout.Sources) error {
	return c.ValidateSources(func(name string) bool { return t.Lookup([]byte(name)) != nil })
}

// costs holds the cost table in force; shared by the node's budgets.
type costs struct{ p atomic.Pointer[costTable] }
