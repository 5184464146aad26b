package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"floodgate/auth"
	"floodgate/broker"
	"floodgate/fanout"
	"floodgate/internal/gate"
	"floodgate/limiter"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
)

// node is everything `serve` runs.
type node struct {
	log      zerolog.Logger
	embedded *server.Server
	nc       *nats.Conn
	rdb      redis.UniversalClient
	store    auth.Store
	usage    *auth.Usage
	limiter  *limiter.Limiter
	gate     *gate.Gate
	hub      *fanout.Hub
	hubRef   atomic.Pointer[fanout.Hub] // hub, for NATS callbacks
	broker   *broker.Server
	sidecar  *auth.Sidecar
	reg      *prometheus.Registry
	wsSrv    *http.Server
	apiSrv   *http.Server
	wsLn     net.Listener
	apiLn    net.Listener

	// Background work, stopped by close.
	cancel    context.CancelFunc
	bg        []chan struct{}
	stopWatch func()
	stopDemo  context.CancelFunc
	demoDone  chan struct{}
}

// goBG runs fn on a goroutine that close waits for.
func (n *node) goBG(ctx context.Context, fn func(ctx context.Context)) {
	done := make(chan struct{})
	n.bg = append(n.bg, done)
	go func() { defer close(done); fn(ctx) }()
}

func parsePrefixes(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !strings.Contains(s, "/") {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("--trusted-proxies %q: %w", s, err)
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("--trusted-proxies %q: %w", s, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// openStore opens the key store: Redis when redisURL is set, else bbolt in
// dataDir. It returns the Redis client too (nil for bbolt).
func openStore(redisURL, namespace, dataDir string) (auth.Store, redis.UniversalClient, error) {
	if redisURL != "" {
		opt, err := redis.ParseURL(redisURL)
		if err != nil {
			return nil, nil, fmt.Errorf("--redis-url: %w", err)
		}
		opt.DialerRetries = 1
		rdb := redis.NewClient(opt)
		return auth.NewRedisStore(rdb, auth.RedisOptions{Namespace: namespace}), rdb, nil
	}
	st, err := auth.OpenBolt(dataDir, auth.BoltOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("--data-dir %s: %w", dataDir, err)
	}
	return st, nil, nil
}

// loadServeConfig reads and validates the config file and the flags that
// need parsing; errors name the field and the bad value.
func loadServeConfig(f serveFlags) (fileConfig, *fanout.Sources, error) {
	cfg, err := loadConfig(f.config)
	if err != nil {
		return cfg, nil, err
	}
	if f.subjectPrefix != "" { // the flag (or env) wins over sources.prefix
		cfg.Sources.Prefix = f.subjectPrefix
	}
	sources, err := fanout.NewSources(cfg.Sources)
	if err != nil {
		return cfg, nil, err
	}
	if _, err := parsePrefixes(f.trustedProxies); err != nil {
		return cfg, nil, err
	}
	if _, err := tlsConfig(f.tlsCert, f.tlsKey); err != nil {
		return cfg, nil, err
	}
	if f.clusterNodes < 1 {
		return cfg, nil, fmt.Errorf("--cluster-nodes %d: must be at least 1", f.clusterNodes)
	}
	if f.logLevel != "" || f.logFormat != "" {
		if _, err := newLogger(f.logLevel, f.logFormat); err != nil {
			return cfg, nil, err
		}
	}
	return cfg, sources, nil
}

func startNode(f serveFlags, log zerolog.Logger) (_ *node, err error) {
	cfg, sources, err := loadServeConfig(f)
	if err != nil {
		return nil, err
	}
	trusted, _ := parsePrefixes(f.trustedProxies) // checked by loadServeConfig
	n := &node{log: log, reg: prometheus.NewRegistry()}
	defer func() {
		if err != nil {
			n.close()
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	n.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	natsURL := f.natsURL
	if natsURL == "" {
		n.embedded, err = fanout.StartEmbedded(fanout.EmbeddedOptions{Listen: f.embeddedNATS})
		if err != nil {
			return nil, fmt.Errorf("embedded NATS on %s: %w", f.embeddedNATS, err)
		}
		natsURL = n.embedded.ClientURL()
		log.Info().Str("url", natsURL).Msg("embedded NATS started; publishers connect here")
	}
	if n.nc, err = connectNATS(natsURL, "floodgate "+f.nodeID, log, n.asyncError); err != nil {
		return nil, err
	}
	n.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "floodgate", Name: "nats_connected", Help: "1 when the NATS connection is up.",
	}, func() float64 { return boolFloat(n.nc.IsConnected()) }))

	if n.store, n.rdb, err = openStore(f.redisURL, f.redisNamespace, f.dataDir); err != nil {
		return nil, err
	}
	n.store = auth.NewTimedStore(n.store, n.reg)
	if n.rdb != nil {
		redis.SetLogger(redisLog{log})
	}
	n.limiter, err = limiter.New(limiter.Options{
		Config: &cfg.Limits, Redis: n.rdb, KeyPrefix: f.redisNamespace + "lim:",
		ExpectedNodes: f.clusterNodes, NodeID: f.nodeID, Logger: log, Registerer: n.reg,
	})
	if err != nil {
		return nil, err
	}
	n.goBG(ctx, func(ctx context.Context) { _ = n.limiter.Run(ctx) })
	keyring := auth.NewKeyring(auth.KeyringOptions{Store: n.store})
	n.usage = auth.NewUsage(auth.UsageOptions{Store: n.store, Logger: &n.log})
	n.goBG(ctx, n.usage.Run)
	n.gate = gate.New(gate.Options{
		Keyring: keyring, Store: n.store, Limiter: n.limiter, Usage: n.usage,
		TrustedProxies: trusted, AllowQueryKey: f.allowQueryKey, NodeID: f.nodeID, Logger: &n.log,
	})
	n.goBG(ctx, n.gate.Run)

	n.hub, err = fanout.NewHub(fanout.Options{Conn: n.nc, Registerer: n.reg})
	if err != nil {
		return nil, err
	}
	n.hubRef.Store(n.hub)
	n.broker, err = broker.New(broker.Options{
		Hub:            n.hub,
		Sources:        sources,
		Resolver:       n.gate,
		Admitter:       n.gate,
		OnClose:        n.gate.OnClose,
		Logger:         &n.log,
		Registerer:     n.reg,
		NodeID:         f.nodeID,
		AllowedOrigins: f.allowedOrigins,
	})
	if err != nil {
		return nil, err
	}
	if n.stopWatch, err = n.gate.Watch(n.nc, n.broker); err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", auth.ControlSubject, err)
	}
	n.goBG(ctx, func(ctx context.Context) { n.gate.Recheck(ctx, n.broker, 30*time.Second) })
	n.sidecar, err = auth.NewSidecar(auth.Options{
		Store: n.store, Keyring: keyring, Usage: n.usage, Notifier: auth.NewNATSNotifier(n.nc),
		LiveUsage: n.gate, AdminToken: f.adminToken, Logger: &n.log,
	})
	if err != nil {
		return nil, err
	}
	if f.demoFeed {
		if err := n.startDemo(natsURL, sources.Prefix()); err != nil {
			return nil, fmt.Errorf("demo feed: %w", err)
		}
	}

	wsMux := http.NewServeMux()
	wsMux.Handle("GET /ws", n.broker)
	wsMux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		broker.Refuse(w, &broker.Refusal{Status: http.StatusNotFound, Code: "NOT_FOUND", Message: "websocket endpoint is GET /ws"})
	})
	n.wsSrv = &http.Server{Handler: wsMux, ReadHeaderTimeout: 10 * time.Second}
	n.apiSrv = &http.Server{Handler: apiMux(n.sidecar, n.reg, n.readiness, f.adminToken), ReadHeaderTimeout: 10 * time.Second}
	if n.wsLn, err = net.Listen("tcp", f.listen); err != nil {
		return nil, fmt.Errorf("--listen %s: %w", f.listen, err)
	}
	if n.apiLn, err = net.Listen("tcp", f.apiListen); err != nil {
		return nil, fmt.Errorf("--api-listen %s: %w", f.apiListen, err)
	}
	if tc, err := tlsConfig(f.tlsCert, f.tlsKey); err != nil {
		return nil, err
	} else if tc != nil {
		n.wsLn, n.apiLn = tls.NewListener(n.wsLn, tc), tls.NewListener(n.apiLn, tc.Clone())
	}
	return n, nil
}

// redisLog routes go-redis's own log lines (reconnect errors) into our
// structured log instead of plain text on stderr.
type redisLog struct{ log zerolog.Logger }

func (r redisLog) Printf(_ context.Context, format string, v ...any) {
	r.log.Warn().Str("component", "redis").Msgf(format, v...)
}

// asyncError hands NATS async errors to the hub's metrics.
func (n *node) asyncError(err error) {
	if h := n.hubRef.Load(); h != nil {
		h.AsyncError(err)
	}
}

func connectNATS(url, name string, log zerolog.Logger, onAsync func(error)) (*nats.Conn, error) {
	nc, err := nats.Connect(url,
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: we closed it
				log.Warn().Err(err).Msg("NATS disconnected")
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info().Str("url", c.ConnectedUrlRedacted()).Msg("NATS reconnected") }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			log.Warn().Err(err).Str("subject", subj).Msg("NATS async error")
			onAsync(err)
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("connect NATS %s: %w", url, err)
	}
	return nc, nil
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// tlsConfig loads --tls-cert and --tls-key; nil when neither is set.
func tlsConfig(certFile, keyFile string) (*tls.Config, error) {
	if certFile == "" && keyFile == "" {
		return nil, nil
	}
	if certFile == "" || keyFile == "" {
		return nil, fmt.Errorf("--tls-cert and --tls-key go together")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// serve starts the websocket and API servers; a listener failure is sent
// on the returned channel. shutdown stops them.
func (n *node) serve() <-chan error {
	errc := make(chan error, 2)
	go func() { errc <- serveHTTP(n.wsSrv, n.wsLn) }()
	go func() { errc <- serveHTTP(n.apiSrv, n.apiLn) }()
	return errc
}

// readiness lists why the node is not ready (empty: ready).
func (n *node) readiness() []string {
	var reasons []string
	if n.broker.Draining() {
		reasons = append(reasons, "draining")
	}
	if !n.nc.IsConnected() {
		reasons = append(reasons, "nats: "+strings.ToLower(n.nc.Status().String()))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := n.store.Ping(ctx); err != nil {
		reasons = append(reasons, "key store: "+err.Error())
	}
	if err := n.limiter.Health(); err != nil {
		reasons = append(reasons, "limiter: "+err.Error())
	}
	return reasons
}

// reload re-reads the config file (SIGHUP) and applies its limits (tiers,
// costs and every other number) to live connections. An invalid file
// changes nothing; the error is logged. The sources table is not
// reloaded: changing it needs a restart.
func (n *node) reload(f serveFlags) {
	cfg, _, err := loadServeConfig(f)
	if err == nil {
		err = n.limiter.Reload(cfg.Limits, time.Now())
	}
	if err != nil {
		n.log.Error().Err(err).Str("config", f.config).Msg("reload refused; the running config stays")
		return
	}
	n.log.Info().Str("config", f.config).Msg("config reloaded: tiers and costs")
}

// shutdown drains the broker for grace, then stops everything.
func (n *node) shutdown(grace time.Duration) {
	n.broker.Drain(grace)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = n.wsSrv.Shutdown(ctx)
	_ = n.apiSrv.Shutdown(ctx)
	n.close()
}

// close releases whatever startNode built, in reverse order.
func (n *node) close() {
	if n.stopDemo != nil {
		n.stopDemo()
		<-n.demoDone
	}
	if n.stopWatch != nil {
		n.stopWatch()
	}
	if n.broker != nil {
		_ = n.broker.Close()
	}
	if n.hub != nil {
		n.hub.Close()
	}
	if n.cancel != nil {
		n.cancel() // usage flush, event writer, limiter sync
		for _, done := range n.bg {
			<-done
		}
	}
	if n.limiter != nil {
		_ = n.limiter.Close()
	}
	if n.store != nil {
		_ = n.store.Close()
	}
	if n.rdb != nil {
		_ = n.rdb.Close()
	}
	if n.nc != nil {
		n.nc.Close()
	}
	if n.embedded != nil {
		n.embedded.Shutdown()
		n.embedded.WaitForShutdown()
	}
	if n.wsLn != nil {
		_ = n.wsLn.Close()
	}
	if n.apiLn != nil {
		_ = n.apiLn.Close()
	}
}
