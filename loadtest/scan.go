package loadtest

import "bytes"

// Frame kinds seen by a load-test client, from the "channel" of a server
// frame (docs/protocol.md).
type frameKind uint8

const (
	kindMarket      frameKind = iota // any other channel: a market message
	kindSubscribe                    // subscribe ack
	kindUnsubscribe                  // unsubscribe ack
	kindPong                         // reply to {"method":"ping"}
	kindError                        // request refused
	kindNotice                       // e.g. RECONNECT
	kindUnknown                      // no "channel" at all
	kindPing                         // a Centrifugo server ping ({}): answer {}
)

// classifyFor is classify for the run's protocol.
func classifyFor(proto string, p []byte) frameKind {
	if proto == ProtocolCentrifugo {
		return classifyCentrifugo(p)
	}
	return classify(p)
}

// classifyCentrifugo classifies a Centrifugo JSON protocol frame: pushes
// are market messages; replies are recognised by their result key (a
// frame may hold several replies, one per line). 0 allocations.
func classifyCentrifugo(p []byte) frameKind {
	switch {
	case len(p) == 2 && p[0] == '{' && p[1] == '}':
		return kindPing
	case bytes.HasPrefix(p, []byte(`{"push":`)):
		return kindMarket
	case index(p, `"error":`) >= 0:
		return kindError
	case index(p, `"unsubscribe":`) >= 0:
		return kindUnsubscribe
	case index(p, `"subscribe":`) >= 0:
		return kindSubscribe
	}
	return kindUnknown
}

// classify reads the "channel" of a server frame without decoding it. The
// broker writes "channel" first ({"channel":"trades","data":...}), so this
// is a prefix check in the common case and a scan otherwise. 0 allocations.
func classify(p []byte) frameKind {
	const key = `"channel":"`
	var rest []byte
	if len(p) > len(key) && p[0] == '{' && string(p[1:1+len(key)]) == key {
		rest = p[1+len(key):]
	} else if i := index(p, key); i >= 0 {
		rest = p[i+len(key):]
	} else {
		return kindUnknown
	}
	end := bytes.IndexByte(rest, '"')
	if end < 0 {
		return kindUnknown
	}
	switch string(rest[:end]) {
	case "subscribe":
		return kindSubscribe
	case "unsubscribe":
		return kindUnsubscribe
	case "pong":
		return kindPong
	case "error":
		return kindError
	case "notice":
		return kindNotice
	}
	return kindMarket
}

// ExtractInt returns the non-negative integer that follows the first
// occurrence of the JSON key (given with its quotes and colon, e.g.
// `"ts":`) in p, allowing spaces after the colon. It scans bytes and decodes
// nothing else: 0 allocations. ok is false when the key is missing, no digit
// follows, or the number overflows int64.
func ExtractInt(p []byte, key string) (v int64, ok bool) {
	i := index(p, key)
	if i < 0 {
		return 0, false
	}
	i += len(key)
	for i < len(p) && p[i] == ' ' {
		i++
	}
	start := i
	for ; i < len(p) && p[i] >= '0' && p[i] <= '9'; i++ {
		d := int64(p[i] - '0')
		if v > (1<<63-1-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, i > start
}

// extractString returns the JSON string value (without unescaping) that
// follows key, e.g. the "code" of an error frame. It allocates the result;
// used only off the per-message path.
func extractString(p []byte, key string) string {
	i := bytes.Index(p, []byte(key))
	if i < 0 {
		return ""
	}
	rest := p[i+len(key):]
	for len(rest) > 0 && rest[0] == ' ' {
		rest = rest[1:]
	}
	if len(rest) == 0 || rest[0] != '"' {
		return ""
	}
	end := bytes.IndexByte(rest[1:], '"')
	if end < 0 {
		return ""
	}
	return string(rest[1 : 1+end])
}

// headLen is how much of a frame index searches first: keys sit near the
// start of a broker frame, and for inputs up to 64 bytes bytes.Index runs a
// SIMD brute-force search instead of stopping at every quote (2-3x faster
// on a 200-byte frame).
const headLen = 64

// index is bytes.Index(p, key) tuned for keys near the start of p.
func index(p []byte, key string) int {
	if len(p) <= headLen || len(key) > headLen {
		return bytes.Index(p, []byte(key))
	}
	if i := bytes.Index(p[:headLen], []byte(key)); i >= 0 {
		return i
	}
	off := headLen - len(key) + 1
	if i := bytes.Index(p[off:], []byte(key)); i >= 0 {
		return off + i
	}
	return -1
}
