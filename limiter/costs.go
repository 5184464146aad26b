package limiter

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"go.yaml.in/yaml/v3"
)

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
