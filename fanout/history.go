package fanout

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// HistSubjectPrefix is where the history stream republishes every stored
// message (RePublish): <prefix>.<source>... becomes
// floodgate.hist.<prefix>.<source>..., with the Nats-Sequence and
// Nats-Last-Sequence headers. A channel with history subscribes there.
const HistSubjectPrefix = "floodgate.hist."

// Errors of History and Hub.Replay.
var (
	// ErrNoHistory: the channel's source has no history on this hub.
	ErrNoHistory = errors.New("fanout: channel has no history")
	// ErrReplayBusy: HistoryOptions.MaxReplays replays already run on this
	// node.
	ErrReplayBusy = errors.New("fanout: replay limit of the node reached")
)

// HistoryConfig is the `history` section of the config file: the
// JetStream stream that keeps the messages of the sources with history,
// and the bounds of one replay.
type HistoryConfig struct {
	// Stream is the stream's name. Defaults to FLOODGATE_<PREFIX> (the
	// subject prefix in upper case, dots as underscores).
	Stream string `yaml:"stream"`
	// MaxAge is how long a message is kept. 15 minutes.
	MaxAge time.Duration `yaml:"max_age"`
	// MaxMsgsPerSubject is how many messages of one channel are kept.
	// 10,000.
	MaxMsgsPerSubject int64 `yaml:"max_msgs_per_subject"`
	// MaxBytes bounds the stream's storage; the oldest messages go first.
	// 1 GiB.
	MaxBytes int64 `yaml:"max_bytes"`
	// Replicas is the stream's replication factor on a JetStream cluster.
	// 1.
	Replicas int `yaml:"replicas"`
	// MaxReplayMsgs and MaxReplayBytes bound one replay (a subscribe with
	// "since"): a replay that would need more is not made (recovered
	// false). 10,000 messages, 8 MiB of payload.
	MaxReplayMsgs  int `yaml:"max_replay_msgs"`
	MaxReplayBytes int `yaml:"max_replay_bytes"`
	// Domain is the JetStream domain of the stream, for a node whose NATS
	// server is a leaf node of the JetStream servers (the API is then
	// $JS.<domain>.API). Defaults to "": the NATS server's own JetStream.
	Domain string `yaml:"domain"`
}

// DefaultHistoryConfig returns the defaults of the history section.
func DefaultHistoryConfig() HistoryConfig {
	return HistoryConfig{
		MaxAge: 15 * time.Minute, MaxMsgsPerSubject: 10000, MaxBytes: 1 << 30, Replicas: 1,
		MaxReplayMsgs: 10000, MaxReplayBytes: 8 << 20,
	}
}

// Validate reports every invalid field of the section, each error naming
// it (history.<field>) and the bad value.
func (c *HistoryConfig) Validate() error {
	var errs []error
	bad := func(field string, v any, why string) {
		errs = append(errs, fmt.Errorf("history.%s = %v: %s", field, v, why))
	}
	if c.Stream != "" && !validStreamName(c.Stream) {
		bad("stream", c.Stream, "must be 1 to 255 characters without spaces, '.', '*', '>', '/' or '\\'")
	}
	if c.MaxAge < time.Second || c.MaxAge > 400*24*time.Hour {
		bad("max_age", c.MaxAge, "must be between 1s and 400 days")
	}
	if c.MaxMsgsPerSubject < 1 {
		bad("max_msgs_per_subject", c.MaxMsgsPerSubject, "must be at least 1")
	}
	if c.MaxBytes < 1<<20 {
		bad("max_bytes", c.MaxBytes, "must be at least 1048576 (1 MiB)")
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		bad("replicas", c.Replicas, "must be between 1 and 5")
	}
	if c.MaxReplayMsgs < 1 || c.MaxReplayMsgs > 1_000_000 {
		bad("max_replay_msgs", c.MaxReplayMsgs, "must be between 1 and 1000000")
	}
	if c.MaxReplayBytes < 1024 || c.MaxReplayBytes > 1<<30 {
		bad("max_replay_bytes", c.MaxReplayBytes, "must be between 1024 and 1073741824")
	}
	if c.Domain != "" && !validStreamName(c.Domain) {
		bad("domain", c.Domain, "must be a single subject token")
	}
	return errors.Join(errs...)
}

func validStreamName(name string) bool {
	return len(name) <= 255 && name != "" && !strings.ContainsAny(name, " \t\r\n.*>/\\")
}

// StreamName is the default stream name for a subject prefix:
// FLOODGATE_<PREFIX>, dots and dashes as underscores.
func StreamName(prefix string) string {
	return "FLOODGATE_" + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(prefix))
}

// HistoryOptions configures a History.
type HistoryOptions struct {
	// Conn is the NATS connection (the hub's). Required.
	Conn *nats.Conn
	// Sources is the sources table: the stream captures the subjects of
	// the sources with history. Required.
	Sources *Sources
	// Config is the history section. Defaults to DefaultHistoryConfig().
	Config HistoryConfig
	// CallTimeout bounds every JetStream call of a replay or a lookup.
	// Defaults to 2s.
	CallTimeout time.Duration
	// ReplayTimeout bounds a whole replay (its calls and the reading of
	// its messages). Defaults to 5s.
	ReplayTimeout time.Duration
	// CheckInterval is the period of the availability check; two failed
	// checks in a row (each bounded by CheckInterval) move every channel
	// to its raw subject. Defaults to 1s.
	CheckInterval time.Duration
	// MaxReplays is how many replays may run at once on the node; one
	// more fails with ErrReplayBusy. Defaults to 64.
	MaxReplays int
	// OnChange, when set, is called from Start and Run when the history
	// becomes unavailable (err) or available again (nil), for logs.
	OnChange func(err error)
	// Registerer receives the history's metrics. Defaults to none.
	Registerer prometheus.Registerer
}

// History keeps the messages of the sources with history in a JetStream
// stream, tells the hub where each channel's messages come from (the
// stream's republished subject while the stream is available, the raw
// subject otherwise) and serves snapshots and replays. Build it with
// NewHistory, hand it to NewHub (Options.History), then Start and Run.
type History struct {
	// Immutable after NewHistory.
	opts   HistoryOptions
	js     jetstream.JetStream
	cfg    jetstream.StreamConfig // the stream as configured
	slots  chan struct{}          // replay slots
	m      *histMetrics
	hub    atomic.Pointer[Hub]
	stream atomic.Pointer[streamRef] // nil until the stream was found or made

	// Atomics.
	tails  atomic.Int64          // channels with a recent tail (recent.go)
	active atomic.Bool           // channels with history are on the republished subjects
	epoch  atomic.Int64          // the stream's creation time, unix µs
	err    atomic.Pointer[error] // why the history is unavailable; nil: available

	// Guarded by mu: the availability state machine (Start, Run).
	mu     sync.Mutex
	fails  int  // consecutive failed checks
	routed bool // the hub's channels follow active (a reroute succeeded)
}

type streamRef struct{ s jetstream.Stream }

// NewHistory checks opts and builds a History; it does no I/O.
func NewHistory(opts HistoryOptions) (*History, error) {
	if opts.Conn == nil || opts.Sources == nil {
		return nil, errors.New("fanout: HistoryOptions.Conn and Sources are required")
	}
	if opts.Config == (HistoryConfig{}) {
		opts.Config = DefaultHistoryConfig()
	}
	if err := opts.Config.Validate(); err != nil {
		return nil, err
	}
	if opts.Config.Stream == "" {
		opts.Config.Stream = StreamName(opts.Sources.Prefix())
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&opts.CallTimeout, 2*time.Second)
	def(&opts.ReplayTimeout, 5*time.Second)
	def(&opts.CheckInterval, time.Second)
	if opts.MaxReplays <= 0 {
		opts.MaxReplays = 64
	}
	subjects := opts.Sources.HistorySubjects()
	if len(subjects) == 0 {
		return nil, errors.New("fanout: history: no source has history")
	}
	var js jetstream.JetStream
	var err error
	if d := opts.Config.Domain; d != "" {
		js, err = jetstream.NewWithDomain(opts.Conn, d)
	} else {
		js, err = jetstream.New(opts.Conn)
	}
	if err != nil {
		return nil, err
	}
	c := opts.Config
	prefix := opts.Sources.Prefix()
	h := &History{opts: opts, js: js, slots: make(chan struct{}, opts.MaxReplays),
		cfg: jetstream.StreamConfig{
			Name:              c.Stream,
			Description:       "Floodgate history of " + prefix + " (sequence numbers, snapshots, resume)",
			Subjects:          subjects,
			Retention:         jetstream.LimitsPolicy,
			Discard:           jetstream.DiscardOld,
			Storage:           jetstream.FileStorage,
			MaxAge:            c.MaxAge,
			MaxMsgsPerSubject: c.MaxMsgsPerSubject,
			MaxBytes:          c.MaxBytes,
			MaxMsgs:           -1,
			MaxConsumers:      -1,
			Replicas:          c.Replicas,
			AllowDirect:       true,
			RePublish:         &jetstream.RePublish{Source: prefix + ".>", Destination: HistSubjectPrefix + prefix + ".>"},
		}}
	h.m = newHistMetrics(opts.Registerer, h)
	return h, nil
}

// Stream is the stream's name.
func (h *History) Stream() string { return h.cfg.Name }

// Epoch identifies the stream the current seq values belong to: its
// creation time in unix microseconds (0 before the stream was found). It
// changes when the stream is deleted and made again (seq values restart).
func (h *History) Epoch() int64 { return h.epoch.Load() }

// Err is nil while the history is available, else why not (for /readyz).
func (h *History) Err() error {
	if p := h.err.Load(); p != nil {
		return *p
	}
	return nil
}

// attach is called by NewHub: the hub whose channels follow the history.
func (h *History) attach(hub *Hub) { h.hub.Store(hub) }

// route is the hub's Router: the republished subject, sequenced, for a
// source with history while the stream is available; the raw subject
// otherwise.
func (h *History) route(src *Source, subject string) Route {
	if src.History && h.active.Load() {
		return Route{Subject: HistSubjectPrefix + subject, Sequenced: true}
	}
	return RawRoute(src, subject)
}

// Start finds or makes the stream (updating the settings it manages when
// they differ) within CallTimeout and returns why it could not. The
// history is available when it returns nil; otherwise Run keeps trying.
func (h *History) Start(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	err := h.ensure(ctx)
	h.settle(err, true)
	return err
}

// Run checks the stream every CheckInterval until ctx ends: two failed
// checks in a row move every channel to its raw subject (live delivery
// without seq/prev; Err says why), a passing check moves them back. A
// stream that was deleted is made again (a new epoch).
func (h *History) Run(ctx context.Context) {
	t := time.NewTicker(h.opts.CheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			h.check(ctx)
		}
	}
}

func (h *History) check(ctx context.Context) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var err error
	ref := h.stream.Load()
	if ref == nil {
		err = h.ensure(ctx)
	} else {
		cctx, cancel := context.WithTimeout(ctx, h.opts.CheckInterval)
		var info *jetstream.StreamInfo
		info, err = ref.s.Info(cctx)
		cancel()
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound):
			err = h.ensure(ctx)
		case err == nil:
			h.setEpoch(info.Created.UnixMicro())
		}
	}
	if ctx.Err() != nil {
		return // shutting down: not a verdict
	}
	h.settle(err, false)
}

// settle applies a check's verdict: available at once; unavailable after
// two failures in a row (or at once at Start). The hub is rerouted when
// the state changed or an earlier reroute failed; mu is held.
func (h *History) settle(err error, start bool) {
	was := h.Err()
	if err == nil {
		h.fails = 0
		h.err.Store(nil)
		h.m.available.Set(1)
		if !h.active.Swap(true) {
			h.routed = false
		}
	} else {
		h.fails++
		e := fmt.Errorf("history stream %s: %w", h.cfg.Name, err)
		h.err.Store(&e)
		h.m.available.Set(0)
		if (start || h.fails >= 2) && h.active.Swap(false) {
			h.routed = false
		}
	}
	if !h.routed {
		if hub := h.hub.Load(); hub != nil {
			h.m.reroutes.Inc()
			h.routed = hub.Reroute(h.route) == nil
		} else {
			h.routed = true // no hub yet: channels take the route when made
		}
	}
	if h.opts.OnChange != nil && (was == nil) != (err == nil) {
		h.opts.OnChange(h.Err())
	}
}

// ensure finds the stream, makes it when it does not exist, and updates
// the settings it manages when they differ; mu is held.
func (h *History) ensure(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, h.opts.CallTimeout)
	defer cancel()
	s, err := h.js.Stream(cctx, h.cfg.Name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		s, err = h.js.CreateStream(cctx, h.cfg)
	case err == nil:
		if cur := s.CachedInfo().Config; !sameManaged(&cur, &h.cfg) {
			s, err = h.js.UpdateStream(cctx, withManaged(cur, &h.cfg))
		}
	}
	if err != nil {
		return err
	}
	h.stream.Store(&streamRef{s: s})
	h.setEpoch(s.CachedInfo().Created.UnixMicro())
	return nil
}

// setEpoch notes the stream's creation time. A new one (the stream was
// deleted and made again: seq restarts at 1) clears what the channels
// know of the old one: their latest message, its snapshot, their recent
// frames.
func (h *History) setEpoch(e int64) {
	if old := h.epoch.Swap(e); old != 0 && old != e {
		if hub := h.hub.Load(); hub != nil {
			hub.forgetHistory()
		}
	}
}

// sameManaged reports whether the stream config a has the settings the
// history manages as b has them.
func sameManaged(a, b *jetstream.StreamConfig) bool {
	as, bs := slices.Clone(a.Subjects), slices.Clone(b.Subjects)
	slices.Sort(as)
	slices.Sort(bs)
	return slices.Equal(as, bs) && a.MaxAge == b.MaxAge && a.MaxMsgsPerSubject == b.MaxMsgsPerSubject &&
		a.MaxBytes == b.MaxBytes && a.Replicas == b.Replicas && a.AllowDirect == b.AllowDirect &&
		a.Discard == b.Discard && a.RePublish != nil && *a.RePublish == *b.RePublish
}

// withManaged is cur with the managed settings of want.
func withManaged(cur jetstream.StreamConfig, want *jetstream.StreamConfig) jetstream.StreamConfig {
	cur.Subjects, cur.MaxAge, cur.MaxMsgsPerSubject, cur.MaxBytes = want.Subjects, want.MaxAge, want.MaxMsgsPerSubject, want.MaxBytes
	cur.Replicas, cur.AllowDirect, cur.Discard, cur.RePublish = want.Replicas, want.AllowDirect, want.Discard, want.RePublish
	return cur
}

// lookupTimeout bounds the lookup of a channel's latest message (a join
// waits for it; JetStream answers in well under a millisecond when up).
const lookupTimeout = 500 * time.Millisecond

// last looks up the latest stored message of subject (ok false when the
// stream holds none) within lookupTimeout.
func (h *History) last(subject string) (message, bool, error) {
	ref := h.stream.Load()
	if ref == nil {
		return message{}, false, errors.New("history stream not found yet")
	}
	ctx, cancel := context.WithTimeout(context.Background(), min(h.opts.CallTimeout, lookupTimeout))
	defer cancel()
	raw, err := ref.s.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return message{}, false, nil
	}
	if err != nil {
		h.m.lookupErrors.Inc()
		return message{}, false, err
	}
	return message{payload: raw.Data, recv: time.Now().UnixNano(), seq: raw.Sequence}, true, nil
}

// histMetrics are the history's Prometheus series.
type histMetrics struct {
	// available is 1 while the stream is reachable (settle).
	available prometheus.Gauge
	// reroutes counts moves of the channels between the republished and
	// the raw subjects (settle).
	reroutes prometheus.Counter
	// replays counts replays by result (replay.go).
	replays *prometheus.CounterVec
	// replayed counts the messages replayed (replay.go).
	replayed prometheus.Counter
	// fromMemory counts the replays served from a channel's recent tail
	// (replay.go).
	fromMemory prometheus.Counter
	// replaySeconds is how long replays took, recovered ones (replay.go).
	replaySeconds prometheus.Histogram
	// lookupErrors counts failed lookups of a channel's latest message
	// (history.go last).
	lookupErrors prometheus.Counter
}

func newHistMetrics(reg prometheus.Registerer, h *History) *histMetrics {
	m := &histMetrics{
		available: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "floodgate", Name: "history_available",
			Help: "1 while the history stream is reachable (channels with history deliver seq/prev); 0 while they deliver from the raw subjects.",
		}),
		reroutes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "floodgate", Name: "history_reroutes_total",
			Help: "Moves of every channel between the history's republished subjects and the raw subjects.",
		}),
		replays: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "floodgate", Name: "history_replays_total",
			Help: "Subscribes with since, by result: recovered, not_recovered (the history no longer held everything, or the replay was over its bounds), busy (the node's replay limit), refused (the budget could not pay), error (JetStream failed).",
		}, []string{"result"}),
		replayed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "floodgate", Name: "history_replayed_messages_total",
			Help: "Messages sent by replays.",
		}),
		fromMemory: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "floodgate", Name: "history_replays_from_memory_total",
			Help: "Recovered replays served from the channel's recent frames in memory (no JetStream read): the rest of a resume storm.",
		}),
		replaySeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "floodgate", Name: "history_replay_seconds",
			Help:    "Time from the start of a replay to its frames being ready (recovered replays that read the stream).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		lookupErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "floodgate", Name: "history_lookup_errors_total",
			Help: "Failed lookups of a channel's latest message when the channel opened (its ack seq and snapshot wait for the next message).",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.available, m.reroutes, m.replays, m.replayed, m.fromMemory, m.replaySeconds, m.lookupErrors,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Namespace: "floodgate", Name: "history_replays_running",
				Help: "Replays reading JetStream now (at most 64 per node).",
			}, func() float64 { return float64(len(h.slots)) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Namespace: "floodgate", Name: "history_recent_tails",
				Help: "Channels keeping their recent frames in memory for replays (at most 256; dropped 10 s after the last replay).",
			}, func() float64 { return float64(h.tails.Load()) }))
	}
	return m
}
