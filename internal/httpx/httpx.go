// Package httpx holds the small HTTP helpers that more than one Floodgate
// package needs (the broker's upgrade check, the load generator's
// handshake check, the cross-origin rule of the broker and of the account
// endpoints' CORS).
//
// Concurrency: the functions are pure and safe for concurrent use.
//
// Hot path: none; they run once per upgrade.
package httpx

import (
	"net/http"
	"net/url"
	"path"
	"strings"
)

// HasToken reports whether any value of header name in h holds token as
// one of its comma-separated elements, compared case-insensitively (as
// Connection: keep-alive, Upgrade).
func HasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// OriginAllowed implements the cross-origin rule of --allowed-origins: a
// request without an Origin header (bots, servers) is allowed; a browser
// Origin is allowed when its host is the request's Host or when it
// matches one of patterns (path.Match, case-insensitive: a pattern with
// "://" matches scheme://host, any other matches the host alone, e.g.
// "*.example.com" or "https://app.example.com").
func OriginAllowed(r *http.Request, patterns []string) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	for _, p := range patterns {
		target := u.Host
		if strings.Contains(p, "://") {
			target = u.Scheme + "://" + u.Host
		}
		if ok, _ := path.Match(strings.ToLower(p), strings.ToLower(target)); ok {
			return true
		}
	}
	return false
}
