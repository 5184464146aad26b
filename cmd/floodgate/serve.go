package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"
)

// serveFlags are the flags of `floodgate serve` (cli.md).
type serveFlags struct {
	listen, apiListen     string
	natsURL, embeddedNATS string
	subjectPrefix         string
	redisURL, dataDir     string
	adminToken            string
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
	redisNamespace        string
	tlsCert, tlsKey       string
}

func newServeCmd() *cobra.Command {
	var f serveFlags
	host, _ := os.Hostname()
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
			if f.checkConfig {
				if _, _, err := loadServeConfig(f); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), "config ok")
				return nil
			}
			return runServe(cmd.Context(), f)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.listen, "listen", ":8080", "websocket listener address (GET /ws)")
	fs.StringVar(&f.apiListen, "api-listen", ":8081", "API listener address (REST sidecar, /healthz, /readyz, /metrics)")
	fs.StringVar(&f.natsURL, "nats-url", "", "NATS server URL(s), comma separated; empty starts an embedded server")
	fs.StringVar(&f.embeddedNATS, "embedded-nats-listen", "127.0.0.1:4223", "where the embedded NATS server listens for publishers")
	fs.StringVar(&f.subjectPrefix, "subject-prefix", "", "first token of every market data subject (default md, or sources.prefix of --config)")
	addStoreFlags(fs, &f.redisURL, &f.dataDir, &f.adminToken)
	fs.StringVar(&f.redisNamespace, "redis-namespace", "floodgate:", "prefix of every Redis key (keys and budgets), to keep clusters sharing one Redis apart")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "PEM certificate (chain) file: serve wss:// and https:// on both listeners (with --tls-key)")
	fs.StringVar(&f.tlsKey, "tls-key", "", "PEM private key file of --tls-cert")
	fs.IntVar(&f.clusterNodes, "cluster-nodes", 1, "expected number of nodes sharing --redis-url: if Redis is lost, each node enforces 1/N of every budget, and leases are sized for N nodes")
	fs.StringVar(&f.config, "config", "", "YAML config file (sources, limits)")
	fs.StringSliceVar(&f.trustedProxies, "trusted-proxies", nil, "CIDRs of proxies whose X-Forwarded-For is trusted")
	fs.BoolVar(&f.allowQueryKey, "allow-query-key", false, "accept the API key as ?api_key= (query strings end up in proxy logs)")
	fs.BoolVar(&f.demoFeed, "demo-feed", false, "publish a synthetic market (prices, trades, bbo, book, candles for BTC, ETH, SOL)")
	fs.StringSliceVar(&f.allowedOrigins, "allowed-origins", nil, "host patterns of browser origins allowed to connect cross-origin")
	fs.StringVar(&f.nodeID, "node-id", host, "this node's name in logs and events")
	addLogFlags(fs, &f.logLevel, &f.logFormat)
	fs.BoolVar(&f.checkConfig, "check-config", false, "validate the flags and --config file, print \"config ok\" and exit")
	fs.DurationVar(&f.shutdownGrace, "shutdown-grace", 10*time.Second, "on SIGTERM, how long clients get after the RECONNECT notice before the close")
	annotateEnv(fs)
	return cmd
}

// addStoreFlags adds the key store and operator API flags shared by serve
// and sidecar.
func addStoreFlags(fs *pflag.FlagSet, redisURL, dataDir, adminToken *string) {
	fs.StringVar(redisURL, "redis-url", "", "Redis URL (redis://host:6379/0): keys and cluster-wide budgets; empty keeps keys in --data-dir and budgets local")
	fs.StringVar(dataDir, "data-dir", "./data", "directory of the bbolt key store (when --redis-url is empty)")
	fs.StringVar(adminToken, "admin-token", "", "bearer token of the operator API /admin/v1 and /debug/pprof; empty turns them off")
}

// addLogFlags adds --log-level and --log-format.
func addLogFlags(fs *pflag.FlagSet, level, format *string) {
	fs.StringVar(level, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(format, "log-format", "", "log format: json or console (default json; console when stderr is a terminal)")
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

func runServe(ctx context.Context, f serveFlags) error {
	log, err := newLogger(f.logLevel, f.logFormat)
	if err != nil {
		return err
	}
	// Catch the signals before starting, so a SIGHUP during start-up does
	// not kill the process.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	hups := make(chan os.Signal, 1)
	signal.Notify(hups, syscall.SIGHUP)
	defer signal.Stop(hups)
	n, err := startNode(f, log)
	if err != nil {
		return err
	}
	errc := n.serve()
	log.Info().Str("listen", n.wsLn.Addr().String()).Str("api_listen", n.apiLn.Addr().String()).
		Str("nats", n.nc.ConnectedUrlRedacted()).Bool("demo_feed", f.demoFeed).Str("node", f.nodeID).Msg("floodgate serving")
	var runErr error
wait:
	for {
		select {
		case <-hups:
			n.reload(f)
		case sig := <-sigs:
			log.Info().Str("signal", sig.String()).Dur("grace", f.shutdownGrace).Msg("draining")
			break wait
		case runErr = <-errc:
			log.Error().Err(runErr).Msg("listener failed")
			break wait
		case <-ctxDone(ctx):
			break wait
		}
	}
	n.shutdown(f.shutdownGrace)
	log.Info().Msg("stopped")
	return runErr
}

func ctxDone(ctx context.Context) <-chan struct{} {
	if ctx == nil {
		return nil
	}
	return ctx.Done()
}

func serveHTTP(s *http.Server, ln net.Listener) error {
	if err := s.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
