package node

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"strings"

	"floodgate/internal/proto"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// apiMux serves the REST sidecar plus /healthz, /readyz, /metrics and,
// behind the admin token, /debug/pprof.
func (n *Node) apiMux() *http.ServeMux {
	mux := http.NewServeMux()
	n.mountPprof(mux)
	n.mountAdmin(mux)
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

// mountAdmin mounts the console's page and the node's /admin/v1 endpoints
// (console.Backend.Mount) and the sidecar's other /admin/v1 endpoints when
// an admin token is configured; without one nothing is mounted and /admin/
// answers the sidecar's 404.
func (n *Node) mountAdmin(mux *http.ServeMux) {
	if n.cfg.AdminToken == "" {
		return
	}
	n.console.Mount(mux)
	mux.Handle("/admin/v1/", n.sidecar)
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
	mux.Handle("GET /debug/pprof/cmdline", guard(cmdline))
	mux.Handle("GET /debug/pprof/profile", guard(pprof.Profile))
	mux.Handle("GET /debug/pprof/symbol", guard(pprof.Symbol))
	mux.Handle("GET /debug/pprof/trace", guard(pprof.Trace))
}

// cmdline is pprof's cmdline with the secrets redacted: the value of
// --admin-token, and the password of every URL (--redis-url, --nats-url).
func cmdline(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte(strings.Join(redactArgs(os.Args), "\x00")))
}

// secretFlags are the flags whose whole value is a secret.
var secretFlags = map[string]bool{"admin-token": true, "redis-password": true}

// redactArgs returns args with secret flag values replaced by
// "[redacted]" and URL passwords by "xxxxx" (both --flag value and
// --flag=value forms).
func redactArgs(args []string) []string {
	out := make([]string, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, val, hasVal := strings.Cut(a, "=")
		flag := strings.TrimLeft(name, "-")
		switch {
		case strings.HasPrefix(name, "-") && secretFlags[flag] && hasVal:
			out[i] = name + "=[redacted]"
		case strings.HasPrefix(a, "-") && secretFlags[flag] && i+1 < len(args):
			out[i], out[i+1] = a, "[redacted]"
			i++
		case strings.HasPrefix(name, "-") && hasVal:
			out[i] = name + "=" + redactURLs(val)
		default:
			out[i] = redactURLs(a)
		}
	}
	return out
}

// redactURLs hides the password of every URL in a comma-separated list.
func redactURLs(s string) string {
	if !strings.Contains(s, "://") {
		return s
	}
	parts := strings.Split(s, ",")
	for i, p := range parts {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil && u.User != nil {
			if _, has := u.User.Password(); has {
				parts[i] = u.Redacted()
			} else {
				u.User = url.User("xxxxx") // a token-only URL (nats://TOKEN@host)
				parts[i] = u.String()
			}
		} else if err != nil {
			parts[i] = "[redacted]"
		}
	}
	return strings.Join(parts, ",")
}
