package node

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"floodgate/internal/proto"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Readiness reasons: /readyz names each failing dependency with one of
// these words, plus a detail (the raw error) for operators.
const (
	ReasonDraining = "draining" // the node is shutting down
	ReasonNATS     = "nats"     // the NATS connection is down
	ReasonRedis    = "redis"    // Redis does not answer
	ReasonStore    = "store"    // the bbolt key store is not usable
	ReasonLimiter  = "limiter"  // cluster budgets degraded to local shares
	ReasonHistory  = "history"  // the history stream cannot be reached
)

// NotReady is one reason /readyz answers 503.
type NotReady struct {
	Reason string // one of the Reason constants
	Detail string // the error behind it; shown to operators only
}

// readiness lists why the node is not ready (empty: ready).
func (n *Node) readiness() []NotReady {
	var out []NotReady
	if n.broker != nil && n.broker.Draining() {
		out = append(out, NotReady{ReasonDraining, ""})
	}
	if n.nc != nil && !n.nc.IsConnected() {
		out = append(out, NotReady{ReasonNATS, strings.ToLower(n.nc.Status().String())})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := n.store.Ping(ctx); err != nil {
		reason := ReasonStore
		if n.rdb != nil {
			reason = ReasonRedis
		}
		out = append(out, NotReady{reason, err.Error()})
	}
	if err := n.limiter.Health(); err != nil {
		out = append(out, NotReady{ReasonLimiter, err.Error()})
	}
	return out
}

// apiMux serves the REST sidecar plus /healthz, /readyz, /metrics and,
// behind the admin token, /debug/pprof.
func (n *Node) apiMux() *http.ServeMux {
	mux := http.NewServeMux()
	n.mountPprof(mux)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		nr := n.readiness()
		if len(nr) == 0 {
			writeJSON(w, http.StatusOK, map[string]any{"status": "ready"})
			return
		}
		reasons := make([]string, len(nr))
		details := make(map[string]string, len(nr))
		for i, x := range nr {
			reasons[i] = x.Reason
			if x.Detail != "" {
				details[x.Reason] = x.Detail
			}
		}
		body := map[string]any{"status": "not ready", "reasons": reasons}
		if n.isAdmin(r) { // raw errors name hosts and ports: operators only
			body["details"] = details
		}
		writeJSON(w, http.StatusServiceUnavailable, body)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(n.reg, promhttp.HandlerOpts{Registry: n.reg}))
	mux.Handle("/", n.sidecar)
	return mux
}

// wsMux serves GET /ws; anything else on the websocket listener is 404.
func (n *Node) wsMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /ws", n.broker)
	notFound := proto.Refusal{Status: http.StatusNotFound, Code: proto.NotFound, Message: "websocket endpoint is GET /ws"}
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { notFound.Write(w) })
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// isAdmin reports whether r carries the admin bearer token (compared in
// constant time); always false when no token is configured.
func (n *Node) isAdmin(r *http.Request) bool {
	if n.cfg.AdminToken == "" {
		return false
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	got := sha256.Sum256([]byte(tok))
	return ok && subtle.ConstantTimeCompare(got[:], n.adminHash[:]) == 1
}

// mountPprof serves /debug/pprof/ behind the admin token; without a token
// it is not mounted (404).
func (n *Node) mountPprof(mux *http.ServeMux) {
	if n.cfg.AdminToken == "" {
		return
	}
	guard := func(h http.HandlerFunc) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !n.isAdmin(r) {
				writeJSON(w, http.StatusUnauthorized, map[string]any{"success": false, "data": nil, "error": "Invalid admin token", "code": "UNAUTHORIZED"})
				return
			}
			h(w, r)
		})
	}
	mux.Handle("GET /debug/pprof/", guard(pprof.Index))
	mux.Handle("GET /debug/pprof/cmdline", guard(pprof.Cmdline))
	mux.Handle("GET /debug/pprof/profile", guard(pprof.Profile))
	mux.Handle("GET /debug/pprof/symbol", guard(pprof.Symbol))
	mux.Handle("GET /debug/pprof/trace", guard(pprof.Trace))
}
