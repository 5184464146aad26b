package limiter

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config holds every number the limiter enforces. It is read from the
// `limits` part of floodgate.yaml; fields left out keep the values of
// DefaultConfig (decode into a DefaultConfig value). Durations are written as
// Go durations ("60s", "5m").
type Config struct {
	// Tiers are the budgets of anonymous (per IP) and key identities.
	Tiers Tiers `yaml:"tiers"`
	// Costs are the credits each client method costs.
	Costs Costs `yaml:"costs"`
	// Violations closes connections that keep getting refused and cools their
	// identity down.
	Violations Violations `yaml:"violations"`
	// FailedKeys blocks an IP that guesses keys.
	FailedKeys FailedKeys `yaml:"failed_keys"`
	// ConnectionsRetryAfter is the Retry-After sent with 429
	// TOO_MANY_CONNECTIONS, when no time can be computed. Defaults to 10 s.
	ConnectionsRetryAfter time.Duration `yaml:"connections_retry_after"`
	// Node bounds what one node holds for all its clients together.
	Node NodeLimits `yaml:"node"`
	// AccountAPI limits the wallet-signed account endpoints (create,
	// revoke, list: one budget) per client IP.
	AccountAPI APILimit `yaml:"account_api"`
	// StatusAPI limits the key status endpoint per client IP and, with
	// PerKeyPerMinute, per key.
	StatusAPI APILimit `yaml:"status_api"`
}

// NodeLimits bound the resources any client can make one node hold.
type NodeLimits struct {
	// MaxChannels is the number of distinct channels (NATS subscriptions)
	// the node holds; a subscribe that would open one more gets
	// CHANNEL_LIMIT. One identity may open at most a tenth of it. 10,000.
	MaxChannels int `yaml:"max_channels"`
	// MaxPendingPerIP caps the sockets of one client IP on the websocket
	// listener that have not completed an upgrade (trusted proxies
	// exempt). 64.
	MaxPendingPerIP int `yaml:"max_pending_per_ip"`
}

// APILimit is a per-IP request budget of a REST endpoint group.
type APILimit struct {
	// PerIPPerMinute is the requests one client IP may make per minute
	// (also the burst).
	PerIPPerMinute int `yaml:"per_ip_per_minute"`
	// PerKeyPerMinute is the requests about one key per minute (also the
	// burst), whatever the IP; 0: no per-key budget. Only status_api has
	// one (60).
	PerKeyPerMinute int `yaml:"per_key_per_minute,omitempty"`
}

// Tiers holds one Tier per kind of identity.
type Tiers struct {
	// Anonymous applies to `ip:<addr>` identities (no key).
	Anonymous Tier `yaml:"anonymous"`
	// Key applies to `key:<prefix>` identities; a key's own Limits override it.
	Key Tier `yaml:"key"`
}

// Tier is the set of budgets of one kind of identity (docs/configuration.md "Limits").
type Tier struct {
	// Credits an identity may spend per CreditWindow, shared by all its
	// connections; also the burst. Anonymous 125, key 300.
	Credits int64 `yaml:"credits"`
	// CreditWindow is the rolling window of Credits. 60 s.
	CreditWindow time.Duration `yaml:"credit_window"`
	// ConnMessagesPerSecond is the steady message rate of one connection.
	// Anonymous 5, key 10.
	ConnMessagesPerSecond float64 `yaml:"conn_messages_per_second"`
	// ConnBurst is the message burst of one connection. Anonymous 10, key 20.
	ConnBurst int64 `yaml:"conn_burst"`
	// MaxConnections is the cap of concurrent connections of the identity.
	// Anonymous 300, key 100.
	MaxConnections int64 `yaml:"max_connections"`
	// Connects is how many new connections the identity may open per
	// ConnectWindow (also the burst). 300.
	Connects int64 `yaml:"connects"`
	// ConnectWindow is the window of Connects. 5 min.
	ConnectWindow time.Duration `yaml:"connect_window"`
	// MaxSubscriptions is the cap of subscriptions per connection.
	// Anonymous 200, key 500.
	MaxSubscriptions int `yaml:"max_subscriptions"`
}

// Costs are the credits charged per client frame, by method. Subscribe
// and Unsubscribe may differ by source (SourceCosts); a cost of 0 exempts
// the frame from the credit budget, not from the connection's message
// rate.
type Costs struct {
	Subscribe   SourceCosts `yaml:"subscribe"`   // 1
	Unsubscribe SourceCosts `yaml:"unsubscribe"` // 1, counted but never refused
	Ping        int64       `yaml:"ping"`        // 1
	// Replay is charged per 100 messages (rounded up) of a replay (a
	// subscribe with "since"), on top of the subscribe, before the replay
	// starts. 1.
	Replay int64 `yaml:"replay"`
}

// Violations is the repeated-refusal policy: more than MaxRefusals refusals
// on one connection within Window close it (1008) and start a cooldown of the
// identity; the n-th offence within ForgetAfter of the previous one gets
// Cooldowns[n-1] (the last entry repeats).
type Violations struct {
	MaxRefusals int             `yaml:"max_refusals"` // 10
	Window      time.Duration   `yaml:"window"`       // 10 s
	Cooldowns   []time.Duration `yaml:"cooldowns"`    // 30 s, 2 min, 10 min
	ForgetAfter time.Duration   `yaml:"forget_after"` // 1 h without offence resets the escalation
}

// FailedKeys blocks an IP for Block after more than MaxAttempts failed key
// attempts within Window.
type FailedKeys struct {
	MaxAttempts int           `yaml:"max_attempts"` // 20
	Window      time.Duration `yaml:"window"`       // 60 s
	Block       time.Duration `yaml:"block"`        // 5 min
}

// DefaultConfig returns the defaults of docs/configuration.md "Limits".
func DefaultConfig() Config {
	return Config{
		Tiers: Tiers{
			Anonymous: Tier{
				Credits: 125, CreditWindow: time.Minute,
				ConnMessagesPerSecond: 5, ConnBurst: 10,
				MaxConnections: 300,
				Connects:       300, ConnectWindow: 5 * time.Minute,
				MaxSubscriptions: 200,
			},
			Key: Tier{
				Credits: 300, CreditWindow: time.Minute,
				ConnMessagesPerSecond: 10, ConnBurst: 20,
				MaxConnections: 100,
				Connects:       300, ConnectWindow: 5 * time.Minute,
				MaxSubscriptions: 500,
			},
		},
		Costs: Costs{Subscribe: SourceCosts{Default: 1}, Unsubscribe: SourceCosts{Default: 1}, Ping: 1, Replay: 1},
		Violations: Violations{
			MaxRefusals: 10, Window: 10 * time.Second,
			Cooldowns:   []time.Duration{30 * time.Second, 2 * time.Minute, 10 * time.Minute},
			ForgetAfter: time.Hour,
		},
		FailedKeys:            FailedKeys{MaxAttempts: 20, Window: time.Minute, Block: 5 * time.Minute},
		ConnectionsRetryAfter: 10 * time.Second,
		Node:                  NodeLimits{MaxChannels: 10000, MaxPendingPerIP: 64},
		AccountAPI:            APILimit{PerIPPerMinute: 30},
		StatusAPI:             APILimit{PerIPPerMinute: 120, PerKeyPerMinute: 60},
	}
}

// maxCredits bounds every count so that the fixed-point arithmetic of the
// cells cannot overflow.
const maxCredits = 1 << 40

// Validate reports every invalid field, each error naming the field (its yaml
// path) and the bad value. The errors wrap ErrInvalidConfig.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field string, v any, why string) {
		errs = append(errs, fmt.Errorf("%w: %s = %v: %s", ErrInvalidConfig, field, v, why))
	}
	positive := func(field string, v int64) {
		if v <= 0 || v > maxCredits {
			bad(field, v, fmt.Sprintf("must be between 1 and %d", int64(maxCredits)))
		}
	}
	duration := func(field string, v time.Duration) {
		if v < time.Millisecond || v > 400*24*time.Hour {
			bad(field, v, "must be between 1ms and 400 days")
		}
	}
	for _, t := range []struct {
		name string
		t    *Tier
	}{{"tiers.anonymous", &c.Tiers.Anonymous}, {"tiers.key", &c.Tiers.Key}} {
		positive(t.name+".credits", t.t.Credits)
		duration(t.name+".credit_window", t.t.CreditWindow)
		if !(t.t.ConnMessagesPerSecond > 0 && t.t.ConnMessagesPerSecond <= 1e6) {
			bad(t.name+".conn_messages_per_second", t.t.ConnMessagesPerSecond, "must be > 0 and <= 1000000")
		}
		positive(t.name+".conn_burst", t.t.ConnBurst)
		positive(t.name+".max_connections", t.t.MaxConnections)
		positive(t.name+".connects", t.t.Connects)
		duration(t.name+".connect_window", t.t.ConnectWindow)
		if t.t.MaxSubscriptions <= 0 {
			bad(t.name+".max_subscriptions", t.t.MaxSubscriptions, "must be > 0")
		}
	}
	c.Costs.Subscribe.validate("costs.subscribe", bad)
	c.Costs.Unsubscribe.validate("costs.unsubscribe", bad)
	for _, f := range []struct {
		name string
		v    int64
	}{{"costs.ping", c.Costs.Ping}, {"costs.replay", c.Costs.Replay}} {
		if f.v < 0 || f.v > maxCredits {
			bad(f.name, f.v, "must be >= 0")
		}
	}
	if c.Violations.MaxRefusals <= 0 || c.Violations.MaxRefusals > 10000 {
		bad("violations.max_refusals", c.Violations.MaxRefusals, "must be between 1 and 10000")
	}
	duration("violations.window", c.Violations.Window)
	if len(c.Violations.Cooldowns) == 0 {
		bad("violations.cooldowns", c.Violations.Cooldowns, "must list at least one duration")
	}
	for i, d := range c.Violations.Cooldowns {
		duration(fmt.Sprintf("violations.cooldowns[%d]", i), d)
	}
	duration("violations.forget_after", c.Violations.ForgetAfter)
	if c.FailedKeys.MaxAttempts <= 0 || c.FailedKeys.MaxAttempts > 10000 {
		bad("failed_keys.max_attempts", c.FailedKeys.MaxAttempts, "must be between 1 and 10000")
	}
	duration("failed_keys.window", c.FailedKeys.Window)
	duration("failed_keys.block", c.FailedKeys.Block)
	duration("connections_retry_after", c.ConnectionsRetryAfter)
	positive("node.max_channels", int64(c.Node.MaxChannels))
	positive("node.max_pending_per_ip", int64(c.Node.MaxPendingPerIP))
	positive("account_api.per_ip_per_minute", int64(c.AccountAPI.PerIPPerMinute))
	positive("status_api.per_ip_per_minute", int64(c.StatusAPI.PerIPPerMinute))
	if v := c.StatusAPI.PerKeyPerMinute; v < 0 || v > maxCredits {
		bad("status_api.per_key_per_minute", v, "must be >= 0 (0: no per-key budget)")
	}
	if v := c.AccountAPI.PerKeyPerMinute; v != 0 {
		bad("account_api.per_key_per_minute", v, "not a setting: account requests are signed, not keyed")
	}
	return errors.Join(errs...)
}

// SourceCosts is the credit cost of a method that names a source
// (subscribe, unsubscribe): one number for every source, or a number per
// source name with Default for the others. In YAML it is written as a
// number (`subscribe: 1`) or a map (`subscribe: {default: 1, book: 5,
// account_orders: 0}`; default, when left out, keeps the previous
// number: 1 unless set). A cost of 0 exempts the frame from the credit
// budget (it still counts toward the connection's message rate).
type SourceCosts struct {
	// Default is the cost of a source not in BySource.
	Default int64
	// BySource maps a source name to its cost; nil for the number form.
	// The names are checked against the sources table by the caller
	// (ValidateSources).
	BySource map[string]int64
}

// Cost is the cost of the source named name: BySource's entry, or
// Default. A map lookup: the per-frame path keeps a slice by source index
// instead.
func (c SourceCosts) Cost(name string) int64 {
	if v, ok := c.BySource[name]; ok {
		return v
	}
	return c.Default
}

// clone copies the per-source maps.
func (c Costs) clone() Costs {
	c.Subscribe.BySource = maps.Clone(c.Subscribe.BySource)
	c.Unsubscribe.BySource = maps.Clone(c.Unsubscribe.BySource)
	return c
}

// Max is the highest cost of any source.
func (c SourceCosts) Max() int64 {
	m := c.Default
	for _, v := range c.BySource {
		m = max(m, v)
	}
	return m
}

// Equal reports whether c and o price every source alike.
func (c SourceCosts) Equal(o SourceCosts) bool {
	if c.Default != o.Default || len(c.BySource) != len(o.BySource) {
		return false
	}
	for k, v := range c.BySource {
		if w, ok := o.BySource[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// UnmarshalYAML reads the number or the map form. The map's values must
// be integers; "default" sets Default.
func (c *SourceCosts) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		v, err := costValue(n)
		if err != nil {
			return err
		}
		c.Default, c.BySource = v, nil
		return nil
	case yaml.MappingNode:
		by := make(map[string]int64, len(n.Content)/2)
		def, hasDef := c.Default, false
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, vn := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				return fmt.Errorf("line %d: a source cost's key must be a source name", k.Line)
			}
			v, err := costValue(vn)
			if err != nil {
				return err
			}
			if _, dup := by[k.Value]; dup || (k.Value == "default" && hasDef) {
				return fmt.Errorf("line %d: source %q listed twice", k.Line, k.Value)
			}
			if k.Value == "default" {
				def, hasDef = v, true
				continue
			}
			by[k.Value] = v
		}
		c.Default, c.BySource = def, by
		return nil
	}
	return fmt.Errorf("line %d: a cost must be a number or a map of source name to number", n.Line)
}

func costValue(n *yaml.Node) (int64, error) {
	if n.Kind == yaml.ScalarNode && (n.Tag == "!!int" || n.ShortTag() == "!!int") {
		if v, err := strconv.ParseInt(n.Value, 0, 64); err == nil {
			return v, nil
		}
	}
	return 0, fmt.Errorf("line %d: cost %q: must be an integer", n.Line, n.Value)
}

// MarshalYAML writes the number form when there is no per-source cost.
func (c SourceCosts) MarshalYAML() (any, error) {
	if len(c.BySource) == 0 {
		return c.Default, nil
	}
	m := make(map[string]int64, len(c.BySource)+1)
	for k, v := range c.BySource {
		m[k] = v
	}
	m["default"] = c.Default
	return m, nil
}

// validate reports negative or too large costs, naming the field
// (costs.subscribe, costs.subscribe.book).
func (c SourceCosts) validate(field string, bad func(field string, v any, why string)) {
	check := func(f string, v int64) {
		if v < 0 || v > maxCredits {
			bad(f, v, "must be >= 0")
		}
	}
	if len(c.BySource) == 0 {
		check(field, c.Default)
		return
	}
	check(field+".default", c.Default)
	for _, name := range slices.Sorted(maps.Keys(c.BySource)) {
		check(field+"."+name, c.BySource[name])
	}
}

// ValidateSources reports every source name of the per-source costs that
// has reports false (not in the sources table), each error naming the
// field and wrapping ErrInvalidConfig: "costs.subscribe.bookk: no such
// source".
func (c *Costs) ValidateSources(has func(name string) bool) error {
	var errs []error
	for _, f := range []struct {
		name string
		c    SourceCosts
	}{{"costs.subscribe", c.Subscribe}, {"costs.unsubscribe", c.Unsubscribe}} {
		for _, name := range slices.Sorted(maps.Keys(f.c.BySource)) {
			if !has(name) {
				errs = append(errs, fmt.Errorf("%w: %s.%s: no such source", ErrInvalidConfig, f.name, name))
			}
		}
	}
	return errors.Join(errs...)
}
