package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"floodgate/auth"
	"floodgate/loadtest"
	"floodgate/node"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
)

// loadFlags are the flags of `floodgate load` (README.md "Load testing").
type loadFlags struct {
	cfg         loadtest.Config
	self        bool
	apiKey      string
	keysFile    string
	createKeys  int
	keyCredits  int
	apiURL      string
	adminToken  string
	sourceAddrs []string
	jsonFile    string
	maxLoss     float64
	maxP99      time.Duration
	selfConfig  string
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
command works on a fresh machine.

Scenarios: broadcast (all connections on a few channels), fanout (many
channels), hot (--conns connections join one channel streaming --rate/2
msgs/s as fast as they can, hold it --hold, then leave, while
--steady-conns connections on a second channel measure delivery latency
before and during the storm; reports join and leave time, broker CPU and
allocations), resume (--conns connections read one channel at --rate
msgs/s, all disconnect for --away, then all reconnect at once with "since";
reports recovered, gaps, duplicates and lost messages, the time until the
last one is live and the broker CPU of the storm; needs history on the
broker), storm (--ramp connections per second opened, subscribed, held for
--hold and closed, while the rest of --conns keep receiving; the loss and
latency rows are the steady population's), throttle (--identities identities
ping above their credit budget; reports admitted vs configured rate per
identity). Throttle identities are API keys (--api-key, --keys-file,
--create-keys) or, anonymous, source IPs: several anonymous identities need
several --source-addrs (127.0.0.1, 127.0.0.2, ... by default against a
loopback broker).

Exit status: 0 run completed, 1 could not run, 2 --max-loss or --max-p99
exceeded, or (throttle) an identity outside --tolerance.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := bindEnv(cmd.Flags()); err != nil {
				return err
			}
			if f.cfg.Scenario == loadtest.ScenarioThrottle && !cmd.Flags().Changed("conns") {
				f.cfg.Conns = 0 // one connection per identity
			}
			return runLoad(cmd, f)
		},
	}
	fs := cmd.Flags()
	c := &f.cfg
	fs.StringVar(&c.Scenario, "scenario", "broadcast", "broadcast (all clients on few channels), fanout (many channels), storm (connect/disconnect churn), throttle (identities above their budget) hot (a join storm on one streaming channel) or resume (everyone reconnects with since)")
	fs.StringVar(&c.Protocol, "protocol", "floodgate", "client protocol: floodgate, or centrifugo (Centrifugo's JSON protocol against a Centrifugo server in NATS raw mode)")
	fs.IntVar(&c.SteadyConns, "steady-conns", 100, "hot: connections on the steady channel whose latency is measured before and during the join storm")
	fs.Float64Var(&c.DeflateShare, "deflate-share", 0, "share of connections (0 to 1) that offer permessage-deflate")
	fs.StringVar(&c.Payload, "payload", "pad", "payload shape: pad (--size bytes) or book (20 levels a side, about 1.6 KB, compressible like market data)")
	fs.StringVar(&c.URL, "url", "", "broker websocket URL; empty requires --self")
	fs.BoolVar(&f.self, "self", false, "start an in-process broker with embedded NATS on free ports")
	fs.StringVar(&f.selfConfig, "self-config", "", "config file for the --self broker (default: limits raised for load)")
	fs.StringVar(&c.NATSURL, "nats-url", "", "NATS URL to publish to (default: the --self broker's)")
	fs.IntVar(&c.Conns, "conns", 1000, "websocket connections (storm: in total, churning ones included; throttle: default one per identity)")
	fs.IntVar(&c.Channels, "channels", 1, "channels the connections spread over")
	fs.Float64Var(&c.Rate, "rate", 100, "published messages per second, over all channels")
	fs.IntVar(&c.Size, "size", 200, "payload bytes")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "measured publishing time")
	fs.DurationVar(&c.Warmup, "warmup", 2*time.Second, "publishing time before the measurement")
	fs.Float64Var(&c.Ramp, "ramp", 0, "new connections per second while connecting (0: as fast as possible); storm: the churn (0: 100/s)")
	fs.BoolVar(&c.Snapshot, "snapshot", false, "hot: joiners subscribe with \"snapshot\":true (needs history on the broker); reports the time from the ack to the snapshot")
	fs.DurationVar(&c.Away, "away", 2*time.Second, "resume: how long the connections stay disconnected before they resume with since")
	fs.DurationVar(&c.Hold, "hold", time.Second, "storm: how long a churned connection stays subscribed before it closes")
	fs.IntVar(&c.Identities, "identities", 0, "throttle: identities (0: one per API key, else one per --source-addrs, else 1)")
	fs.Float64Var(&c.SendRate, "send-rate", 0, "throttle: pings per second per connection at most (0: 1.5 x the connection's share of the configured rate)")
	fs.Float64Var(&c.ExpectRate, "expect-rate", 0, "throttle: configured credits per minute per identity (0: the \"q\" of the broker's replies per --credit-window)")
	fs.DurationVar(&c.CreditWindow, "credit-window", time.Minute, "throttle: the broker's credit window, used with \"q\"")
	fs.Float64Var(&c.TolerancePct, "tolerance", 5, "throttle: allowed distance of admitted from configured rate, percent")
	fs.DurationVar(&c.RefusalPause, "refusal-pause", 1200*time.Millisecond, "throttle: pause after a refused ping (the broker closes after more than 10 refusals in 10 s)")
	fs.StringSliceVar(&f.sourceAddrs, "source-addrs", nil, "local addresses to dial from, round robin, e.g. 127.0.0.1,127.0.0.2 (default: spread over 127.0.0.x when one address runs out of ports)")
	fs.StringVar(&f.apiKey, "api-key", "", "API key every connection presents")
	fs.StringVar(&f.keysFile, "keys-file", "", "file of API keys, one per line, used round robin")
	fs.IntVar(&f.createKeys, "create-keys", 0, "create this many API keys through the operator API (--api-url, --admin-token) and use them")
	fs.IntVar(&f.keyCredits, "key-credits", 0, "with --create-keys: each key's own credits per minute (0: the key tier's)")
	fs.StringVar(&f.apiURL, "api-url", "http://127.0.0.1:8081", "base URL of the operator API, for --create-keys (default with --self: the self broker's)")
	fs.StringVar(&f.adminToken, "admin-token", "", "operator API bearer token, for --create-keys (with --self: set on the self broker, random when empty)")
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
	for _, a := range f.sourceAddrs {
		ip, err := netip.ParseAddr(strings.TrimSpace(a))
		if err != nil {
			return fmt.Errorf("--source-addrs: %w", err)
		}
		cfg.SourceAddrs = append(cfg.SourceAddrs, ip)
	}
	apiURL, adminToken := f.apiURL, f.adminToken
	if f.self {
		if cfg.URL != "" {
			return errors.New("--self and --url exclude each other")
		}
		if adminToken == "" {
			var b [16]byte
			_, _ = rand.Read(b[:])
			adminToken = hex.EncodeToString(b[:])
		}
		dir, err := os.MkdirTemp("", "floodgate-load")
		if err != nil {
			return fmt.Errorf("--self: %w", err)
		}
		defer os.RemoveAll(dir) // the self broker's key store
		n, err := startSelf(dir, f.selfConfig, adminToken)
		if err != nil {
			return fmt.Errorf("--self: %w", err)
		}
		selfCtx, stopSelf := context.WithCancel(context.Background())
		selfDone := make(chan error, 1)
		go func() { selfDone <- n.Run(selfCtx) }()
		defer func() { stopSelf(); <-selfDone }()
		cfg.URL = "ws://" + n.WSAddr() + "/ws"
		if !cmd.Flags().Changed("api-url") {
			apiURL = "http://" + n.APIAddr()
		}
		if cfg.NATSURL == "" {
			cfg.NATSURL = n.NATSURL()
		}
		if cfg.MetricsURL == "" {
			cfg.MetricsURL = "http://" + n.APIAddr() + "/metrics"
		}
	}
	if cfg.URL == "" {
		return errors.New("--url or --self is required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if f.createKeys > 0 {
		ko := loadtest.KeyOptions{AdminURL: apiURL, AdminToken: adminToken, N: f.createKeys}
		if f.keyCredits > 0 {
			ko.Limits = &auth.Limits{CreditsPerMinute: int64(f.keyCredits)}
		}
		keys, err := loadtest.CreateKeys(ctx, ko)
		if err != nil {
			return fmt.Errorf("--create-keys: %w", err)
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "created %d API keys through %s\n", len(keys), apiURL)
		cfg.APIKeys = append(cfg.APIKeys, keys...)
	}
	cfg.Progress = cmd.ErrOrStderr()
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
// a temporary key store, the operator API behind adminToken and, unless a
// config is given, connection limits raised so one load generator on one
// address is not refused (the key tier's credits stay the defaults, for
// the throttle scenario).
func startSelf(dir, configPath, adminToken string) (*node.Node, error) {
	var file node.File
	var err error
	if configPath == "" {
		file, err = node.ParseFile([]byte(selfLoadConfig))
	} else {
		file, err = node.LoadFile(configPath)
	}
	if err != nil {
		return nil, err
	}
	log := zerolog.New(os.Stderr).Level(zerolog.WarnLevel).With().Timestamp().Logger()
	return node.New(node.Config{
		Listen: "127.0.0.1:0", APIListen: "127.0.0.1:0", EmbeddedNATSListen: "127.0.0.1:0",
		DataDir: dir, File: &file, NodeID: "load-self", AdminToken: adminToken, ShutdownGrace: -1, Logger: &log,
	})
}

// selfLoadConfig lifts the anonymous tier's caps: a load generator is one
// IP with thousands of connections; and the key tier's connection caps, so
// a storm with keys is not refused. Key credits keep their defaults.
const selfLoadConfig = `limits:
  tiers:
    anonymous:
      credits: 1000000
      max_connections: 100000
      connects: 1000000
    key:
      max_connections: 100000
      connects: 1000000
`
