package main

import (
	"bytes"
	"fmt"
	"os"

	"floodgate/fanout"
	"floodgate/limiter"

	"go.yaml.in/yaml/v3"
)

// fileConfig is the optional YAML config file (--config): the tables that
// do not fit flags. Unknown fields are errors, so typos do not pass
// silently.
type fileConfig struct {
	// Sources is the sources table; see docs/configuration.md.
	Sources fanout.SourcesConfig `yaml:"sources"`
	// Limits are the tiers, costs and throttling numbers of limits.md.
	Limits limiter.Config `yaml:"limits"`
}

// loadConfig reads path; an empty path yields the defaults.
func loadConfig(path string) (fileConfig, error) {
	cfg := fileConfig{Limits: limiter.DefaultConfig()}
	if path == "" {
		return cfg, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	if err := cfg.Limits.Validate(); err != nil {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}
