package fanout

import (
	"fmt"
	"sort"
	"strings"
)

// ParamKind says how a param is echoed back to clients.
type ParamKind uint8

const (
	// KindString params are echoed as JSON strings.
	KindString ParamKind = iota
	// KindInt params are echoed as JSON numbers; clients may send them as a
	// number or as a string of digits.
	KindInt
)

// ParamSpec is one required param of a source, in subject order.
type ParamSpec struct {
	// Name is the JSON field name in the client's params object.
	Name string `yaml:"name"`
	// Kind is "string" (default) or "int".
	Kind string `yaml:"kind,omitempty"`
	// Values, when set, lists the only accepted values.
	Values []string `yaml:"values,omitempty"`
}

// SourceSpec describes one source in configuration.
type SourceSpec struct {
	// Name is the source as clients send it and the second subject token.
	Name string `yaml:"name"`
	// Params are the required params, in subject order.
	Params []ParamSpec `yaml:"params,omitempty"`
	// Account names the param that holds the owning account; such sources
	// are private unless SourcesConfig.PublicAccountStreams is set.
	Account string `yaml:"account,omitempty"`
	// Conflate marks a source where only the latest value matters: clients
	// may ask for conflate_ms, and a lagging client's pending frame of the
	// channel is replaced instead of queued. Defaults to true for prices,
	// bbo, book, candle and mark_price_candle, false for any other name.
	Conflate *bool `yaml:"conflate,omitempty"`
	// History keeps the source's messages in the JetStream history stream
	// (sequence numbers, snapshots, resume; docs/protocol.md). Defaults to
	// true, except for account sources (private data stays off disk unless
	// the table opts in).
	History *bool `yaml:"history,omitempty"`
}

// conflatableByDefault reports whether a source's Conflate defaults to
// true: the sources whose messages are states (the latest value is all a
// client needs), not events.
func conflatableByDefault(name string) bool {
	switch name {
	case "prices", "bbo", "book", "candle", "mark_price_candle":
		return true
	}
	return false
}

// SourcesConfig is the configurable sources table (the `sources` section of
// the config file).
type SourcesConfig struct {
	// Prefix is the first subject token. Defaults to "md".
	Prefix string `yaml:"prefix,omitempty"`
	// PublicAccountStreams lets any connection subscribe to account
	// sources, as on Pacifica. Defaults to false: only a key of that account
	// may subscribe.
	PublicAccountStreams bool `yaml:"public_account_streams,omitempty"`
	// Sources replaces the default table when non-empty.
	Sources []SourceSpec `yaml:"sources,omitempty"`
}

// Param is a compiled ParamSpec.
type Param struct {
	Name   string
	Kind   ParamKind
	values map[string]struct{}
}

// Allowed reports whether v is an accepted value: it matches
// ^[A-Za-z0-9_-]{1,64}$, is all digits for an int param, and is in the
// param's value list when it has one. It does not allocate.
func (p *Param) Allowed(v []byte) bool {
	if !ValidValue(v) {
		return false
	}
	if p.Kind == KindInt {
		for _, c := range v {
			if c < '0' || c > '9' {
				return false
			}
		}
	}
	if p.values != nil {
		_, ok := p.values[string(v)]
		return ok
	}
	return true
}

// Source is a compiled source.
type Source struct {
	// Name is the source name, also the "channel" of its market frames.
	Name string
	// Params are the required params in subject order.
	Params []Param
	// AccountParam is the index in Params of the owning account, or -1.
	AccountParam int
	// Private is true for account sources unless the table makes them
	// public.
	Private bool
	// Conflatable is true when only the latest value of the source's
	// channels matters (SourceSpec.Conflate).
	Conflatable bool
	// History is true when the source's messages are kept in the history
	// stream (SourceSpec.History); whether the node runs history at all is
	// the Hub's (HasHistory).
	History bool
	// Index is the source's position in the table, 0 to Sources.Len()-1:
	// callers keep per-source numbers (limits.costs) in a slice by it.
	Index int

	prefix   string // subject prefix + "." + name
	envelope string // {"channel":"<name>","data":
}

// ParamIndex returns the index of the named param, or -1.
func (s *Source) ParamIndex(name []byte) int {
	for i := range s.Params {
		if s.Params[i].Name == string(name) {
			return i
		}
	}
	return -1
}

// AppendSubject appends the NATS subject for this source and the given
// param values, which must already be validated with Param.Allowed and be
// in Params order.
func (s *Source) AppendSubject(dst []byte, values [][]byte) []byte {
	dst = append(dst, s.prefix...)
	for _, v := range values {
		dst = append(dst, '.')
		dst = append(dst, v...)
	}
	return dst
}

// Sources is the compiled table of sources. Immutable after NewSources;
// safe for concurrent use.
type Sources struct {
	byName map[string]*Source
	prefix string
}

// DefaultSources returns the default table of docs/configuration.md "Sources".
func DefaultSources() []SourceSpec {
	intervals := []string{"1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "8h", "12h", "1d"}
	symbol := ParamSpec{Name: "symbol"}
	specs := []SourceSpec{
		{Name: "prices"},
		{Name: "book", Params: []ParamSpec{symbol, {Name: "agg_level", Kind: "int", Values: []string{"1", "10", "100", "1000", "10000"}}}},
		{Name: "bbo", Params: []ParamSpec{symbol}},
		{Name: "trades", Params: []ParamSpec{symbol}},
		{Name: "candle", Params: []ParamSpec{symbol, {Name: "interval", Values: intervals}}},
		{Name: "mark_price_candle", Params: []ParamSpec{symbol, {Name: "interval", Values: intervals}}},
	}
	for _, name := range []string{"account_info", "account_positions", "account_orders", "account_order_updates", "account_trades", "account_margin", "account_leverage"} {
		specs = append(specs, SourceSpec{Name: name, Params: []ParamSpec{{Name: "account"}}, Account: "account"})
	}
	return specs
}

// NewSources compiles cfg. It returns an error naming the field and the bad
// value when the table is invalid.
func NewSources(cfg SourcesConfig) (*Sources, error) {
	prefix := cfg.Prefix
	if prefix == "" {
		prefix = "md"
	}
	for _, tok := range strings.Split(prefix, ".") {
		if !ValidValue([]byte(tok)) {
			return nil, fmt.Errorf("fanout: sources.prefix %q: each dot-separated token must match [A-Za-z0-9_-]{1,64}", prefix)
		}
	}
	specs := cfg.Sources
	if len(specs) == 0 {
		specs = DefaultSources()
	}
	t := &Sources{byName: make(map[string]*Source, len(specs)), prefix: prefix}
	for i, spec := range specs {
		field := fmt.Sprintf("sources[%d]", i)
		if !ValidValue([]byte(spec.Name)) || spec.Name == "source" {
			return nil, fmt.Errorf("fanout: %s.name %q: must match [A-Za-z0-9_-]{1,64}", field, spec.Name)
		}
		if _, dup := t.byName[spec.Name]; dup {
			return nil, fmt.Errorf("fanout: %s.name %q: duplicate source", field, spec.Name)
		}
		src := &Source{
			Name:         spec.Name,
			Index:        i,
			Conflatable:  conflatableByDefault(spec.Name),
			AccountParam: -1,
			prefix:       prefix + "." + spec.Name,
			envelope:     envelopePrefix(spec.Name),
		}
		if len(spec.Params) > MaxParams {
			return nil, fmt.Errorf("fanout: %s.params: %d params, at most %d", field, len(spec.Params), MaxParams)
		}
		for j, ps := range spec.Params {
			pf := fmt.Sprintf("%s.params[%d]", field, j)
			if !ValidValue([]byte(ps.Name)) || IsReservedParam(ps.Name) {
				return nil, fmt.Errorf("fanout: %s.name %q: must match [A-Za-z0-9_-]{1,64} and not be one of source, conflate_ms, since, snapshot", pf, ps.Name)
			}
			if src.ParamIndex([]byte(ps.Name)) >= 0 {
				return nil, fmt.Errorf("fanout: %s.name %q: duplicate param", pf, ps.Name)
			}
			p := Param{Name: ps.Name}
			switch ps.Kind {
			case "", "string":
			case "int":
				p.Kind = KindInt
			default:
				return nil, fmt.Errorf("fanout: %s.kind %q: must be \"string\" or \"int\"", pf, ps.Kind)
			}
			if len(ps.Values) > 0 {
				p.values = make(map[string]struct{}, len(ps.Values))
				for _, v := range ps.Values {
					p.values[v] = struct{}{}
				}
				probe := Param{Name: p.Name, Kind: p.Kind}
				for _, v := range ps.Values {
					if !probe.Allowed([]byte(v)) {
						return nil, fmt.Errorf("fanout: %s.values %q: not a valid %s value", pf, v, kindName(p.Kind))
					}
				}
			}
			src.Params = append(src.Params, p)
		}
		if spec.Conflate != nil {
			src.Conflatable = *spec.Conflate
		}
		src.History = spec.Account == ""
		if spec.Account != "" {
			src.AccountParam = src.ParamIndex([]byte(spec.Account))
			if src.AccountParam < 0 {
				return nil, fmt.Errorf("fanout: %s.account %q: not one of the source's params", field, spec.Account)
			}
			src.Private = !cfg.PublicAccountStreams
		}
		if spec.History != nil {
			src.History = *spec.History
		}
		t.byName[src.Name] = src
	}
	return t, nil
}

func kindName(k ParamKind) string {
	if k == KindInt {
		return "int"
	}
	return "string"
}

// IsReservedParam reports whether name is a key of subscribe params that
// no source may use as a param name: "source" and the subscription
// options (conflate_ms, since, snapshot).
func IsReservedParam(name string) bool {
	switch name {
	case "source", "conflate_ms", "since", "snapshot":
		return true
	}
	return false
}

// HistorySubjects returns the subjects the history stream captures: one
// per source with history, <prefix>.<name> for a source without params,
// <prefix>.<name>.> otherwise. Sorted by source name.
func (t *Sources) HistorySubjects() []string {
	var out []string
	for _, src := range t.byName {
		if !src.History {
			continue
		}
		if len(src.Params) == 0 {
			out = append(out, src.prefix)
		} else {
			out = append(out, src.prefix+".>")
		}
	}
	sort.Strings(out)
	return out
}

// Lookup returns the source named name, or nil. It does not allocate.
func (t *Sources) Lookup(name []byte) *Source { return t.byName[string(name)] }

// Len is the number of sources; Source.Index is below it.
func (t *Sources) Len() int { return len(t.byName) }

// Prefix returns the subject prefix.
func (t *Sources) Prefix() string { return t.prefix }

// MaxParams is the largest number of params any source may have.
const MaxParams = 8

// ValidValue reports whether v matches ^[A-Za-z0-9_-]{1,64}$, the only
// shape a param value may have before it becomes a subject token.
func ValidValue(v []byte) bool {
	if len(v) == 0 || len(v) > 64 {
		return false
	}
	for _, c := range v {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}
