package console

import (
	"encoding/json"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// Cluster view for the operator console: every node publishes a heartbeat
// (its latest stats sample and health) on NodesSubject every
// heartbeatEvery; every node keeps the heartbeats it hears and lists the
// nodes heard within nodeTTL (GET /admin/v1/nodes).

const (
	// NodesSubject carries the nodes' heartbeats.
	NodesSubject = "floodgate.ctl.nodes"
	// heartbeatEvery is how often a node publishes its heartbeat.
	heartbeatEvery = 5 * time.Second
	// nodeTTL is how long a node stays listed after its last heartbeat.
	nodeTTL = 15 * time.Second
	// maxPeers bounds the nodes kept; heartbeats of further nodes are
	// ignored until some expire.
	maxPeers = 1024
	// maxHeartbeatBytes bounds a heartbeat accepted from NATS.
	maxHeartbeatBytes = 64 << 10
)

// Heartbeat is what a node publishes about itself.
type Heartbeat struct {
	// Node is the node ID (--node-id; unique per cluster).
	Node string `json:"node"`
	// Time is when it was sent; StartedAt when the node started.
	Time      time.Time `json:"time"`
	StartedAt time.Time `json:"started_at"`
	// Sidecar is true for a REST-only node.
	Sidecar bool `json:"sidecar,omitempty"`
	// Health is the node's readiness.
	Health Health `json:"health"`
	// Stats is its latest sample (nil before the first).
	Stats *Sample `json:"stats"`
}

// NodeView is one node in GET /admin/v1/nodes.
type NodeView struct {
	Heartbeat
	// Self is the node that answered.
	Self bool `json:"self"`
	// AgeMS is how long ago its last heartbeat was received.
	AgeMS int64 `json:"age_ms"`
}

// peers holds the last heartbeat of each node. Safe for concurrent use.
type peers struct {
	// Immutable after newPeers.
	self string

	// Guarded by mu.
	mu   sync.Mutex
	seen map[string]peer
}

type peer struct {
	hb   Heartbeat
	recv time.Time
}

func newPeers(self string) *peers { return &peers{self: self, seen: map[string]peer{}} }

// put records hb as received at now; it drops expired nodes first and
// ignores a new node when maxPeers are listed.
func (p *peers) put(hb Heartbeat, now time.Time) {
	if hb.Node == "" {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.seen[hb.Node]; !ok && len(p.seen) >= maxPeers {
		p.expire(now)
		if len(p.seen) >= maxPeers {
			return
		}
	}
	p.seen[hb.Node] = peer{hb: hb, recv: now}
}

// expire drops the nodes not heard within nodeTTL. Caller holds mu.
func (p *peers) expire(now time.Time) {
	for id, pe := range p.seen {
		if now.Sub(pe.recv) > nodeTTL {
			delete(p.seen, id)
		}
	}
}

// list returns the nodes heard within nodeTTL of now, by node ID.
func (p *peers) list(now time.Time) []NodeView {
	p.mu.Lock()
	p.expire(now)
	out := make([]NodeView, 0, len(p.seen))
	for id, pe := range p.seen {
		out = append(out, NodeView{Heartbeat: pe.hb, Self: id == p.self, AgeMS: now.Sub(pe.recv).Milliseconds()})
	}
	p.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out
}

// receive is the NATS handler of NodesSubject.
func (p *peers) receive(m *nats.Msg, now time.Time) {
	if len(m.Data) > maxHeartbeatBytes {
		return
	}
	var hb Heartbeat
	if json.Unmarshal(m.Data, &hb) != nil || hb.Node == p.self {
		return // our own comes through put directly
	}
	p.put(hb, now)
}
