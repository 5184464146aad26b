package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"syscall"
	"time"
)

// Scenarios accepted by Run.
const (
	ScenarioBroadcast = "broadcast" // all connections on a few channels
	ScenarioFanout    = "fanout"    // many channels, a few subscribers each
	ScenarioStorm     = "storm"     // connect/disconnect churn beside a steady population
	ScenarioThrottle  = "throttle"  // identities pinging above their credit budget
	ScenarioHot       = "hot"       // a join storm on one streaming channel beside a steady one
	ScenarioResume    = "resume"    // everyone disconnects from a busy channel and resumes with since
)

// Protocols accepted by Config.Protocol.
const (
	ProtocolFloodgate  = "floodgate"  // Floodgate's (Pacifica's) JSON frames
	ProtocolCentrifugo = "centrifugo" // Centrifugo's JSON protocol: connect and subscribe commands
)

// Payload shapes accepted by Config.Payload.
const (
	PayloadPad  = "pad"  // {"ts","seq","pad":"xxx..."}: Size bytes
	PayloadBook = "book" // a book of 20 levels a side with varying numbers, about 1.6 KB
)

// connsPerSourceAddr is how many connections share one local source address
// when Run spreads them over 127.0.0.x: below the ~28,000 ephemeral ports
// Linux offers per (source, destination) pair.
const connsPerSourceAddr = 20_000

// Config describes one run. Field names follow the `floodgate load` flags of
// README.md "Load testing"; the zero value of each field means its default.
type Config struct {
	// Scenario is ScenarioBroadcast, ScenarioFanout, ScenarioStorm or
	// ScenarioThrottle. Broadcast and fanout subscribe connection i to
	// channel i mod Channels and differ only in the usual Channels; storm
	// adds churning connections beside such a steady population (see
	// Hold); throttle pings instead of subscribing (see Identities).
	// (--scenario) Defaults to "broadcast".
	Scenario string

	// URL is the broker's websocket URL, e.g. "ws://127.0.0.1:8080/ws".
	// (--url) Required.
	URL string

	// Protocol is how clients speak to the broker: ProtocolFloodgate, or
	// ProtocolCentrifugo for a Centrifugo server in NATS raw mode (the
	// channel is the NATS subject; each connection sends a connect and a
	// subscribe command in one frame). (--protocol) Defaults to
	// "floodgate".
	Protocol string

	// SteadyConns is the hot scenario's steady population: connections on
	// a second channel whose delivery latency is measured before and
	// during the join storm. (--steady-conns) Defaults to 100.
	SteadyConns int

	// DeflateShare is the share of connections (0 to 1) that offer
	// permessage-deflate. (--deflate-share) Defaults to 0.
	DeflateShare float64

	// Payload is PayloadPad or PayloadBook. (--payload) Defaults to "pad".
	Payload string

	// NATSURL is where the publisher connects. (--nats-url) Required,
	// except for the throttle scenario, which publishes nothing.
	NATSURL string

	// Conns is the number of websocket connections. In the storm scenario
	// it is the total at any moment: ⌈Ramp × Hold⌉ of them churn and the
	// rest are the steady population. In the throttle scenario connection
	// i belongs to identity i mod Identities. (--conns) Defaults to 1000,
	// or to Identities for throttle.
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

	// Ramp is the number of new connections per second while connecting;
	// in the storm scenario, the churn: connections opened (and, Hold
	// later, closed) per second while publishing, the steady population
	// connecting as fast as DialConcurrency allows. (--ramp) Defaults to
	// 0: as fast as DialConcurrency allows; 100 per second for storm.
	Ramp float64

	// Hold is how long a churned connection of the storm scenario stays
	// subscribed (receiving) after its ack before it closes. (--hold)
	// Defaults to 1 s.
	Hold time.Duration

	// Away is how long the resume scenario's clients stay disconnected
	// before they resume with since. (--away) Defaults to 2 s.
	Away time.Duration

	// Snapshot makes the hot scenario's joiners subscribe with
	// "snapshot":true (a broker with history) and report the time from the
	// ack to the snapshot frame. (--snapshot) Defaults to false.
	Snapshot bool

	// Identities is the number of throttle identities: identity k uses
	// APIKeys[k], or, anonymous, the source address SourceAddrs[k] (an
	// anonymous identity is its IP). (--identities) Defaults to
	// len(APIKeys), else len(SourceAddrs), else 1. Several anonymous
	// identities need several source addresses: against a loopback broker
	// they default to 127.0.0.1, 127.0.0.2, ...; otherwise give
	// SourceAddrs or keys.
	Identities int

	// SendRate is the pings per second each throttle connection sends at
	// most (one in flight at a time; after a refusal it pauses for
	// RefusalPause). (--send-rate) Defaults to 0: 1.5 × the connection's
	// share of its identity's configured rate, at least 1 and at most 1000
	// per second.
	SendRate float64

	// ExpectRate is the configured credit rate of every throttle identity
	// in credits per minute, compared with the admitted rate (a ping costs
	// one credit). (--expect-rate) Defaults to 0: the "q" of the broker's
	// replies per CreditWindow.
	ExpectRate float64

	// CreditWindow is the broker's credit window, used with "q" when
	// ExpectRate is 0. (--credit-window) Defaults to 60 s.
	CreditWindow time.Duration

	// TolerancePct is how far, in percent of the configured rate, an
	// identity's admitted rate may be from it. (--tolerance) Defaults to 5.
	TolerancePct float64

	// RefusalPause is how long a throttle connection waits after a refused
	// ping (at least the reply's retry_after_ms). The broker closes a
	// connection with more than 10 refusals in 10 s; 1.2 s keeps each
	// connection at 9. (--refusal-pause) Defaults to 1.2 s.
	RefusalPause time.Duration

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
	if c.Scenario == ScenarioThrottle {
		return c.throttleDefaults()
	}
	if c.Scenario == ScenarioHot {
		return c.hotDefaults()
	}
	if c.Scenario == ScenarioResume {
		return c.resumeDefaults()
	}
	c.publishingDefaults()
	if c.Scenario == ScenarioStorm {
		if c.Ramp <= 0 {
			c.Ramp = 100
		}
		if c.Hold <= 0 {
			c.Hold = time.Second
		}
	}
	if c.Channels <= 0 {
		c.Channels = 1
	}
	if c.Rate <= 0 {
		c.Rate = 100
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	c.Warmup = max(c.Warmup, 0)
	c.commonDefaults()
	switch {
	case c.Scenario != ScenarioBroadcast && c.Scenario != ScenarioFanout && c.Scenario != ScenarioStorm:
		return c, fmt.Errorf("%w: unknown scenario %q", ErrConfig, c.Scenario)
	case c.Protocol != ProtocolFloodgate && c.Protocol != ProtocolCentrifugo:
		return c, fmt.Errorf("%w: unknown protocol %q", ErrConfig, c.Protocol)
	case c.Payload != PayloadPad && c.Payload != PayloadBook:
		return c, fmt.Errorf("%w: unknown payload %q", ErrConfig, c.Payload)
	case c.DeflateShare < 0 || c.DeflateShare > 1:
		return c, fmt.Errorf("%w: deflate share %g outside 0..1", ErrConfig, c.DeflateShare)
	}
	if err := c.checkPublishing(); err != nil {
		return c, err
	}
	switch {
	case c.Scenario == ScenarioStorm && c.baseConns() < 1:
		return c, fmt.Errorf("%w: storm churns ⌈ramp × hold⌉ = %d of the %d connections: none left to stay",
			ErrConfig, c.churnConns(), c.Conns)
	case c.Channels > c.baseConns():
		return c, fmt.Errorf("%w: %d channels for %d steady connections", ErrConfig, c.Channels, c.baseConns())
	}
	if _, err := url.Parse(c.URL); err != nil {
		return c, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if len(c.SourceAddrs) == 0 {
		// A churned connection's port stays in TIME_WAIT for a minute.
		c.SourceAddrs = autoSourceAddrs(c.URL, c.Conns+int(c.Ramp*60)*min(c.churnConns(), 1))
	}
	return c, nil
}

// publishingDefaults fills in the defaults every publishing scenario (all
// but throttle) shares: 1000 connections, 200-byte payloads.
func (c *Config) publishingDefaults() {
	if c.Conns <= 0 {
		c.Conns = 1000
	}
	if c.Size <= 0 {
		c.Size = 200
	}
}

// checkPublishing checks what every publishing scenario (all but
// throttle) needs: a broker URL, a NATS URL and a payload of at least
// MinPayloadSize bytes.
func (c Config) checkPublishing() error {
	switch {
	case c.URL == "":
		return fmt.Errorf("%w: broker URL required", ErrConfig)
	case c.NATSURL == "":
		return fmt.Errorf("%w: NATS URL required", ErrConfig)
	case c.Size < MinPayloadSize:
		return fmt.Errorf("%w: size %d below the minimum %d", ErrConfig, c.Size, MinPayloadSize)
	}
	return nil
}

// churnConns is how many of Conns churn in the storm scenario: ⌈Ramp × Hold⌉.
func (c Config) churnConns() int {
	if c.Scenario != ScenarioStorm {
		return 0
	}
	return int(math.Ceil(c.Ramp * c.Hold.Seconds()))
}

// baseConns is the steady population: every connection but the churning ones.
func (c Config) baseConns() int { return c.Conns - c.churnConns() }

// commonDefaults fills in the defaults every scenario shares.
func (c *Config) commonDefaults() {
	if c.Protocol == "" {
		c.Protocol = ProtocolFloodgate
	}
	if c.Payload == "" {
		c.Payload = PayloadPad
	}
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
}

// throttleDefaults fills in and checks a throttle config.
func (c Config) throttleDefaults() (Config, error) {
	c.commonDefaults()
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	c.Warmup = max(c.Warmup, 0)
	if c.CreditWindow <= 0 {
		c.CreditWindow = time.Minute
	}
	if c.TolerancePct <= 0 {
		c.TolerancePct = 5
	}
	if c.RefusalPause <= 0 {
		c.RefusalPause = 1200 * time.Millisecond
	}
	if c.Identities <= 0 {
		c.Identities = max(len(c.APIKeys), len(c.SourceAddrs), 1)
	}
	if c.Conns <= 0 {
		c.Conns = c.Identities
	}
	if c.URL == "" {
		return c, fmt.Errorf("%w: broker URL required", ErrConfig)
	}
	if _, err := url.Parse(c.URL); err != nil {
		return c, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if len(c.APIKeys) == 0 && c.Identities > 1 && len(c.SourceAddrs) == 0 {
		c.SourceAddrs = loopbackAddrs(c.URL, c.Identities)
	}
	switch {
	case c.Conns < c.Identities:
		return c, fmt.Errorf("%w: %d connections for %d identities", ErrConfig, c.Conns, c.Identities)
	case len(c.APIKeys) > 0 && len(c.APIKeys) < c.Identities:
		return c, fmt.Errorf("%w: %d identities need %d API keys, have %d", ErrConfig, c.Identities, c.Identities, len(c.APIKeys))
	case len(c.APIKeys) == 0 && c.Identities > 1 && len(c.SourceAddrs) < c.Identities:
		return c, fmt.Errorf("%w: %d anonymous identities need API keys or %d source addresses (an anonymous identity is its IP)",
			ErrConfig, c.Identities, c.Identities)
	case c.SendRate < 0 || c.ExpectRate < 0:
		return c, fmt.Errorf("%w: negative send or expected rate", ErrConfig)
	}
	return c, nil
}

// loopbackAddrs returns 127.0.0.1 ... 127.0.0.n when rawURL is a loopback
// IPv4 broker (Linux routes all of 127/8 to lo), else nil.
func loopbackAddrs(rawURL string, n int) []netip.Addr {
	u, err := url.Parse(rawURL)
	if err != nil || n > 254 {
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
	out := make([]netip.Addr, n)
	for i := range out {
		out[i] = netip.AddrFrom4([4]byte{127, 0, 0, byte(1 + i)})
	}
	return out
}

// autoSourceAddrs spreads connections to a loopback broker over 127.0.0.x
// when there are more than one address's share of ports.
func autoSourceAddrs(rawURL string, conns int) []netip.Addr {
	if conns <= connsPerSourceAddr {
		return nil
	}
	return loopbackAddrs(rawURL, min((conns+connsPerSourceAddr-1)/connsPerSourceAddr, 254))
}

// apiKey is the key of connection i: APIKeys[i mod len], or "" without keys.
func (c Config) apiKey(i int) string {
	if len(c.APIKeys) == 0 {
		return ""
	}
	return c.APIKeys[i%len(c.APIKeys)]
}

// channelSymbol is the symbol param of channel k.
func channelSymbol(k int) string { return "LOAD" + strconv.Itoa(k) }

// channelSubject is the NATS subject of channel k.
func (c Config) channelSubject(k int) string {
	return c.Prefix + "." + c.Source + "." + channelSymbol(k)
}

// subscribeFrame is the client frame that subscribes to channel k (for
// Centrifugo: the connect command, then the subscribe command to the
// channel named like the subject, one per line).
func (c Config) subscribeFrame(k int) []byte {
	if c.Protocol == ProtocolCentrifugo {
		return []byte(`{"id":1,"connect":{}}` + "\n" + `{"id":2,"subscribe":{"channel":"` + c.channelSubject(k) + `"}}`)
	}
	return []byte(`{"method":"subscribe","params":{"source":` + strconv.Quote(c.Source) +
		`,"symbol":"` + channelSymbol(k) + `"}}`)
}

// unsubscribeFrame is the client frame that leaves channel k.
func (c Config) unsubscribeFrame(k int) []byte {
	if c.Protocol == ProtocolCentrifugo {
		return []byte(`{"id":3,"unsubscribe":{"channel":"` + c.channelSubject(k) + `"}}`)
	}
	return []byte(`{"method":"unsubscribe","params":{"source":` + strconv.Quote(c.Source) +
		`,"symbol":"` + channelSymbol(k) + `"}}`)
}

// deflate reports whether connection i offers permessage-deflate: the
// first DeflateShare of every 100.
func (c Config) deflate(i int) bool { return float64(i%100) < c.DeflateShare*100 }

var (
	// ErrUnsupportedScheme is returned by Dial for a URL that is not ws:// or wss://.
	ErrUnsupportedScheme = errors.New("loadtest: url scheme must be ws or wss")
	// ErrHandshake is matched by every *HandshakeError.
	ErrHandshake = errors.New("loadtest: websocket upgrade refused")
	// ErrProtocol is returned by ReadMessage for a frame that breaks RFC 6455;
	// the connection has been closed with 1002.
	ErrProtocol = errors.New("loadtest: websocket protocol error")
	// ErrMessageTooLarge is returned by ReadMessage for a message above
	// DialOptions.MaxMessageSize.
	ErrMessageTooLarge = errors.New("loadtest: message too large")
	// ErrConfig is wrapped by Run for an unusable Config.
	ErrConfig = errors.New("loadtest: bad config")
	// ErrThreshold is wrapped by Report.Gate when a limit is exceeded.
	ErrThreshold = errors.New("loadtest: threshold exceeded")
)

// FailReason maps a Dial, subscribe or ReadMessage error to a short, stable
// label for the report: "http 429 TOO_MANY_CONNECTIONS", "close 1013",
// "timeout", "connection refused", "connection reset", "address not
// available", "too many open files", "eof", "protocol error",
// "message too large", "handshake", "closed", "canceled", or "error".
func FailReason(err error) string {
	var he *HandshakeError
	var ce *CloseError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &ce):
		return "close " + strconv.Itoa(ce.Code)
	case errors.As(err, &he):
		if he.Status == 0 || he.Status == 101 {
			return "handshake"
		}
		if he.Code != "" {
			return "http " + strconv.Itoa(he.Status) + " " + he.Code
		}
		return "http " + strconv.Itoa(he.Status)
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, syscall.ETIMEDOUT):
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "connection reset"
	case errors.Is(err, syscall.EADDRNOTAVAIL), errors.Is(err, syscall.EADDRINUSE):
		return "address not available"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "too many open files"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case errors.Is(err, ErrProtocol):
		return "protocol error"
	case errors.Is(err, ErrMessageTooLarge):
		return "message too large"
	case errors.Is(err, net.ErrClosed):
		return "closed"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	return "error"
}
