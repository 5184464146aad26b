package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"floodgate/auth"
	"floodgate/fanout"
	"floodgate/fanout/demofeed"

	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
)

// Redis modes (--redis-mode): how --redis-url is read and which go-redis
// client serves it.
const (
	// RedisSingle: one Redis server (redis.ParseURL), the default.
	RedisSingle = "single"
	// RedisCluster: a Redis Cluster; the URL names one or more seed nodes
	// (redis.ParseClusterURL: redis://host1:port1?addr=host2:port2).
	RedisCluster = "cluster"
	// RedisSentinel: a master found through Redis Sentinel; the URL names
	// the sentinels and the master (redis.ParseFailoverURL:
	// redis://sentinel1:26379?addr=sentinel2:26379&master_name=mymaster).
	RedisSentinel = "sentinel"
)

// Defaults of the Redis client; each is overridable as a URL parameter of
// the same name (docs/configuration.md). A timeout must stay positive:
// Floodgate bounds every Redis call.
const (
	redisDialTimeout  = 500 * time.Millisecond // dial_timeout
	redisReadTimeout  = 250 * time.Millisecond // read_timeout; also the bound of each Redis call on the upgrade path
	redisWriteTimeout = 250 * time.Millisecond // write_timeout
	redisPoolTimeout  = 250 * time.Millisecond // pool_timeout
)

// errRedisURL is wrapped by every --redis-url/--redis-mode error.
var errRedisURL = errors.New("--redis-url")

// openStore opens the key store: Redis when redisURL is set (read as
// redisMode says, see newRedisClient; a non-empty password replaces the
// URL's), else bbolt in dataDir. It returns the Redis client too (nil for
// bbolt).
func openStore(redisURL, redisMode, namespace, dataDir, password string) (auth.Store, redis.UniversalClient, error) {
	if redisURL != "" {
		rc, err := parseRedis(redisURL, redisMode)
		if err != nil {
			return nil, nil, err
		}
		rc.setPassword(password)
		rdb := rc.client()
		return auth.NewRedisStore(rdb, auth.RedisOptions{Namespace: namespace}), rdb, nil
	}
	st, err := auth.OpenBolt(dataDir, auth.BoltOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("--data-dir %s: %w", dataDir, err)
	}
	return st, nil, nil
}

// newRedisClient builds the go-redis client of rawURL in mode (see
// parseRedis). It does not connect: the first call does.
func newRedisClient(rawURL, mode string) (redis.UniversalClient, error) {
	rc, err := parseRedis(rawURL, mode)
	if err != nil {
		return nil, err
	}
	return rc.client(), nil
}

// redisConfig is a parsed --redis-url in its --redis-mode: exactly one of
// the options is set.
type redisConfig struct {
	single   *redis.Options
	cluster  *redis.ClusterOptions
	failover *redis.FailoverOptions
}

// setPassword replaces the URL's password with pw, when pw is set
// (--redis-password-file, FLOODGATE_REDIS_PASSWORD).
func (c redisConfig) setPassword(pw string) {
	switch {
	case pw == "":
	case c.cluster != nil:
		c.cluster.Password = pw
	case c.failover != nil:
		c.failover.Password = pw
	default:
		c.single.Password = pw
	}
}

// client builds the go-redis client of c.
func (c redisConfig) client() redis.UniversalClient {
	switch {
	case c.cluster != nil:
		return redis.NewClusterClient(c.cluster)
	case c.failover != nil:
		return redis.NewFailoverClient(c.failover)
	}
	return redis.NewClient(c.single)
}

// parseRedis reads rawURL as mode ("" is RedisSingle) says. Whatever the
// mode, the client will honour context deadlines (ContextTimeoutEnabled),
// dial once per attempt, not retry a failed command unless max_retries
// says so (callers have their own deadlines and fallbacks), and have the
// timeouts above unless the URL sets them. Errors never repeat the URL (it
// may hold a password).
func parseRedis(rawURL, mode string) (redisConfig, error) {
	var c redisConfig
	var s redisSettings
	switch mode {
	case "", RedisSingle:
		opt, err := redis.ParseURL(rawURL)
		if err != nil {
			return c, redisURLError(mode, err)
		}
		c.single = opt
		s = redisSettings{&opt.DialTimeout, &opt.ReadTimeout, &opt.WriteTimeout, &opt.PoolTimeout,
			&opt.MaxRetries, &opt.DialerRetries, &opt.ContextTimeoutEnabled}
	case RedisCluster:
		opt, err := redis.ParseClusterURL(rawURL)
		if err != nil {
			return c, redisURLError(mode, err)
		}
		c.cluster = opt
		s = redisSettings{&opt.DialTimeout, &opt.ReadTimeout, &opt.WriteTimeout, &opt.PoolTimeout,
			&opt.MaxRetries, &opt.DialerRetries, &opt.ContextTimeoutEnabled}
	case RedisSentinel:
		opt, err := redis.ParseFailoverURL(rawURL)
		if err != nil {
			return c, redisURLError(mode, err)
		}
		switch {
		case opt.MasterName == "":
			return c, fmt.Errorf("%w: --redis-mode sentinel needs master_name=<name> in the URL", errRedisURL)
		case opt.RouteByLatency || opt.RouteRandomly || opt.ReplicaOnly:
			return c, fmt.Errorf("%w: route_by_latency, route_randomly and replica_only are not supported: Floodgate writes to the master", errRedisURL)
		}
		c.failover = opt
		s = redisSettings{&opt.DialTimeout, &opt.ReadTimeout, &opt.WriteTimeout, &opt.PoolTimeout,
			&opt.MaxRetries, &opt.DialerRetries, &opt.ContextTimeoutEnabled}
	default:
		return c, fmt.Errorf("--redis-mode %q: want %s, %s or %s", mode, RedisSingle, RedisCluster, RedisSentinel)
	}
	return c, s.apply()
}

// redisURLError is a parse error of --redis-url without the URL itself
// (url.Error repeats it, password included).
func redisURLError(mode string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if mode == "" {
		mode = RedisSingle
	}
	return fmt.Errorf("%w (--redis-mode %s): %w", errRedisURL, mode, err)
}

// redisSettings points at the fields Floodgate sets in each go-redis
// options type.
type redisSettings struct {
	dial, read, write, pool *time.Duration
	retries, dialRetries    *int
	contextTimeouts         *bool
}

// apply fills the defaults in and refuses disabled timeouts (a URL value
// <= 0 parses as -1: no timeout).
func (s redisSettings) apply() error {
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"dial_timeout", s.dial, redisDialTimeout},
		{"read_timeout", s.read, redisReadTimeout},
		{"write_timeout", s.write, redisWriteTimeout},
		{"pool_timeout", s.pool, redisPoolTimeout},
	} {
		switch {
		case *d.v == 0:
			*d.v = d.def
		case *d.v < 0:
			return fmt.Errorf("%w: %s must be positive: every Redis call is bounded", errRedisURL, d.name)
		}
	}
	if *s.retries == 0 { // unset; go-redis would retry 3 times
		*s.retries = -1
	}
	if *s.dialRetries <= 0 {
		*s.dialRetries = 1
	}
	*s.contextTimeouts = true
	return nil
}

// redisCallTimeout is the bound of one Redis call on the upgrade path (key
// lookup, limiter admission) and of the health checks: the client's read
// timeout.
func redisCallTimeout(rdb redis.UniversalClient) time.Duration {
	d := redisReadTimeout
	switch c := rdb.(type) {
	case *redis.Client:
		d = c.Options().ReadTimeout
	case *redis.ClusterClient:
		d = c.Options().ReadTimeout
	}
	if d <= 0 {
		d = redisReadTimeout
	}
	return d
}

// pingRedis checks that Redis answers: PING on the server, or on every
// master of a cluster (one hung shard is an outage for its keys).
func pingRedis(ctx context.Context, rdb redis.UniversalClient) error {
	if c, ok := rdb.(*redis.ClusterClient); ok {
		return c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			return m.Ping(ctx).Err()
		})
	}
	return rdb.Ping(ctx).Err()
}

// limiterPrefix is the limiter's Redis key prefix under namespace. Its
// braces are dropped: the limiter's keys take the identity as their hash
// tag, which a tag in the namespace ("{floodgate}:") would override,
// putting every budget of a Redis Cluster in one slot.
func limiterPrefix(namespace string) string {
	return strings.NewReplacer("{", "", "}", "").Replace(namespace) + "lim:"
}

// redisLog routes go-redis's own log lines (reconnect errors) into our
// structured log instead of plain text on stderr.
type redisLog struct{ log zerolog.Logger }

func (r redisLog) Printf(_ context.Context, format string, v ...any) {
	r.log.Warn().Str("component", "redis").Msgf(format, v...)
}

// NATS liveness: the client pings the server every natsPingInterval and
// declares the connection stale (and reconnects) when natsMaxPingsOut
// pings are unanswered, so a hung server is noticed within
// natsPingInterval*(natsMaxPingsOut+1) = 8 s. natsConnectTimeout bounds
// each (re)connection attempt.
const (
	natsPingInterval   = 2 * time.Second
	natsMaxPingsOut    = 3
	natsConnectTimeout = time.Second
	natsReconnectWait  = 250 * time.Millisecond
)

// natsHooks are the node's callbacks on its NATS connection.
type natsHooks struct {
	asyncError func(error) // NATS async errors (slow consumer, ...)
	changed    func()      // the connection was lost, or is back
}

// connectNATS connects to url, reconnecting forever.
func connectNATS(url, name string, log zerolog.Logger, hooks natsHooks) (*nats.Conn, error) {
	nc, err := nats.Connect(url,
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(natsReconnectWait),
		nats.Timeout(natsConnectTimeout),
		nats.PingInterval(natsPingInterval),
		nats.MaxPingsOutstanding(natsMaxPingsOut),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			hooks.changed()
			if err != nil { // nil: we closed it
				log.Warn().Err(err).Msg("NATS disconnected")
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			hooks.changed()
			log.Info().Str("url", c.ConnectedUrlRedacted()).Msg("NATS reconnected")
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			log.Warn().Err(err).Str("subject", subj).Msg("NATS async error")
			hooks.asyncError(err)
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("connect NATS %s: %w", url, err)
	}
	return nc, nil
}

// tlsConfig loads the certificate and key files; nil when neither is set.
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

// History modes (serve --history): whether the node keeps a JetStream
// history of the market subjects (sequence numbers, snapshots, resume).
const (
	// HistoryAuto: on with the embedded NATS server, off with --nats-url.
	HistoryAuto = "auto"
	// HistoryOn: on; with an external NATS the node is not ready (reason
	// history) while the stream cannot be made or reached.
	HistoryOn = "on"
	// HistoryOff: every channel is live-only; since and snapshot are
	// refused with INVALID_PARAMS.
	HistoryOff = "off"
)

// historyStartTimeout bounds the first attempt to find or make the stream
// in New; after it the history's own check keeps trying.
const historyStartTimeout = 5 * time.Second

// historyWanted reports whether the node runs the history, and checks the
// history section when it does.
func (c *Config) historyWanted() (bool, error) {
	var on bool
	switch c.History {
	case "", HistoryAuto:
		on = c.NATSURL == "" && !c.Sidecar
	case HistoryOn:
		on = !c.Sidecar
	case HistoryOff:
	default:
		return false, fmt.Errorf("--history %q: want %s, %s or %s", c.History, HistoryAuto, HistoryOn, HistoryOff)
	}
	if on && c.File != nil {
		if err := c.File.History.Validate(); err != nil {
			return false, err
		}
	}
	return on, nil
}

// embeddedStoreDir is where the embedded NATS server keeps JetStream (the
// history stream): DataDir/nats.
func (c *Config) embeddedStoreDir() string { return filepath.Join(c.DataDir, "nats") }

// newHistory builds the history of the node's sources on its NATS
// connection; it does no I/O (startHistory makes the stream).
func (n *Node) newHistory() (*fanout.History, error) {
	return fanout.NewHistory(fanout.HistoryOptions{
		Conn: n.nc, Sources: n.sources, Config: n.cfg.File.History, Registerer: n.reg,
		OnChange: func(err error) {
			if err != nil {
				n.log.Error().Err(err).Msg("history unavailable: channels deliver live from the raw subjects, without seq/prev; /readyz says history")
				return
			}
			n.log.Info().Str("stream", n.history.Stream()).Msg("history available again: channels deliver seq/prev")
		},
	})
}

// startHistory finds or makes the stream once; failing that the node runs
// live-only and not ready (reason history) until the history's check
// succeeds.
func (n *Node) startHistory() {
	ctx, cancel := context.WithTimeout(context.Background(), historyStartTimeout)
	defer cancel()
	if err := n.history.Start(ctx); err != nil {
		return // logged by OnChange
	}
	n.log.Info().Str("stream", n.history.Stream()).Int64("epoch", n.history.Epoch()).
		Strs("subjects", n.sources.HistorySubjects()).Msg("history on: JetStream stream ready")
}

// startDemo publishes the synthetic market on its own NATS connection, as
// an external feed would, on a goroutine of goBG until the node stops.
func (n *Node) startDemo(goBG func(func(context.Context))) error {
	pub, err := nats.Connect(n.natsURL, nats.Name("floodgate demo feed"), nats.MaxReconnects(-1))
	if err != nil {
		return err
	}
	feed := demofeed.New(demofeed.Options{Publish: pub.Publish, Prefix: n.sources.Prefix()})
	goBG(func(ctx context.Context) {
		defer pub.Close()
		if err := feed.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			n.log.Error().Err(err).Msg("demo feed stopped")
		}
	})
	n.log.Info().Strs("subjects", feed.Subjects()).Dur("interval", feed.Interval()).Msg("demo feed publishing")
	return nil
}
