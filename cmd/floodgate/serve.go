package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"floodgate/broker"
	"floodgate/fanout"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// serveFlags are the flags of `floodgate serve` (cli.md).
type serveFlags struct {
	listen, apiListen     string
	natsURL, embeddedNATS string
	subjectPrefix         string
	config                string
	demoFeed              bool
	allowedOrigins        []string
	nodeID                string
	logLevel, logFormat   string
	shutdownGrace         time.Duration
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
			return runServe(cmd.Context(), f)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.listen, "listen", ":8080", "websocket listener address (GET /ws)")
	fs.StringVar(&f.apiListen, "api-listen", ":8081", "API listener address (/healthz, /readyz, /metrics)")
	fs.StringVar(&f.natsURL, "nats-url", "", "NATS server URL(s), comma separated; empty starts an embedded server")
	fs.StringVar(&f.embeddedNATS, "embedded-nats-listen", "127.0.0.1:4223", "where the embedded NATS server listens for publishers")
	fs.StringVar(&f.subjectPrefix, "subject-prefix", "md", "first token of every market data subject")
	fs.StringVar(&f.config, "config", "", "YAML config file (sources table)")
	fs.BoolVar(&f.demoFeed, "demo-feed", false, "publish a synthetic market (prices, trades, bbo, book, candles for BTC, ETH, SOL)")
	fs.StringSliceVar(&f.allowedOrigins, "allowed-origins", nil, "host patterns of browser origins allowed to connect cross-origin")
	fs.StringVar(&f.nodeID, "node-id", host, "this node's name in logs and events")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&f.logFormat, "log-format", "", "log format: json or console (default json; console when stderr is a terminal)")
	fs.DurationVar(&f.shutdownGrace, "shutdown-grace", 10*time.Second, "on SIGTERM, how long clients get after the RECONNECT notice before the close")
	annotateEnv(fs)
	return cmd
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

// node is everything `serve` runs, so tests and `load --self` can start one.
type node struct {
	log      zerolog.Logger
	embedded *server.Server
	nc       *nats.Conn
	hub      *fanout.Hub
	broker   *broker.Server
	reg      *prometheus.Registry
	wsSrv    *http.Server
	apiSrv   *http.Server
	wsLn     net.Listener
	apiLn    net.Listener
	stopDemo context.CancelFunc
	demoDone chan struct{}
}

func runServe(ctx context.Context, f serveFlags) error {
	log, err := newLogger(f.logLevel, f.logFormat)
	if err != nil {
		return err
	}
	n, err := startNode(f, log)
	if err != nil {
		return err
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	errc := make(chan error, 2)
	go func() { errc <- serveHTTP(n.wsSrv, n.wsLn) }()
	go func() { errc <- serveHTTP(n.apiSrv, n.apiLn) }()
	log.Info().Str("listen", n.wsLn.Addr().String()).Str("api_listen", n.apiLn.Addr().String()).
		Str("nats", n.nc.ConnectedUrlRedacted()).Bool("demo_feed", f.demoFeed).Str("node", f.nodeID).Msg("floodgate serving")
	var runErr error
	select {
	case sig := <-sigs:
		log.Info().Str("signal", sig.String()).Dur("grace", f.shutdownGrace).Msg("draining")
	case runErr = <-errc:
		log.Error().Err(runErr).Msg("listener failed")
	case <-ctxDone(ctx):
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

func startNode(f serveFlags, log zerolog.Logger) (n *node, err error) {
	cfg, err := loadConfig(f.config)
	if err != nil {
		return nil, err
	}
	if f.subjectPrefix != "" {
		cfg.Sources.Prefix = f.subjectPrefix
	}
	sources, err := fanout.NewSources(cfg.Sources)
	if err != nil {
		return nil, err
	}
	n = &node{log: log, reg: prometheus.NewRegistry()}
	defer func() {
		if err != nil {
			n.close()
		}
	}()
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
	n.nc, err = nats.Connect(natsURL,
		nats.Name("floodgate "+f.nodeID),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.RetryOnFailedConnect(false),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { log.Warn().Err(err).Msg("NATS disconnected") }),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info().Str("url", c.ConnectedUrlRedacted()).Msg("NATS reconnected") }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			log.Warn().Err(err).Str("subject", subj).Msg("NATS async error")
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("connect NATS %s: %w", natsURL, err)
	}
	n.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "floodgate", Name: "nats_connected", Help: "1 when the NATS connection is up.",
	}, func() float64 {
		if n.nc.IsConnected() {
			return 1
		}
		return 0
	}))
	n.hub, err = fanout.NewHub(fanout.Options{Conn: n.nc, Registerer: n.reg})
	if err != nil {
		return nil, err
	}
	n.broker, err = broker.New(broker.Options{
		Hub:            n.hub,
		Sources:        sources,
		Logger:         &n.log,
		Registerer:     n.reg,
		NodeID:         f.nodeID,
		AllowedOrigins: f.allowedOrigins,
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
	n.apiSrv = &http.Server{Handler: n.apiMux(), ReadHeaderTimeout: 10 * time.Second}
	if n.wsLn, err = net.Listen("tcp", f.listen); err != nil {
		return nil, fmt.Errorf("--listen %s: %w", f.listen, err)
	}
	if n.apiLn, err = net.Listen("tcp", f.apiListen); err != nil {
		return nil, fmt.Errorf("--api-listen %s: %w", f.apiListen, err)
	}
	return n, nil
}

// apiMux serves health, readiness and metrics.
func (n *node) apiMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		var reasons []string
		if n.broker.Draining() {
			reasons = append(reasons, "draining")
		}
		if !n.nc.IsConnected() {
			reasons = append(reasons, "nats: "+strings.ToLower(n.nc.Status().String()))
		}
		w.Header().Set("Content-Type", "application/json")
		if len(reasons) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "{\"status\":\"not ready\",\"reasons\":[%q]}\n", strings.Join(reasons, `","`))
			return
		}
		_, _ = w.Write([]byte(`{"status":"ready"}` + "\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(n.reg, promhttp.HandlerOpts{Registry: n.reg}))
	return mux
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
	if n.broker != nil {
		_ = n.broker.Close()
	}
	if n.hub != nil {
		n.hub.Close()
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
