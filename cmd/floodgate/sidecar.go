package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"floodgate/auth"
	"floodgate/internal/gate"
	"floodgate/limiter"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
)

type sidecarFlags struct {
	apiListen           string
	redisURL, dataDir   string
	redisNamespace      string
	natsURL             string
	adminToken          string
	config              string
	nodeID              string
	logLevel, logFormat string
}

func newSidecarCmd() *cobra.Command {
	var f sidecarFlags
	host, _ := os.Hostname()
	cmd := &cobra.Command{
		Use:   "sidecar",
		Short: "Run the REST API alone against the key store",
		Long: `Serve the REST sidecar (account endpoints, key status, operator API,
/healthz, /readyz, /metrics) without a broker, against --redis-url or the
bbolt store in --data-dir. bbolt allows one process per file: point a
sidecar at a data dir only when no serve uses it; clusters use Redis. With
--nats-url, revocations are published so brokers close the key's sessions.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := bindEnv(cmd.Flags()); err != nil {
				return err
			}
			return runSidecar(f)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.apiListen, "api-listen", ":8081", "API listener address")
	addStoreFlags(fs, &f.redisURL, &f.dataDir, &f.adminToken)
	fs.StringVar(&f.redisNamespace, "redis-namespace", "floodgate:", "prefix of every Redis key; must match the brokers'")
	fs.StringVar(&f.natsURL, "nats-url", "", "NATS URL to publish key control events on (empty: none)")
	fs.StringVar(&f.config, "config", "", "YAML config file (limits, for the key tier's numbers)")
	fs.StringVar(&f.nodeID, "node-id", host, "this process's name in logs")
	addLogFlags(fs, &f.logLevel, &f.logFormat)
	annotateEnv(fs)
	return cmd
}

func runSidecar(f sidecarFlags) error {
	log, err := newLogger(f.logLevel, f.logFormat)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(f.config)
	if err != nil {
		return err
	}
	store, rdb, err := openStore(f.redisURL, f.redisNamespace, f.dataDir)
	if err != nil {
		return err
	}
	defer store.Close()
	if rdb != nil {
		defer rdb.Close()
		redis.SetLogger(redisLog{log})
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var notifier auth.Notifier
	var nc *nats.Conn
	if f.natsURL != "" {
		if nc, err = connectNATS(f.natsURL, "floodgate sidecar "+f.nodeID, log, func(error) {}); err != nil {
			return err
		}
		defer nc.Close()
		notifier = auth.NewNATSNotifier(nc)
	}
	var live auth.LiveUsage
	var lim *limiter.Limiter
	if rdb != nil {
		// Read-only use of the cluster budgets for live usage.
		if lim, err = limiter.New(limiter.Options{Config: &cfg.Limits, Redis: rdb, KeyPrefix: f.redisNamespace + "lim:", NodeID: f.nodeID, Logger: log}); err != nil {
			return err
		}
		defer lim.Close()
		live = gate.New(gate.Options{Store: store, Limiter: lim})
	}
	usage := auth.NewUsage(auth.UsageOptions{Store: store, Logger: &log})
	usageDone := make(chan struct{})
	go func() { defer close(usageDone); usage.Run(ctx) }()
	keyring := auth.NewKeyring(auth.KeyringOptions{Store: store})
	sidecar, err := auth.NewSidecar(auth.Options{
		Store: store, Keyring: keyring, Usage: usage, Notifier: notifier, LiveUsage: live,
		AdminToken: f.adminToken, DefaultCreditsPerMinute: int(cfg.Limits.Tiers.Key.Credits), Logger: &log,
	})
	if err != nil {
		return err
	}
	ready := func() []string {
		var reasons []string
		pctx, pcancel := context.WithTimeout(context.Background(), time.Second)
		defer pcancel()
		if err := store.Ping(pctx); err != nil {
			reasons = append(reasons, "key store: "+err.Error())
		}
		if nc != nil && !nc.IsConnected() {
			reasons = append(reasons, "nats: not connected")
		}
		return reasons
	}
	ln, err := net.Listen("tcp", f.apiListen)
	if err != nil {
		return fmt.Errorf("--api-listen %s: %w", f.apiListen, err)
	}
	srv := &http.Server{Handler: apiMux(sidecar, reg, ready, f.adminToken), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- serveHTTP(srv, ln) }()
	log.Info().Str("api_listen", ln.Addr().String()).Bool("admin", f.adminToken != "").Msg("floodgate sidecar serving")
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	select {
	case <-sigs:
	case err = <-errc:
	}
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	_ = srv.Shutdown(sctx)
	cancel()
	<-usageDone
	return err
}
