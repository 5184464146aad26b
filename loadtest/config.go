package loadtest

import (
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"strconv"
	"time"
)

// Scenarios accepted by Run.
const (
	ScenarioBroadcast = "broadcast" // all connections on a few channels
	ScenarioFanout    = "fanout"    // many channels, a few subscribers each
)

// connsPerSourceAddr is how many connections share one local source address
// when Run spreads them over 127.0.0.x: below the ~28,000 ephemeral ports
// Linux offers per (source, destination) pair.
const connsPerSourceAddr = 20_000

// Config describes one run. Field names follow the `floodgate load` flags of
// loadtest.md; the zero value of each field means its default.
type Config struct {
	// Scenario is ScenarioBroadcast or ScenarioFanout; both subscribe
	// connection i to channel i mod Channels and differ only in the usual
	// Channels. (--scenario) Defaults to "broadcast".
	Scenario string

	// URL is the broker's websocket URL, e.g. "ws://127.0.0.1:8080/ws".
	// (--url) Required.
	URL string

	// NATSURL is where the publisher connects. (--nats-url) Required.
	NATSURL string

	// Conns is the number of websocket connections. (--conns) Defaults to
	// 1000.
	Conns int

	// Channels is the number of channels the connections spread over.
	// (--channels) Defaults to 1.
	Channels int

	// Rate is the number of messages published per second, over all
	// channels. Deliveries per second are Rate × Conns / Channels. (--rate)
	// Defaults to 100 per second.
	Rate float64

	// Size is the payload size in bytes, at least MinPayloadSize. (--size)
	// Defaults to 200 bytes.
	Size int

	// Duration is the measured publishing time. (--duration) Defaults to 10 s.
	Duration time.Duration

	// Warmup is publishing time before the measurement: its messages are
	// delivered but neither counted nor timed. (--warmup) Defaults to 0.
	Warmup time.Duration

	// Ramp is the number of new connections per second while connecting.
	// (--ramp) Defaults to 0: as fast as DialConcurrency allows.
	Ramp float64

	// APIKeys are sent as PF-API-KEY, key i mod len to connection i.
	// (--api-key, --keys-file) Defaults to none: anonymous clients.
	APIKeys []string

	// MetricsURL is the broker's Prometheus /metrics, sampled for RSS and
	// CPU. (--metrics-url) Defaults to none: no broker figures.
	MetricsURL string

	// Prefix is the broker's NATS subject prefix. Defaults to "md".
	Prefix string

	// Source is the protocol source every channel uses; channel k is
	// {"source":Source,"symbol":"LOAD<k>"} on subject
	// <Prefix>.<Source>.LOAD<k>. Defaults to "trades".
	Source string

	// SourceAddrs are local addresses to dial from, connection i using
	// SourceAddrs[i mod len]. Defaults to none, except against a loopback
	// broker with more than 20,000 connections: 127.0.0.1, 127.0.0.2, ...,
	// one per 20,000 connections.
	SourceAddrs []netip.Addr

	// ReadBufferSize is each connection's read buffer in bytes. Defaults to
	// 32 KiB.
	ReadBufferSize int

	// DialConcurrency bounds the dials and handshakes in flight. Defaults to
	// 64.
	DialConcurrency int

	// ConnectTimeout bounds one connection's dial, handshake and subscribe
	// ack. Defaults to 10 s.
	ConnectTimeout time.Duration

	// Drain is how long Run waits after publishing for deliveries still in
	// flight; it stops waiting as soon as every expected delivery arrived.
	// Defaults to 5 s.
	Drain time.Duration

	// Progress receives a progress line every ProgressInterval. Defaults to
	// nil: no progress lines.
	Progress io.Writer

	// ProgressInterval is the time between progress lines. Defaults to 1 s.
	ProgressInterval time.Duration
}

// withDefaults fills in defaults and checks the config.
func (c Config) withDefaults() (Config, error) {
	if c.Scenario == "" {
		c.Scenario = ScenarioBroadcast
	}
	if c.Conns <= 0 {
		c.Conns = 1000
	}
	if c.Channels <= 0 {
		c.Channels = 1
	}
	if c.Rate <= 0 {
		c.Rate = 100
	}
	if c.Size <= 0 {
		c.Size = 200
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	c.Warmup = max(c.Warmup, 0)
	if c.Prefix == "" {
		c.Prefix = "md"
	}
	if c.Source == "" {
		c.Source = "trades"
	}
	if c.ReadBufferSize <= 0 {
		c.ReadBufferSize = 32 << 10
	}
	if c.DialConcurrency <= 0 {
		c.DialConcurrency = 64
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 10 * time.Second
	}
	if c.Drain <= 0 {
		c.Drain = 5 * time.Second
	}
	if c.ProgressInterval <= 0 {
		c.ProgressInterval = time.Second
	}
	switch {
	case c.Scenario != ScenarioBroadcast && c.Scenario != ScenarioFanout:
		return c, fmt.Errorf("%w: scenario %q not supported yet", ErrConfig, c.Scenario)
	case c.URL == "":
		return c, fmt.Errorf("%w: broker URL required", ErrConfig)
	case c.NATSURL == "":
		return c, fmt.Errorf("%w: NATS URL required", ErrConfig)
	case c.Size < MinPayloadSize:
		return c, fmt.Errorf("%w: size %d below the minimum %d", ErrConfig, c.Size, MinPayloadSize)
	case c.Channels > c.Conns:
		return c, fmt.Errorf("%w: %d channels for %d connections", ErrConfig, c.Channels, c.Conns)
	}
	if _, err := url.Parse(c.URL); err != nil {
		return c, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if len(c.SourceAddrs) == 0 {
		c.SourceAddrs = autoSourceAddrs(c.URL, c.Conns)
	}
	return c, nil
}

// autoSourceAddrs spreads connections to a loopback broker over 127.0.0.x
// when there are more than one address's share of ports.
func autoSourceAddrs(rawURL string, conns int) []netip.Addr {
	if conns <= connsPerSourceAddr {
		return nil
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil
	}
	host := u.Hostname()
	ip, err := netip.ParseAddr(host)
	if host == "localhost" {
		ip, err = netip.AddrFrom4([4]byte{127, 0, 0, 1}), nil
	}
	if err != nil || !ip.Is4() || !ip.IsLoopback() {
		return nil
	}
	n := min((conns+connsPerSourceAddr-1)/connsPerSourceAddr, 254)
	out := make([]netip.Addr, n)
	for i := range out {
		out[i] = netip.AddrFrom4([4]byte{127, 0, 0, byte(1 + i)})
	}
	return out
}

// channelSymbol is the symbol param of channel k.
func channelSymbol(k int) string { return "LOAD" + strconv.Itoa(k) }

// channelSubject is the NATS subject of channel k.
func (c Config) channelSubject(k int) string {
	return c.Prefix + "." + c.Source + "." + channelSymbol(k)
}

// subscribeFrame is the client frame that subscribes to channel k.
func (c Config) subscribeFrame(k int) []byte {
	return []byte(`{"method":"subscribe","params":{"source":` + strconv.Quote(c.Source) +
		`,"symbol":"` + channelSymbol(k) + `"}}`)
}
