package node

import (
	"net/http"
	"net/netip"
	"strings"

	"floodgate/internal/proto"
)

// This file is the one place that turns an upgrade request into who it is:
// the API key it presents (headers, subprotocol, query) and the client
// address (the socket peer, or X-Forwarded-For from a trusted proxy). The
// identity strings themselves ("key:<prefix>", "ip:<addr>", IPv6 by /64)
// are the limiter's (limiter.KeyIdentity, limiter.AddrIdentity), which
// keys its budgets by them.

// Refusals of presented keys.
var (
	refEmptyKey = proto.Refusal{Status: http.StatusUnauthorized, Code: proto.InvalidAPIKey, Message: "Invalid API Key"}
	refTwoKeys  = proto.Refusal{Status: http.StatusBadRequest, Code: proto.BadRequest,
		Message: "conflicting API keys: the PF-API-KEY / X-API-Key headers, the key.<key> subprotocol and ?api_key name different keys"}
)

// presentedKey returns the API key the request presents, "" when it
// presents none. A key source that is present but empty (`PF-API-KEY:`)
// is refused like an invalid key (empty is true: the caller counts it as
// a failed attempt); two sources naming different keys are refused with
// 400 BAD_REQUEST. The same key in several places is fine.
func presentedKey(r *http.Request, allowQuery bool) (key string, empty bool, ref *proto.Refusal) {
	var found bool
	note := func(k string) {
		k = strings.TrimSpace(k)
		switch {
		case ref != nil:
		case k == "":
			empty = true
		case !found:
			key, found = k, true
		case k != key:
			ref = &refTwoKeys
		}
	}
	for _, name := range [...]string{"Pf-Api-Key", "X-Api-Key"} {
		for _, v := range r.Header[name] {
			note(v)
		}
	}
	for _, v := range r.Header["Sec-Websocket-Protocol"] {
		for p := range strings.SplitSeq(v, ",") {
			if k, ok := strings.CutPrefix(strings.TrimSpace(p), "key."); ok {
				note(k)
			}
		}
	}
	if allowQuery {
		if vs, ok := r.URL.Query()["api_key"]; ok {
			for _, v := range vs {
				note(v)
			}
		}
	}
	switch {
	case ref != nil:
		return "", false, ref
	case empty:
		return "", true, &refEmptyKey
	}
	return key, false, nil
}

// clientIP returns the client address of r: the socket peer, or, when the
// peer is inside one of the trusted proxy prefixes, the right-most address
// of X-Forwarded-For that is not itself a trusted proxy (every
// X-Forwarded-For header line counts, in order). A malformed entry stops
// the walk at the last address known good. IPv4-mapped IPv6 addresses are
// unmapped. The zero Addr means RemoteAddr did not parse.
func clientIP(r *http.Request, trusted []netip.Prefix) netip.Addr {
	peer := parseHostAddr(r.RemoteAddr)
	if !peer.IsValid() || !isTrusted(peer, trusted) {
		return peer
	}
	return walkXFF(peer, r.Header.Values("X-Forwarded-For"), trusted)
}

func walkXFF(peer netip.Addr, lines []string, trusted []netip.Prefix) netip.Addr {
	client := peer
	for i := len(lines) - 1; i >= 0; i-- {
		rest := lines[i]
		for rest != "" {
			var part string
			if j := strings.LastIndexByte(rest, ','); j >= 0 {
				part, rest = rest[j+1:], rest[:j]
			} else {
				part, rest = rest, ""
			}
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			a := parseHostAddr(part)
			if !a.IsValid() {
				return client
			}
			client = a
			if !isTrusted(a, trusted) {
				return a
			}
		}
	}
	return client
}

// parseHostAddr parses "1.2.3.4", "1.2.3.4:80", "::1", "[::1]:80" or
// "[fe80::1%eth0]:80".
func parseHostAddr(s string) netip.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap()
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap()
	}
	return netip.Addr{}
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ParsePrefixes parses CIDRs or bare addresses (a bare address is its own
// /32 or /128), as --trusted-proxies takes them; the error names the bad
// entry.
func ParsePrefixes(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !strings.Contains(s, "/") {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, err
			}
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, err
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
