package limiter

import (
	"net/http"
	"net/netip"
	"strings"
)

// ClientIP returns the client address of r: the socket peer, or, when the
// peer is inside one of the trusted proxy prefixes, the right-most address
// of X-Forwarded-For that is not itself a trusted proxy (every
// X-Forwarded-For header line counts, in order). A malformed entry stops the
// walk at the last address known good. IPv4-mapped IPv6 addresses are
// unmapped. The zero Addr means RemoteAddr did not parse.
func ClientIP(r *http.Request, trusted []netip.Prefix) netip.Addr {
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
