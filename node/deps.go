package node

import (
	"context"
	"crypto/tls"
	"fmt"
	"time"

	"floodgate/auth"

	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
)

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

// redisLog routes go-redis's own log lines (reconnect errors) into our
// structured log instead of plain text on stderr.
type redisLog struct{ log zerolog.Logger }

func (r redisLog) Printf(_ context.Context, format string, v ...any) {
	r.log.Warn().Str("component", "redis").Msgf(format, v...)
}

// connectNATS connects to url, reconnecting forever.
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
