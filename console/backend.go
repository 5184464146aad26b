package console

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"floodgate/broker"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// The console's backend: the node's stats ring, its top keys and the
// cluster's heartbeats, sampled by Run and read by the endpoints
// (admin.go).

// Options are the sources a Backend reads; the node builds them from its
// parts. Zero fields mean the defaults stated.
type Options struct {
	// NodeID names this node in the answers and in its heartbeats.
	// Defaults to "".
	NodeID string
	// Sidecar marks a REST-only node in its heartbeats. Defaults to false.
	Sidecar bool
	// Gatherer is the registry the stats ring samples every 2 s (the
	// node's /metrics). Defaults to an empty registry.
	Gatherer prometheus.Gatherer
	// Health returns the node's readiness at now; read at each sample.
	// Defaults to always ready.
	Health func(now time.Time) Health
	// TopKeys returns the live counters of every key's sessions on this
	// node (the broker's TopKeys of all keys); read at each sample and by
	// each GET /admin/v1/top-keys. Defaults to none (a sidecar).
	TopKeys func() []broker.KeyStat
	// NATS carries the heartbeats on NodesSubject. Defaults to nil: no
	// heartbeat is published or heard, only this node is listed.
	NATS *nats.Conn
	// Authorized reports whether a request carries the admin token; the
	// endpoints answer 401 UNAUTHORIZED otherwise. Defaults to refusing
	// every request.
	Authorized func(r *http.Request) bool
	// Logger gets the heartbeat failures. Defaults to zerolog.Nop().
	Logger *zerolog.Logger
	// Now is the clock of the answers, of the heartbeats heard and of the
	// start time. Defaults to time.Now.
	Now func() time.Time
}

// Backend is what the node keeps for the console. Safe for concurrent
// use: Run samples and publishes, the handlers read, the broker's
// goroutines call Closed and Refused.
type Backend struct {
	// Immutable after New.
	o        Options
	log      zerolog.Logger
	stats    *statsRing
	traffic  *keyTraffic
	refusals *refusalTop
	peers    *peers
	started  time.Time
}

// New returns a Backend reading o's sources; it starts nothing (Run does).
func New(o Options) *Backend {
	if o.Gatherer == nil {
		o.Gatherer = prometheus.NewRegistry()
	}
	if o.Health == nil {
		o.Health = func(now time.Time) Health {
			return Health{Status: "ready", Reasons: []string{}, Details: map[string]string{}, CheckedAt: now.UTC()}
		}
	}
	if o.TopKeys == nil {
		o.TopKeys = func() []broker.KeyStat { return nil }
	}
	if o.Authorized == nil {
		o.Authorized = func(*http.Request) bool { return false }
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	log := zerolog.Nop()
	if o.Logger != nil {
		log = *o.Logger
	}
	return &Backend{o: o, log: log, stats: newStatsRing(o.Gatherer), traffic: newKeyTraffic(), refusals: newRefusalTop(),
		peers: newPeers(o.NodeID), started: o.Now()}
}

// Closed counts the traffic of an ended session; the node calls it from
// the broker's OnClose. One map update under a lock; no I/O.
func (b *Backend) Closed(info broker.SessionInfo) { b.traffic.closed(info) }

// Refused counts a refusal of the key prefix with code at now in the
// refusal ranking (a refused upgrade or frame). Per-frame: a short scan of
// a fixed array under a lock, 0 allocations, no I/O.
func (b *Backend) Refused(prefix, code string, now time.Time) { b.refusals.refused(prefix, code, now) }

// Run samples the stats every statsInterval and publishes the heartbeat
// every heartbeatEvery until ctx ends; it listens to the other nodes'
// heartbeats meanwhile.
func (b *Backend) Run(ctx context.Context) {
	if nc := b.o.NATS; nc != nil {
		sub, err := nc.Subscribe(NodesSubject, func(m *nats.Msg) { b.peers.receive(m, b.o.Now()) })
		if err != nil {
			b.log.Warn().Err(err).Str("subject", NodesSubject).Msg("node heartbeats not received")
		} else {
			defer func() { _ = sub.Unsubscribe() }()
			_ = nc.FlushTimeout(2 * time.Second) // the subscription is in place before the first heartbeat
		}
	}
	b.Sample(b.o.Now()) // the base of the first rates
	tick := time.NewTicker(statsInterval)
	defer tick.Stop()
	last := time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			b.Sample(now)
			if now.Sub(last) >= heartbeatEvery-statsInterval/2 {
				b.Heartbeat(now)
				last = now
			}
		}
	}
}

// Sample takes one stats sample and the traffic of the keys at now (Run
// does every 2 s): one gather of the registry.
func (b *Backend) Sample(now time.Time) {
	b.stats.sample(now, b.o.Health(now))
	b.traffic.sample(b.o.TopKeys(), now)
}

// Heartbeat records this node's heartbeat at now and publishes it (Run
// does every 5 s; a publish only buffers: it does not wait for the
// server).
func (b *Backend) Heartbeat(now time.Time) {
	hb := Heartbeat{Node: b.o.NodeID, Time: now.UTC(), StartedAt: b.started.UTC(), Sidecar: b.o.Sidecar}
	s, h, ok := b.stats.latest()
	hb.Health = h
	if ok {
		hb.Stats = &s
	}
	b.peers.put(hb, now)
	nc := b.o.NATS
	if nc == nil || !nc.IsConnected() {
		return
	}
	raw, err := json.Marshal(hb)
	if err == nil {
		err = nc.Publish(NodesSubject, raw)
	}
	if err != nil {
		b.log.Debug().Err(err).Msg("heartbeat not published")
	}
}
