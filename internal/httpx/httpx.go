// Package httpx holds the small HTTP helpers that more than one Floodgate
// package needs (the broker's upgrade check, the load generator's
// handshake check).
//
// Concurrency: the functions are pure and safe for concurrent use.
//
// Hot path: none; they run once per upgrade.
package httpx

import (
	"net/http"
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
