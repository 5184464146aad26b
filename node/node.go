package node

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"math"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"floodgate/auth"
	"floodgate/broker"
	"floodgate/console"
	"floodgate/fanout"
	"floodgate/keyapi"
	"floodgate/limiter"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
)

// Node is one running Floodgate process: its dependencies, its parts and
// their background work. Build it with New, run it with Run; Close
// releases it.
type Node struct {
	// Immutable after New.
	cfg       Config
	log       zerolog.Logger
	reg       *prometheus.Registry
	adminHash [32]byte
	embedded  *server.Server // nil with an external NATS
	nc        *nats.Conn     // nil in sidecar mode without NATS
	rdb       redis.UniversalClient
	store     auth.Store
	usage     *auth.Usage
	meter     *meter
	keyring   *auth.Keyring
	limiter   *limiter.Limiter
	events    *eventWriter
	control   *control
	health    *health
	notifier  *notifier
	hub       *fanout.Hub     // nil in sidecar mode
	history   *fanout.History // nil without history (history.go)
	broker    *broker.Server  // nil in sidecar mode
	sidecar   *keyapi.Server
	sources   *fanout.Sources
	costs     *costs       // limits.costs by source index; Reload swaps the table
	wsSrv     *http.Server // nil in sidecar mode
	apiSrv    *http.Server
	wsLn      net.Listener     // nil in sidecar mode
	pending   *pendingListener // the websocket listener's socket cap; nil in sidecar mode
	apiLn     net.Listener
	verifier  keyapi.AccountVerifier
	purged    prometheus.Counter
	natsURL   string // where publishers connect
	hubRef    atomic.Pointer[fanout.Hub]
	console   *console.Backend // the operator console's stats, top keys and heartbeats
	rawStore  auth.Store       // the store under the metrics wrapper (its Upgrade)
	upgraded  atomic.Bool      // the store's layout is current (purge.go)

	// Owned by Run and Close.
	runMu     sync.Mutex
	running   bool
	stopWatch func()
	closeOnce sync.Once
	closeErr  error
}

// New builds a node from cfg: it starts the embedded NATS server (or
// connects to cfg.NATSURL), opens the key store, builds the limiter, the
// hub, the broker and the REST sidecar, and binds both listeners. Nothing
// serves until Run. On error everything opened is released.
func New(cfg Config) (_ *Node, err error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	sources, err := fanout.NewSources(cfg.File.Sources)
	if err != nil {
		return nil, err
	}
	if err := checkCosts(&cfg.File.Limits.Costs, sources); err != nil {
		return nil, err
	}
	if _, err := cfg.historyWanted(); err != nil {
		return nil, err
	}
	tc, err := tlsConfig(cfg.TLSCertFile, cfg.TLSKeyFile)
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: *cfg.Logger, reg: prometheus.NewRegistry(), sources: sources,
		adminHash: sha256.Sum256([]byte(cfg.AdminToken)), health: &health{}, costs: &costs{}}
	n.costs.p.Store(newCostTable(cfg.File.Limits.Costs, sources))
	defer func() {
		if err != nil {
			n.release()
		}
	}()
	n.purged = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "floodgate", Name: "keys_purged_total",
		Help: "Revoked keys deleted (with their events) after the retention period.",
	})
	n.reg.MustRegister(collectors.NewGoCollector(
		// go_gc_heap_live_bytes: the heap marked live by the last GC.
		collectors.WithGoCollectorRuntimeMetrics(collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/gc/heap/live:bytes$`)}),
	), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), n.purged)
	if err := n.openNATS(); err != nil {
		return nil, err
	}
	if n.store, n.rdb, err = openStore(cfg.RedisURL, cfg.RedisMode, cfg.RedisNamespace, cfg.DataDir, cfg.RedisPassword); err != nil {
		return nil, err
	}
	n.rawStore = n.store
	if err := upgradeStore(n.store); err != nil {
		n.log.Warn().Err(err).Msg("key store upgrade not done yet; retried every purge round")
	} else {
		n.upgraded.Store(true)
	}
	n.store = auth.NewTimedStore(n.store, n.reg)
	// Every Redis call on the upgrade path (key lookup, admission) and each
	// health check is bounded by the client's read timeout; bbolt lookups
	// keep the keyring's default.
	callTimeout, lookupTimeout := redisReadTimeout, time.Duration(0)
	if n.rdb != nil {
		redis.SetLogger(redisLog{n.log})
		callTimeout = redisCallTimeout(n.rdb)
		lookupTimeout = callTimeout
	}
	n.limiter, err = limiter.New(limiter.Options{
		Config: &cfg.File.Limits, Redis: n.rdb, KeyPrefix: limiterPrefix(cfg.RedisNamespace), RedisTimeout: callTimeout,
		ExpectedNodes: cfg.ClusterNodes, NodeID: cfg.NodeID, Logger: n.log, Registerer: n.reg,
	})
	if err != nil {
		return nil, err
	}
	n.health.init(n.store, n.rdb, n.nc, n.limiter, callTimeout, n.reg)
	// The keyring and the key rechecks read through the guard: while the
	// store is known down they fail at once (cached keys stay admitted).
	n.keyring = auth.NewKeyring(auth.KeyringOptions{Store: n.health.guard, LookupTimeout: lookupTimeout})
	n.meter = newMeter(nil, n.health.guard, n.log)
	n.meter.broker = func() *broker.Server { return n.broker }
	n.usage = auth.NewUsage(auth.UsageOptions{Store: n.store, Logger: &n.log, Collect: n.meter.collect})
	n.meter.usage = n.usage
	n.events = newEventWriter(n.store, cfg.NodeID, cfg.EventQueue, n.log, n.reg)
	n.control = &control{store: n.health.guard, keyring: n.keyring, limiter: n.limiter, timeout: time.Second, log: n.log, meter: n.meter}
	n.console = console.New(console.Options{NodeID: cfg.NodeID, Sidecar: cfg.Sidecar, Gatherer: n.reg, NATS: n.nc, Logger: &n.log,
		Health:     func(now time.Time) console.Health { return healthOf(n.readiness(), now) },
		TopKeys:    n.topKeys,
		Authorized: n.isAdmin})
	if !cfg.Sidecar {
		if err := n.buildBroker(); err != nil {
			return nil, err
		}
	}
	// Changes made through this node's API apply here first, then go to
	// the other nodes over NATS in the background (notify.go).
	n.notifier = newNotifier(n.control, n.nc, n.log, n.reg)
	if n.nc != nil {
		receive := func(ev auth.KeyEvent) { n.notifier.receive(ev, time.Now()) }
		if n.stopWatch, err = auth.SubscribeEvents(n.nc, receive); err != nil {
			return nil, fmt.Errorf("subscribe %s: %w", auth.ControlSubject, err)
		}
	}
	if n.verifier, err = keyapi.ParseAccountVerifier(cfg.AccountVerifier, n.nc); err != nil {
		return nil, err
	}
	n.sidecar, err = keyapi.New(keyapi.Options{
		Store: n.store, Keyring: n.keyring, Usage: n.usage, Notifier: n.notifier,
		LiveUsage: &liveUsage{limiter: n.limiter}, AdminToken: cfg.AdminToken, Logger: &n.log,
		Limiter: n.limiter, ClientIP: n.clientIP, Verifier: n.verifier, AllowedOrigins: cfg.AllowedOrigins,
		MaxExpiryWindow: cfg.MaxExpiryWindow, DefaultExpiry: cfg.File.Keys.DefaultExpiry,
	})
	if err != nil {
		return nil, err
	}
	if err := n.listen(tc); err != nil {
		return nil, err
	}
	return n, nil
}

// openNATS starts the embedded server when no URL is given (not in sidecar
// mode) and connects.
func (n *Node) openNATS() (err error) {
	url := n.cfg.NATSURL
	if url == "" {
		if n.cfg.Sidecar {
			return nil
		}
		eo := fanout.EmbeddedOptions{Listen: n.cfg.EmbeddedNATSListen}
		if on, _ := n.cfg.historyWanted(); on {
			eo.StoreDir = n.cfg.embeddedStoreDir() // JetStream for the history
		}
		n.embedded, err = fanout.StartEmbedded(eo)
		if err != nil {
			return fmt.Errorf("embedded NATS on %s: %w", n.cfg.EmbeddedNATSListen, err)
		}
		url = n.embedded.ClientURL()
		n.log.Info().Str("url", url).Msg("embedded NATS started; publishers connect here")
	}
	n.natsURL = url
	name := "floodgate " + n.cfg.NodeID
	if n.cfg.Sidecar {
		name = "floodgate sidecar " + n.cfg.NodeID
	}
	if n.nc, err = connectNATS(url, name, n.log, natsHooks{asyncError: n.asyncError, changed: n.health.natsChanged}); err != nil {
		return err
	}
	n.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "floodgate", Name: "nats_connected", Help: "1 when the NATS connection is up.",
	}, func() float64 {
		if n.nc.IsConnected() {
			return 1
		}
		return 0
	}))
	return nil
}

// buildBroker builds the hub and the broker behind the node's admitter.
// sessionClosed is the broker's OnClose: connection events, then the
// console's traffic of the ended session.
func (n *Node) sessionClosed(info broker.SessionInfo) {
	n.events.closed(info)
	n.console.Closed(info)
}

// topKeys is the console's source of live per-key counters: every key's
// sessions on this node (none in sidecar mode).
func (n *Node) topKeys() []broker.KeyStat {
	if n.broker == nil {
		return nil
	}
	return n.broker.TopKeys(math.MaxInt)
}

func (n *Node) buildBroker() (err error) {
	if on, _ := n.cfg.historyWanted(); on {
		if n.history, err = n.newHistory(); err != nil {
			return err
		}
	}
	n.hub, err = fanout.NewHub(fanout.Options{Conn: n.nc, Registerer: n.reg, MaxChannels: n.cfg.File.Limits.Node.MaxChannels,
		History: n.history})
	if err != nil {
		return err
	}
	n.hubRef.Store(n.hub)
	if n.history != nil {
		n.startHistory()
	}
	bo := n.cfg.Sessions
	bo.Hub = n.hub
	bo.Sources = n.sources
	bo.Admitter = &admitter{keyring: n.keyring, limiter: n.limiter, usage: n.usage, meter: n.meter, events: n.events, costs: n.costs,
		storeLog: n.log.Sample(&zerolog.BurstSampler{Burst: 1, Period: time.Second}),
		trusted:  n.cfg.TrustedProxies, allowQuery: n.cfg.AllowQueryKey, refusals: n.console}
	bo.OnClose = n.sessionClosed
	bo.Logger = &n.log
	bo.Registerer = n.reg
	bo.NodeID = n.cfg.NodeID
	bo.AllowedOrigins = n.cfg.AllowedOrigins
	bo.NoCompression = n.cfg.DisableCompression
	bo.MeterDelivery = true
	if bo.ExpiryNotice == 0 {
		bo.ExpiryNotice = n.cfg.File.Keys.ExpiryNotice
		if bo.ExpiryNotice == 0 {
			bo.ExpiryNotice = -1 // keys.expiry_notice: 0 is off
		}
	}
	if n.broker, err = broker.New(bo); err != nil {
		return err
	}
	n.control.sessions = n.broker
	return nil
}

// listen binds the listeners and builds the HTTP servers: headers read
// within HeaderTimeout and at most MaxHeaderBytes (431 beyond), idle
// keep-alive connections closed after IdleTimeout. The websocket listener
// serves one request per socket (keep-alives off: every answer but a 101
// carries Connection: close and the socket is closed), and caps per IP
// the sockets that have not sent a whole request (pending.go).
func (n *Node) listen(tc *tls.Config) (err error) {
	if !n.cfg.Sidecar {
		ln, err := net.Listen("tcp", n.cfg.Listen)
		if err != nil {
			return fmt.Errorf("--listen %s: %w", n.cfg.Listen, err)
		}
		n.pending = newPendingListener(ln, n.cfg.File.Limits.Node.MaxPendingPerIP, n.cfg.TrustedProxies, tc != nil, n.reg)
		n.wsLn = n.pending
		mux := n.wsMux()
		n.wsSrv = n.httpServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n.pending.releaseRequest(r)
			mux.ServeHTTP(w, r)
		}), "websocket")
		n.wsSrv.ConnState = n.pending.connState
		n.wsSrv.ConnContext = n.pending.connContext
		n.wsSrv.SetKeepAlivesEnabled(false)
	}
	if n.apiLn, err = net.Listen("tcp", n.cfg.APIListen); err != nil {
		return fmt.Errorf("--api-listen %s: %w", n.cfg.APIListen, err)
	}
	n.apiSrv = n.httpServer(n.apiMux(), "api")
	n.apiSrv.ReadTimeout = 30 * time.Second // the whole request, body included
	if tc != nil {
		n.apiLn = tls.NewListener(n.apiLn, tc.Clone())
		if n.wsLn != nil {
			n.wsLn = tls.NewListener(n.wsLn, tc)
		}
	}
	return nil
}

// httpServer is a server with the node's limits on headers and idle
// connections; its own errors (TLS handshakes, accept retries) go to the
// node's log at debug level.
func (n *Node) httpServer(h http.Handler, name string) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: n.cfg.HeaderTimeout,
		IdleTimeout:       n.cfg.IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          log.New(debugWriter{n.log.With().Str("listener", name).Logger()}, "", 0),
	}
}

// debugWriter turns net/http's log lines into debug log entries.
type debugWriter struct{ log zerolog.Logger }

func (d debugWriter) Write(p []byte) (int, error) {
	d.log.Debug().Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}

// clientIP is the client address of a request on either listener (the
// one rule of identity.go, with the trusted proxies).
func (n *Node) clientIP(r *http.Request) netip.Addr { return clientIP(r, n.cfg.TrustedProxies) }

// upgradeStore converts a store of an older layout (bbolt does it in
// OpenBolt; Redis here, once per cluster). A store that cannot be reached
// at start is upgraded by a later purge round.
func upgradeStore(s auth.Store) error {
	u, ok := s.(interface{ Upgrade(context.Context) error })
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := u.Upgrade(ctx); err != nil {
		return fmt.Errorf("key store upgrade: %w", err)
	}
	return nil
}

// asyncError hands NATS async errors to the hub's metrics.
func (n *Node) asyncError(err error) {
	if h := n.hubRef.Load(); h != nil {
		h.AsyncError(err)
	}
}

// ErrRunning is returned by Run when the node already runs or ran.
var ErrRunning = errors.New("node: Run called twice")

// Run serves and does the node's background work (limiter sync, usage
// flushes, connection events, key rechecks, the demo feed) until ctx ends
// or a listener fails. It then drains the broker for ShutdownGrace
// (RECONNECT notice, close 1001), stops the servers and releases
// everything, and returns the listener's error, if any.
func (n *Node) Run(ctx context.Context) error {
	n.runMu.Lock()
	if n.running {
		n.runMu.Unlock()
		return ErrRunning
	}
	n.running = true
	n.runMu.Unlock()

	bg, stopBG := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	goBG := func(fn func(ctx context.Context)) {
		wg.Add(1)
		go func() { defer wg.Done(); fn(bg) }()
	}
	n.health.check(bg, time.Now()) // /readyz is right from the first request
	goBG(n.health.run)
	goBG(func(ctx context.Context) { _ = n.limiter.Run(ctx) })
	goBG(n.usage.Run)
	goBG(n.events.run)
	goBG(n.notifier.run)
	goBG(n.console.Run)
	if n.history != nil {
		goBG(n.history.Run)
	}
	goBG(n.purge)
	if n.broker != nil {
		goBG(func(ctx context.Context) { n.control.recheck(ctx, n.cfg.RecheckInterval, n.health.eventsMissed) })
	}
	if n.cfg.DemoFeed && !n.cfg.Sidecar {
		if err := n.startDemo(goBG); err != nil {
			n.log.Error().Err(err).Msg("demo feed not started")
		}
	}
	errc := make(chan error, 2)
	serve := func(s *http.Server, ln net.Listener) {
		if err := s.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}
	go serve(n.apiSrv, n.apiLn)
	if n.wsSrv != nil {
		go serve(n.wsSrv, n.wsLn)
	}
	if n.cfg.Sidecar {
		n.log.Info().Str("api_listen", n.APIAddr()).Str("node", n.cfg.NodeID).Bool("admin", n.cfg.AdminToken != "").
			Msg("floodgate sidecar serving")
	} else {
		nats := ""
		if n.nc != nil {
			nats = n.nc.ConnectedUrlRedacted()
		}
		n.log.Info().Str("listen", n.WSAddr()).Str("api_listen", n.APIAddr()).Str("nats", nats).Str("node", n.cfg.NodeID).
			Bool("demo_feed", n.cfg.DemoFeed).Msg("floodgate serving")
	}

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		n.log.Error().Err(err).Msg("listener failed")
	}
	if n.broker != nil && n.cfg.ShutdownGrace > 0 {
		n.log.Info().Dur("grace", n.cfg.ShutdownGrace).Msg("draining")
		n.broker.Drain(n.cfg.ShutdownGrace)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if n.wsSrv != nil {
		_ = n.wsSrv.Shutdown(sctx)
	}
	_ = n.apiSrv.Shutdown(sctx)
	if n.broker != nil {
		_ = n.broker.Close() // sessions end: their events and usage are queued
	}
	stopBG() // final usage flush, event writes, limiter lease return
	wg.Wait()
	n.release()
	n.log.Info().Msg("stopped")
	return err
}

// Close releases a node that is not running (New succeeded but Run was not
// called, or Run returned). To stop a running node, cancel Run's context.
func (n *Node) Close() error {
	n.release()
	return n.closeErr
}

// release closes everything New opened, in reverse order; once.
func (n *Node) release() {
	n.closeOnce.Do(func() {
		if n.stopWatch != nil {
			n.stopWatch()
		}
		if n.broker != nil {
			_ = n.broker.Close()
		}
		if n.hub != nil {
			n.hub.Close()
		}
		if n.limiter != nil {
			_ = n.limiter.Close()
		}
		if n.store != nil {
			n.closeErr = n.store.Close()
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
	})
}

// Reload applies a new config file to the running node: tiers, costs and
// every limit, on live connections, without dropping them, and the
// pending-socket cap; it also re-reads the account verifier's allow list
// (file:PATH). The sources table is not reloaded (it needs a restart):
// per-source costs must name sources of the running table. An invalid
// file or allow list changes nothing.
func (n *Node) Reload(f File) error {
	if _, err := fanout.NewSources(f.Sources); err != nil {
		return err
	}
	if err := f.Limits.Validate(); err != nil {
		return err
	}
	if err := checkCosts(&f.Limits.Costs, n.sources); err != nil {
		return err
	}
	if fv, ok := n.verifier.(*keyapi.FileVerifier); ok {
		if err := fv.Reload(); err != nil {
			return err
		}
	}
	if err := n.limiter.Reload(f.Limits, time.Now()); err != nil {
		return err
	}
	n.costs.p.Store(newCostTable(f.Limits.Costs, n.sources))
	if n.hub != nil {
		n.hub.SetMaxChannels(f.Limits.Node.MaxChannels)
	}
	if n.pending != nil {
		n.pending.setMax(f.Limits.Node.MaxPendingPerIP)
	}
	return nil
}

// WSAddr is the websocket listener's address ("" in sidecar mode).
func (n *Node) WSAddr() string {
	if n.wsLn == nil {
		return ""
	}
	return n.wsLn.Addr().String()
}

// APIAddr is the API listener's address.
func (n *Node) APIAddr() string { return n.apiLn.Addr().String() }

// NATSURL is where publishers reach this node's NATS ("" in sidecar mode
// without NATS).
func (n *Node) NATSURL() string { return n.natsURL }

// Registry is the node's Prometheus registry (what /metrics serves).
func (n *Node) Registry() *prometheus.Registry { return n.reg }

// Broker is the node's websocket server (nil in sidecar mode), for tests
// and tools that inspect live sessions.
func (n *Node) Broker() *broker.Server { return n.broker }

// Limiter is the node's limiter.
func (n *Node) Limiter() *limiter.Limiter { return n.limiter }
