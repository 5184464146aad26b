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
	if c.Costs != (limiter.Costs{Subscribe: 1, Unsubscribe: 1, Ping: 1, Replay: 1}) {
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
		c.Costs.Subscribe != 2 || c.Costs.Ping != 1 || len(c.Violations.Cooldowns) != 2 || c.Tiers.Anonymous.Credits != 125 {
		t.Fatalf("%+v", c)
	}
	l, err := limiter.New(limiter.Options{Config: &c})
	if err != nil {
		t.Fatal(err)
	}
	if l.Costs().Subscribe != 2 || l.Config().Tiers.Key.Credits != 600 {
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
		{func(c *limiter.Config) { c.Violations.MaxRefusals = 0 }, "violations.max_refusals = 0"},
		{func(c *limiter.Config) { c.Violations.Cooldowns = nil }, "violations.cooldowns = []"},
		{func(c *limiter.Config) { c.Violations.Cooldowns[1] = 0 }, "violations.cooldowns[1] = 0s"},
		{func(c *limiter.Config) { c.FailedKeys.MaxAttempts = -3 }, "failed_keys.max_attempts = -3"},
		{func(c *limiter.Config) { c.FailedKeys.Block = 0 }, "failed_keys.block = 0s"},
		{func(c *limiter.Config) { c.ConnectionsRetryAfter = 0 }, "connections_retry_after = 0s"},
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
		d := conn.Charge(c.Costs.Ping, t0)
		if d.Limit != c.Tiers.Key.Credits || d.Remaining < 0 || d.Remaining > d.Limit {
			t.Fatalf("decision %+v for %+v", d, c.Tiers.Key)
		}
		conn.Count(c.Costs.Unsubscribe, t0.Add(time.Hour))
		conn.Release()
	})
}
