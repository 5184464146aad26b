package node_test

import (
	"os"
	"strings"
	"testing"

	"floodgate/fanout"
	"floodgate/node"

	"go.yaml.in/yaml/v3"
)

func TestParseFileNamesTheField(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"sources:\n  sources:\n    - name: \"a.b\"\n", `sources[0].name "a.b"`},
		{"limits:\n  tiers:\n    key:\n      credits: -5\n", "tiers.key.credits = -5"},
		{"limits:\n  node:\n    max_channels: 0\n", "node.max_channels = 0"},
		{"limitz: {}\n", "field limitz not found"},
		{"limits:\n  tiers:\n    key:\n      credit: 5\n", "field credit not found"},
		{"history:\n  max_age: 0s\n", "history.max_age = 0s"},
		{"history:\n  stream: a.b\n", "history.stream = a.b"},
		{"history:\n  max_replay_msgs: 0\n", "history.max_replay_msgs = 0"},
		{"history:\n  replay_msgs: 5\n", "field replay_msgs not found"},
		{"limits:\n  costs:\n    replay: -1\n", "costs.replay = -1"},
		// per-source costs: exact errors
		{"limits:\n  costs:\n    subscribe: -1\n", "limiter: invalid config: costs.subscribe = -1: must be >= 0"},
		{"limits:\n  costs:\n    subscribe: {book: -5}\n", "limiter: invalid config: costs.subscribe.book = -5: must be >= 0"},
		{"limits:\n  costs:\n    unsubscribe: {default: 1, bokk: 5}\n", "limiter: invalid config: costs.unsubscribe.bokk: no such source"},
		{"limits:\n  costs:\n    subscribe: five\n", `line 3: cost "five": must be an integer`},
		{"limits:\n  costs:\n    subscribe: [1]\n", "line 3: a cost must be a number or a map of source name to number"},
		{"limits:\n  costs:\n    ping: {book: 1}\n", "cannot unmarshal !!map into int64"},
		// a source of a custom table is known; one of the default table is not
		{"sources:\n  sources:\n    - name: ticks\nlimits:\n  costs:\n    subscribe: {book: 2}\n", "costs.subscribe.book: no such source"},
	} {
		if _, err := node.ParseFile([]byte(tc.yaml)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error naming %q", tc.yaml, err, tc.want)
		}
	}
	f, err := node.ParseFile([]byte("limits:\n  costs:\n    subscribe: {default: 2, book: 5, account_orders: 0}\n    unsubscribe: 3\n"))
	if c := f.Limits.Costs; err != nil || c.Subscribe.Cost("book") != 5 || c.Subscribe.Cost("account_orders") != 0 ||
		c.Subscribe.Cost("trades") != 2 || c.Unsubscribe.Cost("book") != 3 || c.Ping != 1 {
		t.Fatalf("per-source costs: %+v %v", f.Limits.Costs, err)
	}
	if _, err := node.ParseFile([]byte("sources:\n  sources:\n    - name: ticks\nlimits:\n  costs:\n    subscribe: {ticks: 2}\n")); err != nil {
		t.Fatalf("a cost of a custom table's source: %v", err)
	}
	f, err = node.ParseFile([]byte("limits:\n  tiers:\n    key:\n      credits: 600\n"))
	if err != nil || f.Limits.Tiers.Key.Credits != 600 || f.Limits.Tiers.Anonymous.Credits != 125 {
		t.Fatalf("fields left out keep their defaults: %+v %v", f.Limits.Tiers, err)
	}
}

// FuzzParseFile: a file either fails with an error, or yields a config
// that validates (sources compile, limits validate) and survives a round
// trip through YAML unchanged.
func FuzzParseFile(f *testing.F) {
	f.Add([]byte("sources:\n  prefix: pf\n  sources:\n    - name: trades\n      params:\n        - name: symbol\n          values: [BTC, ETH]\n"))
	f.Add([]byte("limits:\n  tiers:\n    key:\n      credits: 600\n  costs:\n    ping: 2\n"))
	f.Add([]byte("sources:\n  sources:\n    - name: book\n      params:\n        - {name: symbol}\n        - {name: agg_level, kind: int, values: [\"1\", \"10\"]}\n    - name: account_orders\n      params: [{name: account}]\n      account: account\n"))
	f.Add([]byte("history:\n  stream: S\n  max_age: 1h\n  max_msgs_per_subject: 5\n  domain: hub\n"))
	f.Add([]byte("limits:\n  costs:\n    subscribe: {default: 1, book: 5, account_orders: 0}\n    unsubscribe: {trades: 0}\n"))
	f.Add([]byte("{}"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := node.ParseFile(data)
		if err != nil {
			return
		}
		srcs, err := fanout.NewSources(file.Sources)
		if err != nil {
			t.Fatalf("accepted sources do not compile: %v", err)
		}
		if err := file.Limits.Costs.ValidateSources(func(n string) bool { return srcs.Lookup([]byte(n)) != nil }); err != nil {
			t.Fatalf("accepted costs name unknown sources: %v", err)
		}
		if err := file.Limits.Validate(); err != nil {
			t.Fatalf("accepted limits do not validate: %v", err)
		}
		if err := file.History.Validate(); err != nil {
			t.Fatalf("accepted history section does not validate: %v", err)
		}
		out, err := yaml.Marshal(file)
		if err != nil {
			t.Fatal(err)
		}
		again, err := node.ParseFile(out)
		if err != nil {
			t.Fatalf("round trip refused: %v\n%s", err, out)
		}
		out2, _ := yaml.Marshal(again)
		if string(out) != string(out2) {
			t.Fatalf("round trip changed the config:\n%s\n---\n%s", out, out2)
		}
	})
}

// TestHistorySectionDocumented: the history section of
// docs/configuration.md is the defaults.
func TestHistorySectionDocumented(t *testing.T) {
	b, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, _ := strings.Cut(string(b), "\n## History\n")
	_, block, _ := strings.Cut(sec, "```yaml\n")
	block, _, _ = strings.Cut(block, "```")
	f, err := node.ParseFile([]byte(block))
	if err != nil {
		t.Fatalf("documented section: %v\n%s", err, block)
	}
	want := fanout.DefaultHistoryConfig()
	want.Stream = fanout.StreamName("md")
	if f.History != want {
		t.Fatalf("documented %+v, defaults %+v", f.History, want)
	}
}
