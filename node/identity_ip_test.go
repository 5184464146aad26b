package node_test

import (
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"floodgate/limiter"
	"floodgate/node"
)

func TestClientIP(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	for _, tc := range []struct {
		name, remote string
		xff          []string
		want         string
	}{
		{"peer only", "203.0.113.5:4000", nil, "203.0.113.5"},
		{"untrusted peer ignores XFF", "203.0.113.5:4000", []string{"1.2.3.4"}, "203.0.113.5"},
		{"trusted peer uses XFF", "10.1.2.3:4000", []string{"198.51.100.9"}, "198.51.100.9"},
		{"rightmost untrusted", "10.1.2.3:4000", []string{"1.1.1.1, 198.51.100.9, 10.9.9.9"}, "198.51.100.9"},
		{"spoofed left part ignored", "10.1.2.3:4000", []string{"6.6.6.6", "198.51.100.9"}, "198.51.100.9"},
		{"all trusted", "10.1.2.3:4000", []string{"10.2.2.2, 10.3.3.3"}, "10.2.2.2"},
		{"garbage stops walk", "10.1.2.3:4000", []string{"1.1.1.1, bogus, 10.3.3.3"}, "10.3.3.3"},
		{"no XFF from trusted", "10.1.2.3:4000", nil, "10.1.2.3"},
		{"ipv6 peer", "[2001:db8::1]:443", nil, "2001:db8::1"},
		{"ipv6 via trusted v6 proxy", "[fd00::1]:443", []string{"2001:db8::7"}, "2001:db8::7"},
		{"mapped", "[::ffff:203.0.113.5]:1", nil, "203.0.113.5"},
		{"XFF with port", "10.1.2.3:4000", []string{"[2001:db8::9]:1234"}, "2001:db8::9"},
		{"bad remote", "nonsense", nil, "invalid IP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &http.Request{RemoteAddr: tc.remote, Header: http.Header{}}
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := node.ClientIP(r, trusted).String(); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func FuzzClientIP(f *testing.F) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	f.Add("10.0.0.1:80", "1.2.3.4, 10.0.0.2")
	f.Add("[::1]:80", "[2001:db8::1]:5, ,,")
	f.Add("1.2.3.4", "")
	f.Fuzz(func(t *testing.T, remote, xff string) {
		r := &http.Request{RemoteAddr: remote, Header: http.Header{"X-Forwarded-For": {xff}}}
		a := node.ClientIP(r, trusted)
		if a.IsValid() {
			if a.Is4In6() {
				t.Fatalf("mapped address %s returned", a)
			}
			_ = limiter.AddrIdentity(a)
		}
		// Without trusted proxies the header never matters.
		if b := node.ClientIP(r, nil); a.IsValid() && b.IsValid() && !trustedPeer(remote, trusted) && a != b {
			t.Fatalf("untrusted peer %q: %s vs %s", remote, a, b)
		}
	})
}

func trustedPeer(remote string, trusted []netip.Prefix) bool {
	r := &http.Request{RemoteAddr: remote}
	a := node.ClientIP(r, nil)
	for _, p := range trusted {
		if a.IsValid() && p.Contains(a) {
			return true
		}
	}
	return false
}

// FuzzPresentedKey: a key is returned only when every non-empty key source
// names it; an empty source is INVALID_API_KEY; two different keys are
// BAD_REQUEST; a request without any key source is anonymous.
func FuzzPresentedKey(f *testing.F) {
	f.Add("AbCdEfGh_2mT8xQ9wY3kP7vN5rL1cZ", "", "floodgate.v1, key.AbCdEfGh_2mT8xQ9wY3kP7vN5rL1cZ", "", true)
	f.Add("", "x", "key.y", "", false)
	f.Add(" ", "", "key.", "a", true)
	f.Add("", "", "floodgate.v1,key.k1, key.k2", "k1", true)
	f.Fuzz(func(t *testing.T, pf, xk, proto, query string, allowQuery bool) {
		r := &http.Request{Header: http.Header{}, URL: &url.URL{}}
		var sources []string
		if pf != "" || strings.Contains(proto, "pf") {
			r.Header["Pf-Api-Key"] = []string{pf}
			sources = append(sources, pf)
		}
		if xk != "" {
			r.Header["X-Api-Key"] = []string{xk}
			sources = append(sources, xk)
		}
		if proto != "" {
			r.Header["Sec-Websocket-Protocol"] = []string{proto}
			for p := range strings.SplitSeq(proto, ",") {
				if k, ok := strings.CutPrefix(strings.TrimSpace(p), "key."); ok {
					sources = append(sources, k)
				}
			}
		}
		if query != "" {
			r.URL.RawQuery = url.Values{"api_key": {query}}.Encode()
			if allowQuery {
				sources = append(sources, query)
			}
		}
		key, empty, code := node.PresentedKey(r, allowQuery)
		distinct := map[string]bool{}
		hasEmpty := false
		for _, s := range sources {
			if s = strings.TrimSpace(s); s == "" {
				hasEmpty = true
			} else {
				distinct[s] = true
			}
		}
		switch {
		case len(distinct) > 1:
			if code != "BAD_REQUEST" || key != "" {
				t.Fatalf("sources %q: key %q code %q, want BAD_REQUEST", sources, key, code)
			}
		case hasEmpty:
			if code != "INVALID_API_KEY" || !empty || key != "" {
				t.Fatalf("sources %q: key %q empty %v code %q, want INVALID_API_KEY", sources, key, empty, code)
			}
		case len(distinct) == 1:
			if code != "" || !distinct[key] {
				t.Fatalf("sources %q: key %q code %q", sources, key, code)
			}
		default:
			if code != "" || key != "" {
				t.Fatalf("no key sources: key %q code %q", key, code)
			}
		}
	})
}
