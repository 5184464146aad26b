package broker

import (
	"context"
	"net/http"
	"net/netip"
	"time"

	"floodgate/fanout"
	"floodgate/internal/proto"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// IdentityKind tells how a connection was identified.
type IdentityKind uint8

const (
	// Anonymous connections have no API key and are limited by IP.
	Anonymous IdentityKind = iota
	// KeyHolder connections presented a valid API key.
	KeyHolder
)

// String returns the metric label of the kind.
func (k IdentityKind) String() string {
	if k == KeyHolder {
		return "key"
	}
	return "anonymous"
}

// Identity is who a connection belongs to, decided before the upgrade.
type Identity struct {
	// Kind is Anonymous or KeyHolder.
	Kind IdentityKind
	// ID is the budget identity, e.g. "key:<prefix>" or "ip:<addr>"; it
	// appears in logs. The Admitter decides it.
	ID string
	// IP is the client address (after trusted-proxy handling).
	IP netip.Addr
	// KeyPrefix is the key's public prefix; empty when anonymous.
	KeyPrefix string
	// Account is the key's account; empty when anonymous.
	Account string
	// ExpiresAt is when the key expires; zero means never. The session is
	// closed with 1008 "api key expired" at that time (Server.SetKeyExpiry
	// moves it on live sessions).
	ExpiresAt time.Time
	// Scopes are the stream kinds the key may subscribe to (zero: both;
	// anonymous connections keep the zero value).
	// Server.SetKeyScopes changes them on live sessions.
	Scopes proto.Scopes
}

// Admitter decides who an upgrade request is and whether it may open one
// more connection.
type Admitter interface {
	// Admit returns the identity of r and the new connection's budget, or
	// a refusal (written as the HTTP answer). It is called once per
	// upgrade; ctx ends when the client goes away. The budget is released
	// by the session when it ends.
	Admit(ctx context.Context, r *http.Request, now time.Time) (Identity, Budget, *proto.Refusal)
}

// Op is the kind of client frame being charged.
type Op uint8

// Client frame kinds.
const (
	OpSubscribe Op = iota
	OpUnsubscribe
	OpPing
	// OpInvalid is a frame that could not be understood; it is charged
	// like a ping so garbage is not free.
	OpInvalid
	// OpUnsubscribeNotJoined is an unsubscribe of a channel the connection
	// has not joined (or with params that name no channel): charged like
	// any frame, refusable, counting toward violations. Only OpUnsubscribe,
	// a real unsubscribe, is never refused.
	OpUnsubscribeNotJoined
)

// RateInfo is the `rl` object of direct replies.
type RateInfo struct {
	// Remaining is the identity's credits left in the window ("r").
	Remaining int64
	// Quota is the credits per window ("q").
	Quota int64
	// Reset is the seconds until the budget is full again ("t").
	Reset int64
}

// Decision is a Budget's answer for one client frame.
type Decision struct {
	// Allowed is true when the frame may run.
	Allowed bool
	// Code is RATE_LIMITED or QUOTA_EXCEEDED when the frame is refused.
	Code string
	// Message explains the refusal.
	Message string
	// RetryAfter is when the frame would be admitted.
	RetryAfter time.Duration
	// Close asks the session to close with 1008 and CloseReason after
	// replying (repeated violations, quota used up).
	Close bool
	// CloseReason is the close frame's reason text when Close is set.
	CloseReason string
	// RL, when HasRL, is echoed in the reply's "rl" field.
	RL    RateInfo
	HasRL bool
}

// Budget throttles one connection. Charge is called from the session's read
// loop only; Release once, when the session ends.
type Budget interface {
	// Charge accounts for one client frame of kind op at now. src is the
	// source a subscribe or unsubscribe names (nil when it names none the
	// table knows, and for other frames), so that a cost may depend on it
	// (src.Index). It must not block, allocate or do I/O; OpUnsubscribe
	// (a real unsubscribe) must never be refused, OpUnsubscribeNotJoined
	// is charged like any frame.
	Charge(op Op, src *fanout.Source, now time.Time) Decision
	// ChargeReplay accounts for a replay of msgs messages (a subscribe
	// with "since"), charged before the replay starts; like Charge it must
	// not block or do I/O. A refusal is sent as the subscribe's error.
	ChargeReplay(msgs int, now time.Time) Decision
	// MaxSubscriptions is the subscription cap of the connection; 0 means
	// no cap.
	MaxSubscriptions() int
	// Release returns the connection's slot.
	Release(now time.Time)
}

// PublicGate is implemented by a Budget whose key can use up its daily
// deliveries (quotas.delivered_daily): while PublicRefused reports true, a
// subscribe to a public source (fanout.Source.Private false) is refused
// with QUOTA_EXCEEDED and retry_after_ms of the wait; private (account)
// sources, pings and unsubscribes are not affected. It must not block or do I/O.
type PublicGate interface {
	PublicRefused(now time.Time) (wait time.Duration, refused bool)
}

// Hub is the fan-out side a session subscribes through; *fanout.Hub
// implements it (see fanout.Hub.Subscribe for the ordering guarantees of
// Join.Joined and Unsubscribe, fanout.Hub.Replay for replays).
type Hub interface {
	Subscribe(s fanout.Subscriber, j fanout.Join) (*fanout.Subscription, error)
	Unsubscribe(sub *fanout.Subscription)
	// HasHistory reports whether the channels of src have history (since
	// and snapshot are accepted).
	HasHistory(src *fanout.Source) bool
	// Replay reads the retained messages of sub's channel after since.
	Replay(ctx context.Context, sub *fanout.Subscription, since uint64, info fanout.JoinInfo, admit func(n int) error) (fanout.ReplayResult, error)
}

// Options configures a Server. Zero values mean the documented defaults.
type Options struct {
	// Hub is the fan-out hub. Required.
	Hub Hub
	// Sources is the sources table. Required.
	Sources *fanout.Sources
	// Admitter identifies and admits connections. Defaults to AdmitAll:
	// everyone, anonymous, with an unlimited budget.
	Admitter Admitter
	// Logger receives one event per connection open and close. Defaults to
	// a disabled logger.
	Logger *zerolog.Logger
	// Registerer receives the broker's metrics. Defaults to none.
	Registerer prometheus.Registerer
	// MetricsTopKeys is how many keys get per-key series (the keys with
	// the most live connections), bounding metric cardinality. Defaults
	// to 20.
	MetricsTopKeys int
	// NodeID names this node in logs. Defaults to "".
	NodeID string
	// MeterDelivery counts, per key session, the channel frames written
	// and their bytes as written (compressed on deflate connections), for
	// TakeDelivered and TopKeys: two atomic adds per written batch.
	// Defaults to false (not counted).
	MeterDelivery bool
	// OnClose, when set, is called once per ended session (after its
	// goroutines stopped) with its summary, e.g. to record key connection
	// events. It runs on the session's goroutine and should not block long.
	OnClose func(SessionInfo)

	// AllowedOrigins lists host patterns (path.Match syntax, matched
	// against the Origin's host, or against scheme://host when the pattern
	// has "://") whose browsers may upgrade cross-origin. Requests without
	// an Origin header, or from the request's own host, are always
	// allowed. Defaults to none.
	AllowedOrigins []string

	// IdleTimeout closes a connection that sent no text or ping frame for
	// this long, with 1000 "idle timeout". Defaults to 60s.
	IdleTimeout time.Duration
	// PingInterval is how often the server sends a websocket ping.
	// Defaults to 20s.
	PingInterval time.Duration
	// PongTimeout closes a connection that answered no ping for this long,
	// with 1001 "ping timeout". Defaults to 60s.
	PongTimeout time.Duration
	// Lifetime is the longest a connection may live; it is closed with
	// 1001 "lifetime exceeded". Defaults to 24h.
	Lifetime time.Duration
	// LifetimeNotice is how long before the lifetime ends the RECONNECT
	// notice is sent. Defaults to 60s.
	LifetimeNotice time.Duration
	// ExpiryNotice: a key connection whose key expires within it gets the
	// KEY_EXPIRING notice right after the upgrade (before any other frame
	// the server sends on its own), and again ExpiryLastNotice before the
	// expiry (sent by the sweeper). Defaults to 168h (7 days); negative
	// turns both notices off.
	ExpiryNotice time.Duration
	// ReadLimit is the largest inbound frame in bytes; larger ones close
	// the connection with 1009. Defaults to 4096.
	ReadLimit int
	// QueueFrames and QueueBytes bound each connection's send queue.
	// Past half of either (the high-water mark), a frame of a conflatable
	// channel replaces that channel's pending frame instead of queueing
	// (counted as dropped "conflated"); other frames that overflow a bound
	// close the connection with 1013 "slow consumer". Default to 1024
	// frames and 4 MiB.
	QueueFrames int
	QueueBytes  int
	// NoCompression turns off permessage-deflate. Defaults to false: a
	// client that offers it gets it, without context takeover, and its
	// market frames of 256 bytes or more are sent compressed (compressed
	// once per node by the hub).
	NoCompression bool
	// WriteTimeout bounds every socket write. Defaults to 10s.
	WriteTimeout time.Duration
	// CloseTimeout bounds the reads of a close handshake (waiting for the
	// client's close frame, skipping what it still sends). Defaults to 6s.
	CloseTimeout time.Duration
	// SweepInterval is how often timers are checked; it is the resolution
	// of every timeout above. Defaults to 1s, or a quarter of the shortest
	// timeout when that is smaller.
	SweepInterval time.Duration
	// WriteBufferSize is the size of the pooled buffer a writer batches
	// frames into before one socket write. Defaults to 64 KiB.
	WriteBufferSize int
}

func (o *Options) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.IdleTimeout, 60*time.Second)
	def(&o.PingInterval, 20*time.Second)
	def(&o.PongTimeout, 60*time.Second)
	def(&o.Lifetime, 24*time.Hour)
	def(&o.LifetimeNotice, 60*time.Second)
	def(&o.ExpiryNotice, 168*time.Hour)
	def(&o.WriteTimeout, 10*time.Second)
	def(&o.CloseTimeout, 6*time.Second)
	if o.SweepInterval <= 0 {
		o.SweepInterval = time.Second
		for _, d := range []time.Duration{o.IdleTimeout, o.PingInterval, o.PongTimeout, o.LifetimeNotice} {
			if d/4 < o.SweepInterval {
				o.SweepInterval = d / 4
			}
		}
		if o.SweepInterval < time.Millisecond {
			o.SweepInterval = time.Millisecond
		}
	}
	if o.MetricsTopKeys <= 0 {
		o.MetricsTopKeys = 20
	}
	if o.ReadLimit <= 0 {
		o.ReadLimit = 4096
	}
	if o.QueueFrames <= 0 {
		o.QueueFrames = 1024
	}
	if o.QueueBytes <= 0 {
		o.QueueBytes = 4 << 20
	}
	if o.WriteBufferSize <= 0 {
		o.WriteBufferSize = 64 << 10
	}
	if o.Admitter == nil {
		o.Admitter = AdmitAll{}
	}
	if o.Logger == nil {
		l := zerolog.Nop()
		o.Logger = &l
	}
}

// SessionInfo summarises an ended session for OnClose.
type SessionInfo struct {
	Identity    Identity
	Start, End  time.Time
	MsgsIn      int64
	MsgsOut     int64
	CloseCode   int
	CloseReason CloseReason
}
