package httpx_test

import (
	"net/http"
	"testing"

	"floodgate/internal/httpx"
)

func TestHasToken(t *testing.T) {
	h := http.Header{"Connection": {"keep-alive, Upgrade"}, "Upgrade": {"WebSocket"}}
	if !httpx.HasToken(h, "Connection", "upgrade") || !httpx.HasToken(h, "Upgrade", "websocket") {
		t.Fatal("tokens not found")
	}
	if httpx.HasToken(h, "Connection", "close") || httpx.HasToken(h, "Connection", "keep") {
		t.Fatal("a token matched that is not there")
	}
}

func TestOriginAllowed(t *testing.T) {
	for _, tc := range []struct {
		origin, host string
		patterns     []string
		want         bool
	}{
		{"", "node.example:8080", nil, true},                                         // bots send none
		{"https://node.example:8080", "node.example:8080", nil, true},                // same host
		{"https://evil.example", "node.example", nil, false},                         // cross-origin
		{"https://app.example.com", "node.example", []string{"*.example.com"}, true}, // host pattern
		{"http://app.example.com", "node.example", []string{"https://*.example.com"}, false},
		{"https://APP.example.com", "node.example", []string{"https://app.example.com"}, true},
		{"null", "node.example", []string{"*"}, false}, // opaque origin: no host
		{"%zz", "node.example", []string{"*"}, false},
	} {
		r := &http.Request{Host: tc.host, Header: http.Header{}}
		if tc.origin != "" {
			r.Header.Set("Origin", tc.origin)
		}
		if got := httpx.OriginAllowed(r, tc.patterns); got != tc.want {
			t.Errorf("Origin %q Host %q patterns %v: %v, want %v", tc.origin, tc.host, tc.patterns, got, tc.want)
		}
	}
}
