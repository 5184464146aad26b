package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"floodgate/node"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"
)

// nodeFlags are the flags of `floodgate serve` and `floodgate sidecar`;
// toConfig turns them into a node.Config.
type nodeFlags struct {
	listen, apiListen     string
	natsURL, embeddedNATS string
	subjectPrefix         string
	redisURL, dataDir     string
	redisMode             string
	redisNamespace        string
	adminToken            string
	adminTokenFile        string
	redisPasswordFile     string
	accountVerifier       string
	idleTimeout           time.Duration
	maxExpiryWindow       time.Duration
	revokedRetention      time.Duration
	config                string
	demoFeed              bool
	trustedProxies        []string
	allowedOrigins        []string
	allowQueryKey         bool
	nodeID                string
	logLevel, logFormat   string
	shutdownGrace         time.Duration
	checkConfig           bool
	clusterNodes          int
	tlsCert, tlsKey       string
	compression           bool
	history               string
}

// addCommonFlags adds the flags serve and sidecar share.
func (f *nodeFlags) addCommonFlags(fs *pflag.FlagSet) {
	host, _ := os.Hostname()
	fs.StringVar(&f.apiListen, "api-listen", ":8081", "API listener address (REST sidecar, /healthz, /readyz, /metrics)")
	fs.StringVar(&f.redisURL, "redis-url", "", "Redis URL (redis://host:6379/0): keys and cluster-wide budgets; empty keeps keys in --data-dir and budgets local")
	fs.StringVar(&f.redisMode, "redis-mode", "single", "how --redis-url is read: single (one server), cluster (a Redis Cluster: redis://host1:port1?addr=host2:port2) or sentinel (redis://sentinel1:26379?addr=sentinel2:26379&master_name=NAME)")
	fs.StringVar(&f.dataDir, "data-dir", "./data", "directory of the bbolt key store (when --redis-url is empty)")
	fs.StringVar(&f.redisNamespace, "redis-namespace", "floodgate:", "prefix of every Redis key (keys and budgets), to keep clusters sharing one Redis apart")
	fs.StringVar(&f.adminToken, "admin-token", "", "bearer token of the operator API /admin/v1 and /debug/pprof (at least 16 characters); empty turns them off. Prefer --admin-token-file or the environment: a command line is visible to every local user")
	fs.StringVar(&f.adminTokenFile, "admin-token-file", "", "file holding the admin token (trailing newline ignored); instead of --admin-token")
	fs.StringVar(&f.redisPasswordFile, "redis-password-file", "", "file holding the Redis password (trailing newline ignored); replaces the password of --redis-url. FLOODGATE_REDIS_PASSWORD does the same from the environment")
	fs.StringVar(&f.accountVerifier, "account-verifier", "open", "who may create keys on the account endpoint: open (any wallet), file:PATH (one wallet address per line, re-read on SIGHUP) or nats:SUBJECT (request {\"account\":...}, reply {\"allowed\":bool}, 1 s timeout)")
	fs.DurationVar(&f.idleTimeout, "idle-timeout", 30*time.Second, "close keep-alive HTTP connections idle this long (API listener; the websocket listener closes every socket after its one request unless it upgrades)")
	fs.DurationVar(&f.maxExpiryWindow, "max-expiry-window", 5*time.Minute, "longest expiry_window of a wallet-signed request (400 EXPIRY_WINDOW_TOO_LONG above); signatures are remembered this long at most")
	fs.DurationVar(&f.revokedRetention, "revoked-retention", 30*24*time.Hour, "how long revoked keys and their events are kept before they are deleted")
	fs.StringSliceVar(&f.allowedOrigins, "allowed-origins", nil, "host patterns of browser origins allowed cross-origin: websocket upgrades, and CORS on the account endpoints")
	fs.StringVar(&f.config, "config", "", "YAML config file (sources, limits)")
	fs.StringVar(&f.nodeID, "node-id", host, "this node's name in logs and events")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&f.logFormat, "log-format", "", "log format: json or console (default json; console when stderr is a terminal)")
}

func newServeCmd() *cobra.Command {
	var f nodeFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the broker and the REST sidecar",
		Long: `Run the websocket broker (GET /ws on --listen) and the API listener
(/healthz, /readyz, /metrics on --api-listen). Without --nats-url an embedded
NATS server is started on --embedded-nats-listen, where publishers connect.
Every flag can also be set with its FLOODGATE_* environment variable; flags
win over the environment.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := bindEnv(cmd.Flags()); err != nil {
				return err
			}
			cfg, log, err := f.toConfig(false)
			if err != nil {
				return err
			}
			if f.checkConfig {
				if err := node.Check(cfg); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), "config ok")
				return nil
			}
			return runNode(cfg, f.config, log)
		},
	}
	fs := cmd.Flags()
	f.addCommonFlags(fs)
	fs.StringVar(&f.listen, "listen", ":8080", "websocket listener address (GET /ws)")
	fs.StringVar(&f.natsURL, "nats-url", "", "NATS server URL(s), comma separated; empty starts an embedded server")
	fs.StringVar(&f.embeddedNATS, "embedded-nats-listen", "127.0.0.1:4223", "where the embedded NATS server listens for publishers")
	fs.StringVar(&f.subjectPrefix, "subject-prefix", "", "first token of every market data subject (default md, or sources.prefix of --config)")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "PEM certificate (chain) file: serve wss:// and https:// on both listeners (with --tls-key)")
	fs.StringVar(&f.tlsKey, "tls-key", "", "PEM private key file of --tls-cert")
	fs.IntVar(&f.clusterNodes, "cluster-nodes", 1, "expected number of nodes sharing --redis-url: if Redis is lost, each node enforces 1/N of every budget, and leases are sized for N nodes")
	fs.StringSliceVar(&f.trustedProxies, "trusted-proxies", nil, "CIDRs of proxies whose X-Forwarded-For is trusted")
	fs.BoolVar(&f.allowQueryKey, "allow-query-key", false, "accept the API key as ?api_key= (query strings end up in proxy logs)")
	fs.StringVar(&f.history, "history", node.HistoryAuto, "sequence numbers, snapshots and resume from a JetStream stream: auto (on with the embedded NATS, off with --nats-url), on, off")
	fs.BoolVar(&f.compression, "compression", true, "offer permessage-deflate (without context takeover; each market frame of 256 bytes or more compressed once per node)")
	fs.BoolVar(&f.demoFeed, "demo-feed", false, "publish a synthetic market (prices, trades, bbo, book, candles for BTC, ETH, SOL)")
	fs.BoolVar(&f.checkConfig, "check-config", false, "validate the flags and --config file, print \"config ok\" and exit")
	fs.DurationVar(&f.shutdownGrace, "shutdown-grace", 10*time.Second, "on SIGTERM, how long clients get after the RECONNECT notice before the close")
	annotateEnv(fs)
	return cmd
}

func newSidecarCmd() *cobra.Command {
	var f nodeFlags
	cmd := &cobra.Command{
		Use:   "sidecar",
		Short: "Run the REST API alone against the key store",
		Long: `Serve the REST sidecar (account endpoints, key status, operator API,
/healthz, /readyz, /metrics) without a broker, against --redis-url or the
bbolt store in --data-dir. bbolt allows one process per file: point a
sidecar at a data dir only when no serve uses it; clusters use Redis. With
--nats-url, key changes are published so brokers apply them to live
sessions.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := bindEnv(cmd.Flags()); err != nil {
				return err
			}
			cfg, log, err := f.toConfig(true)
			if err != nil {
				return err
			}
			return runNode(cfg, f.config, log)
		},
	}
	fs := cmd.Flags()
	f.addCommonFlags(fs)
	fs.StringVar(&f.natsURL, "nats-url", "", "NATS URL to publish key control events on (empty: none)")
	annotateEnv(fs)
	return cmd
}

// toConfig turns the flags (already merged with the environment) and the
// config file into a node.Config; errors name the flag or field.
func (f *nodeFlags) toConfig(sidecar bool) (node.Config, zerolog.Logger, error) {
	log, err := newLogger(f.logLevel, f.logFormat)
	if err != nil {
		return node.Config{}, log, err
	}
	file, err := node.LoadFile(f.config)
	if err != nil {
		return node.Config{}, log, err
	}
	if f.subjectPrefix != "" { // the flag (or env) wins over sources.prefix
		file.Sources.Prefix = f.subjectPrefix
	}
	trusted, err := node.ParsePrefixes(f.trustedProxies)
	if err != nil {
		return node.Config{}, log, fmt.Errorf("--trusted-proxies: %w", err)
	}
	if f.clusterNodes < 1 && !sidecar {
		return node.Config{}, log, fmt.Errorf("--cluster-nodes %d: must be at least 1", f.clusterNodes)
	}
	adminToken, err := secretFrom("--admin-token", f.adminToken, "--admin-token-file", f.adminTokenFile)
	if err != nil {
		return node.Config{}, log, err
	}
	redisPassword, err := secretFrom("FLOODGATE_REDIS_PASSWORD", os.Getenv("FLOODGATE_REDIS_PASSWORD"), "--redis-password-file", f.redisPasswordFile)
	if err != nil {
		return node.Config{}, log, err
	}
	cfg := node.Config{
		Sidecar: sidecar,
		Listen:  f.listen, APIListen: f.apiListen, TLSCertFile: f.tlsCert, TLSKeyFile: f.tlsKey,
		NATSURL: f.natsURL, EmbeddedNATSListen: f.embeddedNATS,
		RedisURL: f.redisURL, RedisMode: f.redisMode, RedisNamespace: f.redisNamespace, DataDir: f.dataDir, ClusterNodes: f.clusterNodes,
		AdminToken: adminToken, RedisPassword: redisPassword, NodeID: f.nodeID, TrustedProxies: trusted, AllowedOrigins: f.allowedOrigins,
		AllowQueryKey: f.allowQueryKey, DemoFeed: f.demoFeed, ShutdownGrace: f.shutdownGrace, DisableCompression: !f.compression,
		History:     f.history,
		IdleTimeout: f.idleTimeout, AccountVerifier: f.accountVerifier, MaxExpiryWindow: f.maxExpiryWindow,
		RevokedRetention: f.revokedRetention,
		File:             &file, Logger: &log,
	}
	if f.shutdownGrace == 0 {
		cfg.ShutdownGrace = -1 // --shutdown-grace 0: no grace
	}
	return cfg, log, nil
}

// secretFrom returns a secret given directly (flag or environment) or in
// a file (its content without the trailing newline); both is an error.
func secretFrom(name, value, fileFlag, path string) (string, error) {
	if path == "" {
		return value, nil
	}
	if value != "" {
		return "", fmt.Errorf("%s and %s: give one", name, fileFlag)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", fileFlag, err)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("%s %s: empty", fileFlag, path)
	}
	return s, nil
}

// runNode runs a node until SIGTERM or SIGINT; SIGHUP reloads the config
// file's limits.
func runNode(cfg node.Config, configPath string, log zerolog.Logger) error {
	// Catch the signals before starting, so a SIGHUP during start-up does
	// not kill the process.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hups := make(chan os.Signal, 1)
	signal.Notify(hups, syscall.SIGHUP)
	defer signal.Stop(hups)
	n, err := node.New(cfg)
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	for {
		select {
		case <-hups:
			file, err := node.LoadFile(configPath)
			if err == nil {
				file.Sources = cfg.File.Sources // sources need a restart
				err = n.Reload(file)
			}
			if err != nil {
				log.Error().Err(err).Str("config", configPath).Msg("reload refused; the running config stays")
				continue
			}
			log.Info().Str("config", configPath).Msg("config reloaded: tiers and costs")
		case err := <-done:
			return err
		}
	}
}

func newLogger(level, format string) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil || level == "" {
		return zerolog.Logger{}, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	if format == "" {
		format = "json"
		if term.IsTerminal(int(os.Stderr.Fd())) {
			format = "console"
		}
	}
	var l zerolog.Logger
	switch format {
	case "json":
		l = zerolog.New(os.Stderr)
	case "console":
		l = zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: time.RFC3339})
	default:
		return l, fmt.Errorf("--log-format %q: want json or console", format)
	}
	return l.Level(lvl).With().Timestamp().Logger(), nil
}
