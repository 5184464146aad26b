package console

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"floodgate/broker"
	"floodgate/keyapi"
)

// The Backend's endpoints under /admin/v1 (behind the admin token), plus
// the console page itself at /admin/. The key endpoints of /admin/v1 stay
// keyapi's (the node mounts them).

// adminRoute is one endpoint the Backend serves.
type adminRoute struct {
	method, pattern string
	h               http.HandlerFunc
}

// routes are the operator endpoints the node serves itself (the others
// under /admin/v1 are keyapi's). keyapi/openapi.json documents them
// with "x-served-by": "node".
func (b *Backend) routes() []adminRoute {
	return []adminRoute{
		{"GET", "/admin/v1/stats", b.handleStats},
		{"GET", "/admin/v1/top-keys", b.handleTopKeys},
		{"GET", "/admin/v1/nodes", b.handleNodes},
	}
}

// Routes lists the endpoints Mount adds, as "METHOD /path".
func (b *Backend) Routes() []string {
	out := make([]string, 0, 3)
	for _, rt := range b.routes() {
		out = append(out, rt.method+" "+rt.pattern)
	}
	return out
}

// Mount adds the endpoints (behind Options.Authorized) and the console
// page (Handler, at Prefix) to mux. The node mounts them only when an
// admin token is configured.
func (b *Backend) Mount(mux *http.ServeMux) {
	for _, rt := range b.routes() {
		h := rt.h
		mux.HandleFunc(rt.method+" "+rt.pattern, func(w http.ResponseWriter, r *http.Request) {
			if !b.o.Authorized(r) {
				w.Header().Set("WWW-Authenticate", `Bearer realm="floodgate admin"`)
				adminError(w, http.StatusUnauthorized, "UNAUTHORIZED", "Invalid admin token")
				return
			}
			h(w, r)
		})
	}
	mux.Handle(Prefix, Handler())
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
func (b *Backend) handleStats(w http.ResponseWriter, r *http.Request) {
	var since int64
	if q := r.URL.Query().Get("since"); q != "" {
		v, err := strconv.ParseInt(q, 10, 64)
		if err != nil || v < 0 {
			adminError(w, http.StatusBadRequest, "BAD_REQUEST", "Invalid field since: must be Unix milliseconds")
			return
		}
		since = v
	}
	samples, h := b.stats.since(since)
	adminData(w, StatsView{Node: b.o.NodeID, Now: b.o.Now().UTC(), IntervalMS: statsInterval.Milliseconds(),
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
func (b *Backend) handleTopKeys(w http.ResponseWriter, r *http.Request) {
	limit := 10
	if q := r.URL.Query().Get("n"); q != "" {
		v, err := strconv.Atoi(q)
		if err != nil || v < 1 || v > 100 {
			adminError(w, http.StatusBadRequest, "BAD_REQUEST", "Invalid field n: must be 1..100")
			return
		}
		limit = v
	}
	now := b.o.Now()
	live := map[string]broker.KeyStat{}
	for _, k := range b.o.TopKeys() {
		live[k.Prefix] = k
	}
	out := TopKeysView{Node: b.o.NodeID, WindowMS: topWindow.Milliseconds(), Traffic: []KeyTraffic{}, Refusals: []KeyRefusal{}}
	for _, c := range b.traffic.top.top(limit, now) {
		k := live[c.Key]
		out.Traffic = append(out.Traffic, KeyTraffic{Prefix: c.Key, MsgsIn: c.Parts["in"], MsgsOut: c.Parts["out"], Connections: k.Connections,
			MessagesDelivered: k.Delivered.Msgs, BytesDelivered: k.Delivered.Bytes})
	}
	for _, c := range b.refusals.t.top(limit, now) {
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
func (b *Backend) handleNodes(w http.ResponseWriter, r *http.Request) {
	adminData(w, NodesView{TTLMS: nodeTTL.Milliseconds(), Nodes: b.peers.list(b.o.Now())})
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

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
