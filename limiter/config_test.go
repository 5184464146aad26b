package limiter_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"floodgate/limiter"
)

func TestDefaultConfig_MatchesLimitsMD(t *testing.T) {
	c := limiter.DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	a, k := c.Tiers.Anonymous, c.Tiers.Key
	if a.Credits != 125 || a.CreditWindow != time.Minute || a.ConnMessagesPerSecond != 5 || a.ConnBurst != 10 ||
		a.MaxConnections != 300 || a.Connects != 300 || a.ConnectWindow != 5*time.Minute || a.MaxSubscriptions != 200 {
		t.Fatalf("anonymous %+v", a)
	}
	if k.Credits != 300 || k.CreditWindow != time.Minute || k.ConnMessagesPerSecond != 10 || k.ConnBurst != 20 ||
		k.MaxConnections != 100 || k.Connects != 300 || k.ConnectWindow != 5*time.Minute || k.MaxSubscriptions != 500 {
		t.Fatalf("key %+v", k)
	}
	if !c.Costs.Subscribe.Equal(limiter.SourceCosts{Default: 1}) || !c.Costs.Unsubscribe.Equal(limiter.SourceCosts{Default: 1}) ||
		c.Costs.Ping != 1 || c.Costs.Replay != 1 {
		t.Fatalf("costs %+v", c.Costs)
	}
	v := c.Violations
	if v.MaxRefusals != 10 || v.Window != 10*time.Second || len(v.Cooldowns) != 3 ||
		v.Cooldowns[0] != 30*time.Second || v.Cooldowns[1] != 2*time.Minute || v.Cooldowns[2] != 10*time.Minute {
		t.Fatalf("violations %+v", v)
	}
	if f := c.FailedKeys; f.MaxAttempts != 20 || f.Window != time.Minute || f.Block != 5*time.Minute {
		t.Fatalf("failed keys %+v", f)
	}
}

func TestConfig_YAMLOverDefaults(t *testing.T) {
	c := limiter.DefaultConfig()
	src := `
tiers:
  key:
    credits: 600
    credit_window: 2m
costs:
  subscribe: 2
violations:
  cooldowns: [1s, 2s]
`
	if err := yaml.Unmarshal([]byte(src), &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Tiers.Key.Credits != 600 || c.Tiers.Key.CreditWindow != 2*time.Minute || c.Tiers.Key.ConnBurst != 20 ||
		c.Costs.Subscribe.Default != 2 || c.Costs.Subscribe.BySource != nil || c.Costs.Ping != 1 || len(c.Violations.Cooldowns) != 2 || c.Tiers.Anonymous.Credits != 125 {
		t.Fatalf("%+v", c)
	}
	l, err := limiter.New(limiter.Options{Config: &c})
	if err != nil {
		t.Fatal(err)
	}
	if l.Costs().Subscribe.Cost("book") != 2 || l.Config().Tiers.Key.Credits != 600 {
		t.Fatal("limiter ignores config")
	}
}

func TestConfig_ValidateNamesFieldAndValue(t *testing.T) {
	for _, tc := range []struct {
		mut  func(*limiter.Config)
		want string
	}{
		{func(c *limiter.Config) { c.Tiers.Key.Credits = -1 }, "tiers.key.credits = -1"},
		{func(c *limiter.Config) { c.Tiers.Anonymous.CreditWindow = 0 }, "tiers.anonymous.credit_window = 0s"},
		{func(c *limiter.Config) { c.Tiers.Key.ConnMessagesPerSecond = 0 }, "tiers.key.conn_messages_per_second = 0"},
		{func(c *limiter.Config) { c.Tiers.Key.ConnBurst = 0 }, "tiers.key.conn_burst = 0"},
		{func(c *limiter.Config) { c.Tiers.Anonymous.MaxConnections = 0 }, "tiers.anonymous.max_connections = 0"},
		{func(c *limiter.Config) { c.Tiers.Anonymous.Connects = 0 }, "tiers.anonymous.connects = 0"},
		{func(c *limiter.Config) { c.Tiers.Key.ConnectWindow = -time.Second }, "tiers.key.connect_window = -1s"},
		{func(c *limiter.Config) { c.Tiers.Key.MaxSubscriptions = 0 }, "tiers.key.max_subscriptions = 0"},
		{func(c *limiter.Config) { c.Costs.Ping = -2 }, "costs.ping = -2"},
		{func(c *limiter.Config) { c.Costs.Subscribe.Default = -1 }, "costs.subscribe = -1: must be >= 0"},
		{func(c *limiter.Config) {
			c.Costs.Unsubscribe = limiter.SourceCosts{Default: 1, BySource: map[string]int64{"book": -5}}
		},
			"costs.unsubscribe.book = -5: must be >= 0"},
		{func(c *limiter.Config) {
			c.Costs.Subscribe = limiter.SourceCosts{Default: -1, BySource: map[string]int64{"book": 5}}
		},
			"costs.subscribe.default = -1: must be >= 0"},
		{func(c *limiter.Config) { c.Violations.MaxRefusals = 0 }, "violations.max_refusals = 0"},
		{func(c *limiter.Config) { c.Violations.Cooldowns = nil }, "violations.cooldowns = []"},
		{func(c *limiter.Config) { c.Violations.Cooldowns[1] = 0 }, "violations.cooldowns[1] = 0s"},
		{func(c *limiter.Config) { c.FailedKeys.MaxAttempts = -3 }, "failed_keys.max_attempts = -3"},
		{func(c *limiter.Config) { c.FailedKeys.Block = 0 }, "failed_keys.block = 0s"},
		{func(c *limiter.Config) { c.ConnectionsRetryAfter = 0 }, "connections_retry_after = 0s"},
		{func(c *limiter.Config) { c.StatusAPI.PerKeyPerMinute = -1 }, "status_api.per_key_per_minute = -1: must be >= 0 (0: no per-key budget)"},
		{func(c *limiter.Config) { c.AccountAPI.PerKeyPerMinute = 5 }, "account_api.per_key_per_minute = 5: not a setting"},
	} {
		c := limiter.DefaultConfig()
		c.Violations.Cooldowns = append([]time.Duration(nil), c.Violations.Cooldowns...)
		tc.mut(&c)
		err := c.Validate()
		if !errors.Is(err, limiter.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want %q, got %v", tc.want, err)
		}
		if _, err := limiter.New(limiter.Options{Config: &c}); !errors.Is(err, limiter.ErrInvalidConfig) {
			t.Errorf("New accepted %q", tc.want)
		}
	}
}

// FuzzConfigYAML: any config that decodes and validates builds a limiter
// whose hot path works; Validate never panics.
func FuzzConfigYAML(f *testing.F) {
	f.Add("tiers:\n  key:\n    credits: 600\n")
	f.Add("tiers:\n  anonymous:\n    conn_messages_per_second: 0.001\n    conn_burst: 1\nviolations:\n  cooldowns: [1ns]\n")
	f.Add("costs: {ping: 0}\nfailed_keys: {max_attempts: 1, window: 1ms, block: 1ms}\n")
	f.Add("costs: {subscribe: {default: 2, book: 5, account_orders: 0}, unsubscribe: 0}\n")
	f.Fuzz(func(t *testing.T, src string) {
		c := limiter.DefaultConfig()
		if yaml.Unmarshal([]byte(src), &c) != nil || c.Validate() != nil {
			return
		}
		l, err := limiter.New(limiter.Options{Config: &c})
		if err != nil {
			t.Fatal(err)
		}
		conn := mustAdmit(t, l, keyReq("Fuzz0000"), t0)
		d := conn.Charge(c.Costs.Subscribe.Cost("book"), t0)
		if d.Limit != c.Tiers.Key.Credits || d.Remaining < 0 || d.Remaining > d.Limit {
			t.Fatalf("decision %+v for %+v", d, c.Tiers.Key)
		}
		conn.Count(c.Costs.Unsubscribe.Cost("account_orders"), t0.Add(time.Hour))
		conn.Release()
	})
}

// The per-source cost forms: a number, or a map by source name with an
// optional default; bad input gets an error naming the line.
func TestConfig_SourceCostsYAML(t *testing.T) {
	for _, tc := range []struct {
		src       string
		sub       limiter.SourceCosts
		unsub     limiter.SourceCosts
		book, acc int64
	}{
		{"costs: {subscribe: 3}", limiter.SourceCosts{Default: 3}, limiter.SourceCosts{Default: 1}, 3, 3},
		{"costs:\n  subscribe: {default: 1, book: 5, account_orders: 0}\n  unsubscribe: {book: 2}",
			limiter.SourceCosts{Default: 1, BySource: map[string]int64{"book": 5, "account_orders": 0}},
			limiter.SourceCosts{Default: 1, BySource: map[string]int64{"book": 2}}, 5, 0},
		{"costs: {subscribe: {book: 0x10}}", limiter.SourceCosts{Default: 1, BySource: map[string]int64{"book": 16}}, limiter.SourceCosts{Default: 1}, 16, 1},
	} {
		c := limiter.DefaultConfig()
		if err := yaml.Unmarshal([]byte(tc.src), &c); err != nil {
			t.Fatalf("%s: %v", tc.src, err)
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("%s: %v", tc.src, err)
		}
		if !c.Costs.Subscribe.Equal(tc.sub) || !c.Costs.Unsubscribe.Equal(tc.unsub) ||
			c.Costs.Subscribe.Cost("book") != tc.book || c.Costs.Subscribe.Cost("account_orders") != tc.acc {
			t.Errorf("%s: %+v", tc.src, c.Costs)
		}
		// Written back, it reads the same.
		out, err := yaml.Marshal(c.Costs)
		if err != nil {
			t.Fatal(err)
		}
		var back limiter.Costs
		if err := yaml.Unmarshal(out, &back); err != nil || !back.Subscribe.Equal(tc.sub) || !back.Unsubscribe.Equal(tc.unsub) {
			t.Errorf("round trip of %s: %s %v", tc.src, out, err)
		}
	}
	for _, tc := range []struct{ src, want string }{
		{"costs: {subscribe: abc}", `line 1: cost "abc": must be an integer`},
		{"costs: {subscribe: 1.5}", `line 1: cost "1.5": must be an integer`},
		{"costs: {subscribe: [1, 2]}", "line 1: a cost must be a number or a map of source name to number"},
		{"costs:\n  subscribe:\n    book: five", `line 3: cost "five": must be an integer`},
		{"costs:\n  subscribe:\n    book: 1\n    book: 2", `line 4: source "book" listed twice`},
		{"costs:\n  subscribe:\n    default: 1\n    default: 2", `line 4: source "default" listed twice`},
		{"costs:\n  subscribe:\n    [a]: 1", "line 3: a source cost's key must be a source name"},
	} {
		c := limiter.DefaultConfig()
		err := yaml.Unmarshal([]byte(tc.src), &c)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.src, err, tc.want)
		}
	}
	// Source names are checked against the caller's table.
	c := limiter.DefaultConfig()
	c.Costs.Subscribe.BySource = map[string]int64{"book": 5, "bokk": 5}
	c.Costs.Unsubscribe.BySource = map[string]int64{"nope": 0}
	err := c.Costs.ValidateSources(func(name string) bool { return name == "book" })
	if !errors.Is(err, limiter.ErrInvalidConfig) || err.Error() !=
		"limiter: invalid config: costs.subscribe.bokk: no such source\nlimiter: invalid config: costs.unsubscribe.nope: no such source" {
		t.Fatalf("%v", err)
	}
}

// A frame costing 0 leaves credits and quotas alone but counts toward the
// connection's message rate.
func TestCharge_ZeroCostCountsMessageRateOnly(t *testing.T) {
	c := limiter.DefaultConfig()
	l := newLimiter(t, &c)
	req := keyReq("Zero0000")
	req.Quotas = limiter.Quotas{Daily: 1}
	conn := mustAdmit(t, l, req, t0)
	if d := conn.Charge(1, t0); !d.Allowed || d.Remaining != 299 {
		t.Fatalf("%+v", d)
	}
	// The daily quota is used up and the credits would be too: a cost of 0
	// passes both, until the connection's burst (20 messages) is spent.
	for i := 1; i < 20; i++ {
		if d := conn.Charge(0, t0); !d.Allowed || d.Remaining != 299 {
			t.Fatalf("free frame %d: %+v", i, d)
		}
	}
	if d := conn.Charge(0, t0); d.Allowed || d.Budget != limiter.BudgetConn {
		t.Fatalf("21st frame: %+v", d)
	}
}
