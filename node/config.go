package node

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	"floodgate/auth"
	"floodgate/broker"
	"floodgate/fanout"
	"floodgate/keyapi"
	"floodgate/limiter"

	"github.com/rs/zerolog"
	"go.yaml.in/yaml/v3"
)

// Config is everything one node needs; the binary builds it from flags,
// FLOODGATE_* variables and the config file, tests build it directly.
// Zero values mean the documented defaults.
type Config struct {
	// Sidecar runs the REST API alone (account endpoints, key status,
	// operator API, health and metrics) without the broker, the hub and the
	// embedded NATS server. Defaults to false: the whole node.
	Sidecar bool

	// Listen is the websocket listener (GET /ws). Defaults to ":8080".
	Listen string
	// APIListen is the API listener (REST, /healthz, /readyz, /metrics).
	// Defaults to ":8081".
	APIListen string
	// TLSCertFile and TLSKeyFile, both set, serve TLS on both listeners.
	// Defaults to plain TCP.
	TLSCertFile, TLSKeyFile string

	// NATSURL is the NATS server(s), comma separated. Defaults to "": an
	// embedded server on EmbeddedNATSListen (none in sidecar mode, which
	// then publishes no control events).
	NATSURL string
	// EmbeddedNATSListen is where the embedded server listens for
	// publishers. Defaults to "127.0.0.1:4223"; port 0 picks a free one.
	EmbeddedNATSListen string
	// History is HistoryAuto, HistoryOn or HistoryOff (serve --history):
	// sequence numbers, snapshots and resume from a JetStream stream
	// (history.go). Defaults to HistoryAuto: on with the embedded NATS
	// server (JetStream in DataDir), off with NATSURL.
	History string

	// RedisURL is the Redis holding keys and cluster-wide budgets.
	// Defaults to "": keys in bbolt under DataDir, budgets local.
	RedisURL string
	// RedisMode says how RedisURL is read: RedisSingle, RedisCluster or
	// RedisSentinel (docs/configuration.md). Defaults to RedisSingle.
	RedisMode string
	// RedisNamespace prefixes every Redis key. Defaults to "floodgate:".
	// No braces (auth.ValidNamespace): the stores and the limiter put their
	// own Redis Cluster hash tags in every key.
	RedisNamespace string
	// RedisPassword, when set, replaces the password of RedisURL, so that
	// it need not be on a command line (--redis-password-file,
	// FLOODGATE_REDIS_PASSWORD). Defaults to the URL's.
	RedisPassword string
	// DataDir holds the bbolt key store when RedisURL is empty. Defaults
	// to "./data".
	DataDir string
	// ClusterNodes is the expected number of nodes sharing RedisURL: each
	// enforces 1/N of every budget while Redis is unreachable. Defaults
	// to 1.
	ClusterNodes int

	// AdminToken enables the operator API (/admin/v1) and /debug/pprof;
	// at least MinAdminTokenLen characters. Defaults to "": both off (404).
	AdminToken string
	// NodeID names the node in logs, events and cluster counts. Defaults
	// to the host name.
	NodeID string
	// TrustedProxies are the CIDRs whose X-Forwarded-For is believed.
	// Defaults to none.
	TrustedProxies []netip.Prefix
	// AllowedOrigins are the host patterns of browser origins allowed to
	// upgrade cross-origin. Defaults to none.
	AllowedOrigins []string
	// AllowQueryKey accepts the key as ?api_key=. Defaults to false.
	AllowQueryKey bool

	// IdleTimeout closes a keep-alive connection of the API listener idle
	// this long. (The websocket listener answers one request per socket
	// and closes it, unless it upgrades.) Defaults to 30s.
	IdleTimeout time.Duration
	// HeaderTimeout bounds reading a request's headers (and the TLS
	// handshake) on both listeners; at most 10s. Defaults to 10s.
	HeaderTimeout time.Duration

	// AccountVerifier decides which wallets may create keys on the
	// account endpoint: "open" (anyone), "file:PATH" (one address per
	// line, re-read on Reload) or "nats:SUBJECT" (request/reply, 1 s).
	// Defaults to "open".
	AccountVerifier string
	// MaxExpiryWindow is the longest expiry_window of a signed request.
	// Defaults to 5 minutes.
	MaxExpiryWindow time.Duration
	// RevokedRetention is how long a revoked key (and its events) is kept
	// before the purge deletes it. Defaults to 30 days.
	RevokedRetention time.Duration
	// PurgeInterval is how often the node purges revoked keys past the
	// retention and expired replay signatures. Defaults to 1 minute.
	PurgeInterval time.Duration
	// DemoFeed publishes the synthetic market. Defaults to false.
	DemoFeed bool
	// DisableCompression turns permessage-deflate off (serve
	// --compression=false). Defaults to false: offered to every client,
	// without context takeover, each market frame compressed once per
	// node.
	DisableCompression bool
	// ShutdownGrace is how long clients get between the RECONNECT notice
	// and the close when Run's context ends. Defaults to 10s; negative
	// means none.
	ShutdownGrace time.Duration

	// File is the config file's content (sources, limits). Defaults to
	// DefaultFile().
	File *File

	// Sessions tunes the broker's sessions (timers, queue bounds, write
	// buffer, top-keys metrics). Its Hub, Sources, Admitter, OnClose,
	// Logger, Registerer, NodeID and AllowedOrigins are set by the node.
	// Defaults to the broker's defaults.
	Sessions broker.Options
	// RecheckInterval is how often the keys with live sessions are re-read
	// from the store (closing keys revoked while control events were
	// missed). Defaults to 30s.
	RecheckInterval time.Duration
	// EventQueue bounds the key connection events waiting for the store.
	// Defaults to 4096.
	EventQueue int
	// Logger receives the node's logs. Defaults to a disabled logger.
	Logger *zerolog.Logger
}

// File is the YAML config file (--config): one section per concern.
// Unknown fields are errors naming their path.
type File struct {
	// Sources is the sources table (docs/configuration.md).
	Sources fanout.SourcesConfig `yaml:"sources"`
	// Limits are the tiers, costs and throttling numbers.
	Limits limiter.Config `yaml:"limits"`
	// History is the JetStream stream of the history and the bounds of a
	// replay (docs/configuration.md).
	History fanout.HistoryConfig `yaml:"history"`
	// Keys are the defaults of new keys and the expiry notice.
	Keys KeysConfig `yaml:"keys"`
}

// KeysConfig is the keys section of the config file.
type KeysConfig struct {
	// DefaultExpiry sets expires_at = now + DefaultExpiry on new keys
	// (operator and account-created) that do not name one. Defaults to 0:
	// keys never expire.
	DefaultExpiry time.Duration `yaml:"default_expiry"`
	// ExpiryNotice: connections of a key expiring within it get the
	// KEY_EXPIRING notice on connect (and one hour before the expiry).
	// Defaults to 168h; 0 turns the notices off.
	ExpiryNotice time.Duration `yaml:"expiry_notice"`
}

// DefaultFile is the configuration without a file.
func DefaultFile() File {
	return File{Limits: limiter.DefaultConfig(), History: fanout.DefaultHistoryConfig(), Keys: KeysConfig{ExpiryNotice: 168 * time.Hour}}
}

// LoadFile reads and validates the config file at path; "" yields
// DefaultFile. Fields left out keep their defaults. Errors name the field
// and the bad value.
func LoadFile(path string) (File, error) {
	f := DefaultFile()
	if path == "" {
		return f, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return f, fmt.Errorf("config: %w", err)
	}
	if f, err = ParseFile(data); err != nil {
		return f, fmt.Errorf("config %s: %w", path, err)
	}
	return f, nil
}

// ParseFile decodes and validates a config file's bytes.
func ParseFile(data []byte) (File, error) {
	f := DefaultFile()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return f, err
	}
	sources, err := fanout.NewSources(f.Sources)
	if err != nil {
		return f, err
	}
	if err := f.Limits.Validate(); err != nil {
		return f, err
	}
	if err := checkCosts(&f.Limits.Costs, sources); err != nil {
		return f, err
	}
	if err := f.History.Validate(); err != nil {
		return f, err
	}
	if f.Keys.DefaultExpiry < 0 || f.Keys.ExpiryNotice < 0 {
		return f, errors.New("keys.default_expiry and keys.expiry_notice must not be negative")
	}
	return f, nil
}

func (c *Config) setDefaults() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.Listen, ":8080")
	def(&c.APIListen, ":8081")
	def(&c.EmbeddedNATSListen, "127.0.0.1:4223")
	def(&c.RedisNamespace, "floodgate:")
	def(&c.DataDir, "./data")
	if c.NodeID == "" {
		c.NodeID, _ = os.Hostname()
	}
	if c.ClusterNodes <= 0 {
		c.ClusterNodes = 1
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = 10 * time.Second
	}
	if c.RecheckInterval <= 0 {
		c.RecheckInterval = 30 * time.Second
	}
	if c.EventQueue <= 0 {
		c.EventQueue = 4096
	}
	if c.File == nil {
		f := DefaultFile()
		c.File = &f
	}
	if c.Logger == nil {
		l := zerolog.Nop()
		c.Logger = &l
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 30 * time.Second
	}
	if c.HeaderTimeout <= 0 {
		c.HeaderTimeout = MaxHeaderTimeout
	}
	def(&c.AccountVerifier, "open")
	if c.MaxExpiryWindow <= 0 {
		c.MaxExpiryWindow = keyapi.DefaultMaxExpiryWindow
	}
	if c.RevokedRetention <= 0 {
		c.RevokedRetention = 30 * 24 * time.Hour
	}
	if c.PurgeInterval <= 0 {
		c.PurgeInterval = time.Minute
	}
}

// Bounds of Config checked by Check and New.
const (
	// MinAdminTokenLen is the shortest admin token accepted.
	MinAdminTokenLen = 16
	// MaxHeaderTimeout is the longest HeaderTimeout.
	MaxHeaderTimeout = 10 * time.Second
	// MaxHeaderBytes bounds a request's headers on both listeners; net/http
	// allows 4 KiB more, so 431 comes above about 20 KiB.
	MaxHeaderBytes = 16 << 10
)

// validate checks the numbers and strings of a defaulted config.
func (c *Config) validate() error {
	if c.AdminToken != "" && len(c.AdminToken) < MinAdminTokenLen {
		return fmt.Errorf("--admin-token: %d characters; at least %d (generate one with: openssl rand -hex 24)", len(c.AdminToken), MinAdminTokenLen)
	}
	if err := auth.ValidNamespace(c.RedisNamespace); err != nil {
		return fmt.Errorf("--redis-namespace: %w", err)
	}
	if c.HeaderTimeout > MaxHeaderTimeout {
		return fmt.Errorf("header timeout %v: at most %v", c.HeaderTimeout, MaxHeaderTimeout)
	}
	if c.MaxExpiryWindow < time.Second {
		return fmt.Errorf("--max-expiry-window %v: at least 1s", c.MaxExpiryWindow)
	}
	kind, arg, _ := strings.Cut(c.AccountVerifier, ":")
	if !(c.AccountVerifier == "open" || (kind == "file" || kind == "nats") && arg != "") {
		return fmt.Errorf("--account-verifier %q: want open, file:PATH or nats:SUBJECT", c.AccountVerifier)
	}
	if kind == "nats" && c.Sidecar && c.NATSURL == "" {
		return fmt.Errorf("--account-verifier %s: needs --nats-url", c.AccountVerifier)
	}
	return nil
}

// Check validates cfg as New would, without opening or starting anything:
// the config file, the TLS files, the numbers. The error names the field.
func Check(cfg Config) error {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return err
	}
	if kind, path, _ := strings.Cut(cfg.AccountVerifier, ":"); kind == "file" {
		if _, err := keyapi.NewFileVerifier(path); err != nil {
			return err
		}
	}
	sources, err := fanout.NewSources(cfg.File.Sources)
	if err != nil {
		return err
	}
	if err := cfg.File.Limits.Validate(); err != nil {
		return err
	}
	if err := checkCosts(&cfg.File.Limits.Costs, sources); err != nil {
		return err
	}
	if _, err := cfg.historyWanted(); err != nil {
		return err
	}
	if _, err := tlsConfig(cfg.TLSCertFile, cfg.TLSKeyFile); err != nil {
		return err
	}
	if cfg.RedisURL != "" {
		if _, err := parseRedis(cfg.RedisURL, cfg.RedisMode); err != nil {
			return err
		}
	}
	return nil
}
