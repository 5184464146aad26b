package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"floodgate/loadtest"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
)

// loadFlags are the flags of `floodgate load` (loadtest.md).
type loadFlags struct {
	cfg        loadtest.Config
	self       bool
	apiKey     string
	keysFile   string
	jsonFile   string
	maxLoss    float64
	maxP99     time.Duration
	selfConfig string
}

func newLoadCmd() *cobra.Command {
	var f loadFlags
	cmd := &cobra.Command{
		Use:   "load",
		Short: "Load-test a broker through its public protocol and report what clients received",
		Long: `Open --conns websocket connections to --url, subscribe them over --channels
channels, publish --rate messages per second of --size bytes into NATS, and
report deliveries, loss, latency percentiles and the broker's memory and CPU.
--self starts an in-process broker with embedded NATS on free ports, so the
command works on a fresh machine. Exit status: 0 run completed, 1 could not
run, 2 --max-loss or --max-p99 exceeded.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := bindEnv(cmd.Flags()); err != nil {
				return err
			}
			return runLoad(cmd, f)
		},
	}
	fs := cmd.Flags()
	c := &f.cfg
	fs.StringVar(&c.Scenario, "scenario", "broadcast", "broadcast (all clients on few channels) or fanout (many channels)")
	fs.StringVar(&c.URL, "url", "", "broker websocket URL; empty requires --self")
	fs.BoolVar(&f.self, "self", false, "start an in-process broker with embedded NATS on free ports")
	fs.StringVar(&f.selfConfig, "self-config", "", "config file for the --self broker (default: limits raised for load)")
	fs.StringVar(&c.NATSURL, "nats-url", "", "NATS URL to publish to (default: the --self broker's)")
	fs.IntVar(&c.Conns, "conns", 1000, "websocket connections")
	fs.IntVar(&c.Channels, "channels", 1, "channels the connections spread over")
	fs.Float64Var(&c.Rate, "rate", 100, "published messages per second, over all channels")
	fs.IntVar(&c.Size, "size", 200, "payload bytes")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "measured publishing time")
	fs.DurationVar(&c.Warmup, "warmup", 2*time.Second, "publishing time before the measurement")
	fs.Float64Var(&c.Ramp, "ramp", 0, "new connections per second while connecting (0: as fast as possible)")
	fs.StringVar(&f.apiKey, "api-key", "", "API key every connection presents")
	fs.StringVar(&f.keysFile, "keys-file", "", "file of API keys, one per line, used round robin")
	fs.StringVar(&c.MetricsURL, "metrics-url", "", "broker /metrics URL, to sample its RSS and CPU (default: the --self broker's)")
	fs.IntVar(&c.ReadBufferSize, "read-buffer", 16<<10, "bytes of read buffer per connection")
	fs.StringVar(&f.jsonFile, "json", "", "also write the report as JSON to this file")
	fs.Float64Var(&f.maxLoss, "max-loss", -1, "exit 2 when loss exceeds this percentage (negative: off)")
	fs.DurationVar(&f.maxP99, "max-p99", -1, "exit 2 when p99 latency exceeds this (negative: off)")
	annotateEnv(fs)
	return cmd
}

func readKeys(path string) ([]string, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	var keys []string
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		if k := strings.TrimSpace(sc.Text()); k != "" && !strings.HasPrefix(k, "#") {
			keys = append(keys, k)
		}
	}
	return keys, sc.Err()
}

func runLoad(cmd *cobra.Command, f loadFlags) error {
	cfg := f.cfg
	if f.apiKey != "" {
		cfg.APIKeys = append(cfg.APIKeys, f.apiKey)
	}
	if f.keysFile != "" {
		keys, err := readKeys(f.keysFile)
		if err != nil {
			return fmt.Errorf("--keys-file: %w", err)
		}
		cfg.APIKeys = append(cfg.APIKeys, keys...)
	}
	if f.self {
		if cfg.URL != "" {
			return errors.New("--self and --url exclude each other")
		}
		n, err := startSelf(f.selfConfig)
		if err != nil {
			return fmt.Errorf("--self: %w", err)
		}
		n.serve()
		defer n.shutdown(0)
		cfg.URL = "ws://" + n.wsLn.Addr().String() + "/ws"
		if cfg.NATSURL == "" {
			cfg.NATSURL = n.embedded.ClientURL()
		}
		if cfg.MetricsURL == "" {
			cfg.MetricsURL = "http://" + n.apiLn.Addr().String() + "/metrics"
		}
	}
	if cfg.URL == "" {
		return errors.New("--url or --self is required")
	}
	cfg.Progress = cmd.ErrOrStderr()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := loadtest.Run(ctx, cfg)
	if err != nil && rep.Conns == 0 {
		return err
	}
	if werr := rep.WriteTable(cmd.OutOrStdout()); werr != nil {
		return werr
	}
	if f.jsonFile != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if werr := os.WriteFile(f.jsonFile, append(b, '\n'), 0o644); werr != nil {
			return werr
		}
	}
	if err != nil {
		return err
	}
	if gerr := rep.Gate(f.maxLoss, f.maxP99); gerr != nil {
		return &exitError{code: 2, err: gerr}
	}
	return nil
}

// startSelf starts an in-process node on free ports with embedded NATS,
// a temporary key store and, unless a config is given, anonymous limits
// raised so one load generator on one address is not throttled.
func startSelf(configPath string) (*node, error) {
	dir, err := os.MkdirTemp("", "floodgate-load")
	if err != nil {
		return nil, err
	}
	if configPath == "" {
		configPath = dir + "/load.yaml"
		if err := os.WriteFile(configPath, []byte(selfLoadConfig), 0o600); err != nil {
			return nil, err
		}
	}
	log := zerolog.New(os.Stderr).Level(zerolog.WarnLevel).With().Timestamp().Logger()
	return startNode(serveFlags{
		listen: "127.0.0.1:0", apiListen: "127.0.0.1:0", embeddedNATS: "127.0.0.1:0",
		subjectPrefix: "md", dataDir: dir, config: configPath, nodeID: "load-self",
	}, log)
}

// selfLoadConfig lifts the anonymous tier's caps: a load generator is one
// IP with thousands of connections.
const selfLoadConfig = `limits:
  tiers:
    anonymous:
      credits: 1000000
      max_connections: 100000
      connects: 100000
`
