package node

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"strconv"
	"time"

	"floodgate/broker"
	"floodgate/console"
	"floodgate/keyapi"

	"github.com/nats-io/nats.go"
)

// The operator console's side of the node: the stats ring, the top keys,
// the cluster's heartbeats, and their endpoints under /admin/v1 (behind
// the admin token), plus the console page itself at /admin/. The key
// endpoints of /admin/v1 stay the REST sidecar's.

// opsView is what the node keeps for the console. Its parts are safe for
// concurrent use; runView samples and publishes, the handlers read.
type opsView struct {
	// Immutable after newOpsView.
	stats    *statsRing
	traffic  *keyTraffic
	refusals *refusalTop
	peers    *peers
	started  time.Time
}

func newOpsView(n *Node, now time.Time) *opsView {
	return &opsView{stats: newStatsRing(n.reg), traffic: newKeyTraffic(), refusals: newRefusalTop(),
		peers: newPeers(n.cfg.NodeID), started: now}
}

// sessionClosed is the broker's OnClose: connection events, then the
// traffic of the ended session.
func (n *Node) sessionClosed(info broker.SessionInfo) {
	n.events.closed(info)
	n.view.traffic.closed(info)
}

// runView samples the stats every statsInterval and publishes the
// heartbeat every heartbeatEvery until ctx ends; it listens to the other
// nodes' heartbeats meanwhile.
func (n *Node) runView(ctx context.Context) {
	if n.nc != nil {
		sub, err := n.nc.Subscribe(NodesSubject, func(m *nats.Msg) { n.view.peers.receive(m, time.Now()) })
		if err != nil {
			n.log.Warn().Err(err).Str("subject", NodesSubject).Msg("node heartbeats not received")
		} else {
			defer func() { _ = sub.Unsubscribe() }()
			_ = n.nc.FlushTimeout(2 * time.Second) // the subscription is in place before the first heartbeat
		}
	}
	n.sampleView(time.Now()) // the base of the first rates
	tick := time.NewTicker(statsInterval)
	defer tick.Stop()
	last := time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			n.sampleView(now)
			if now.Sub(last) >= heartbeatEvery-statsInterval/2 {
				n.heartbeat(now)
				last = now
			}
		}
	}
}

// sampleView takes one stats sample and the traffic of the keys at now.
func (n *Node) sampleView(now time.Time) {
	n.view.stats.sample(now, healthOf(n.readiness(), now))
	if n.broker != nil {
		n.view.traffic.sample(n.broker.TopKeys(math.MaxInt), now)
	}
}

// heartbeat records this node's heartbeat and publishes it (a publish
// only buffers: it does not wait for the server).
func (n *Node) heartbeat(now time.Time) {
	hb := Heartbeat{Node: n.cfg.NodeID, Time: now.UTC(), StartedAt: n.view.started.UTC(), Sidecar: n.cfg.Sidecar}
	s, h, ok := n.view.stats.latest()
	hb.Health = h
	if ok {
		hb.Stats = &s
	}
	n.view.peers.put(hb, now)
	if n.nc == nil || !n.nc.IsConnected() {
		return
	}
	b, err := json.Marshal(hb)
	if err == nil {
		err = n.nc.Publish(NodesSubject, b)
	}
	if err != nil {
		n.log.Debug().Err(err).Msg("heartbeat not published")
	}
}

// adminRoute is one node-served operator endpoint.
type adminRoute struct {
	method, pattern string
	h               http.HandlerFunc
}

// adminRoutes are the operator endpoints the node serves itself (the
// others under /admin/v1 are the sidecar's). keyapi/openapi.json documents
// them with "x-served-by": "node".
func (n *Node) adminRoutes() []adminRoute {
	return []adminRoute{
		{"GET", "/admin/v1/stats", n.handleStats},
		{"GET", "/admin/v1/top-keys", n.handleTopKeys},
		{"GET", "/admin/v1/nodes", n.handleNodes},
	}
}

// mountAdmin mounts the node's operator endpoints and the console page
// when an admin token is configured; without one nothing is mounted and
// /admin/ answers the sidecar's 404.
func (n *Node) mountAdmin(mux *http.ServeMux) {
	if n.cfg.AdminToken == "" {
		return
	}
	for _, rt := range n.adminRoutes() {
		h := rt.h
		mux.HandleFunc(rt.method+" "+rt.pattern, func(w http.ResponseWriter, r *http.Request) {
			if !n.isAdmin(r) {
				w.Header().Set("WWW-Authenticate", `Bearer realm="floodgate admin"`)
				adminError(w, http.StatusUnauthorized, "UNAUTHORIZED", "Invalid admin token")
				return
			}
			h(w, r)
		})
	}
	mux.Handle("/admin/v1/", n.sidecar)
	mux.Handle("/admin/", console.Handler())
}

// StatsView is the data of GET /admin/v1/stats.
type StatsView struct {
	Node       string    `json:"node"`
	Now        time.Time `json:"now"`
	IntervalMS int64     `json:"interval_ms"`
	WindowMS   int64     `json:"window_ms"`
	Health     Health    `json:"health"`
	Samples    []Sample  `json:"samples"`
}

// GET /admin/v1/stats?since=<unix ms>
func (n *Node) handleStats(w http.ResponseWriter, r *http.Request) {
	var since int64
	if q := r.URL.Query().Get("since"); q != "" {
		v, err := strconv.ParseInt(q, 10, 64)
		if err != nil || v < 0 {
			adminError(w, http.StatusBadRequest, "BAD_REQUEST", "Invalid field since: must be Unix milliseconds")
			return
		}
		since = v
	}
	samples, h := n.view.stats.since(since)
	adminData(w, StatsView{Node: n.cfg.NodeID, Now: time.Now().UTC(), IntervalMS: statsInterval.Milliseconds(),
		WindowMS: statsWindow.Milliseconds(), Health: h, Samples: samples})
}

// TopKeysView is the data of GET /admin/v1/top-keys.
type TopKeysView struct {
	Node     string       `json:"node"`
	WindowMS int64        `json:"window_ms"`
	Traffic  []KeyTraffic `json:"traffic"`
	Refusals []KeyRefusal `json:"refusals"`
}

// KeyTraffic is a key's frames on this node in the window.
type KeyTraffic struct {
	Prefix      string `json:"prefix"`
	MsgsIn      int64  `json:"msgs_in"`
	MsgsOut     int64  `json:"msgs_out"`
	Connections int    `json:"connections"` // live now
	// MessagesDelivered and BytesDelivered are the delivery meter's counts
	// of the key's live sessions on this node (since they connected).
	MessagesDelivered int64 `json:"messages_delivered"`
	BytesDelivered    int64 `json:"bytes_delivered"`
}

// KeyRefusal is a key's refusals on this node in the window.
type KeyRefusal struct {
	Prefix   string           `json:"prefix"`
	Refusals int64            `json:"refusals"`
	Codes    map[string]int64 `json:"codes"`
}

// GET /admin/v1/top-keys?n=
func (n *Node) handleTopKeys(w http.ResponseWriter, r *http.Request) {
	limit := 10
	if q := r.URL.Query().Get("n"); q != "" {
		v, err := strconv.Atoi(q)
		if err != nil || v < 1 || v > 100 {
			adminError(w, http.StatusBadRequest, "BAD_REQUEST", "Invalid field n: must be 1..100")
			return
		}
		limit = v
	}
	now := time.Now()
	live := map[string]broker.KeyStat{}
	if n.broker != nil {
		for _, k := range n.broker.TopKeys(math.MaxInt) {
			live[k.Prefix] = k
		}
	}
	out := TopKeysView{Node: n.cfg.NodeID, WindowMS: topWindow.Milliseconds(), Traffic: []KeyTraffic{}, Refusals: []KeyRefusal{}}
	for _, c := range n.view.traffic.top.top(limit, now) {
		k := live[c.Key]
		out.Traffic = append(out.Traffic, KeyTraffic{Prefix: c.Key, MsgsIn: c.Parts["in"], MsgsOut: c.Parts["out"], Connections: k.Connections,
			MessagesDelivered: k.Delivered.Msgs, BytesDelivered: k.Delivered.Bytes})
	}
	for _, c := range n.view.refusals.t.top(limit, now) {
		out.Refusals = append(out.Refusals, KeyRefusal{Prefix: c.Key, Refusals: c.Weight, Codes: c.Parts})
	}
	adminData(w, out)
}

// NodesView is the data of GET /admin/v1/nodes.
type NodesView struct {
	TTLMS int64      `json:"ttl_ms"`
	Nodes []NodeView `json:"nodes"`
}

// GET /admin/v1/nodes
func (n *Node) handleNodes(w http.ResponseWriter, r *http.Request) {
	adminData(w, NodesView{TTLMS: nodeTTL.Milliseconds(), Nodes: n.view.peers.list(time.Now())})
}

// adminData answers with the REST envelope of the operator API.
func adminData(w http.ResponseWriter, data any) {
	raw, err := json.Marshal(data)
	if err != nil {
		adminError(w, http.StatusInternalServerError, "INTERNAL", "Internal error")
		return
	}
	writeJSON(w, http.StatusOK, keyapi.Envelope{Success: true, Data: raw})
}

// adminError answers with a failure envelope.
func adminError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, keyapi.Envelope{Data: json.RawMessage("null"), Error: &msg, Code: &code})
}
