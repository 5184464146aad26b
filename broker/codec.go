package broker

import (
	"strconv"
	"sync"
	"time"

	"floodgate/fanout"
	"floodgate/internal/jsonw"
	"floodgate/internal/proto"
	"floodgate/internal/wsframe"

	"github.com/valyala/fastjson"
)

const (
	maxIDLen               = 128
	replyHeadroom          = wsframe.MaxHeaderLen
	maxPooledReplyCapacity = 16 << 10
)

// request is a parsed client frame. Its byte slices point into the parser
// or the frame and are valid until the frame is handled.
type request struct {
	op     Op
	id     []byte // raw JSON of "id", nil when absent
	params *fastjson.Object
}

// frameError is a refusal of a client frame: an error reply.
type frameError struct {
	code string
	msg  string
}

var (
	errNotJSON       = &frameError{proto.BadRequest, "frame is not valid JSON"}
	errNotObject     = &frameError{proto.BadRequest, "frame must be a JSON object"}
	errBadID         = &frameError{proto.BadRequest, "id must be a string of at most 128 bytes or a number"}
	errNoMethod      = &frameError{proto.BadRequest, "missing method"}
	errUnknownMethod = &frameError{proto.BadRequest, "unknown method"}
	errNoParams      = &frameError{proto.BadRequest, "missing params"}
	errForbidden     = &frameError{proto.Forbidden, "account streams need an API key of that account"}
	errNoScopeMarket = &frameError{proto.Forbidden, `API key lacks scope "market"`}
	errNoScopeAcct   = &frameError{proto.Forbidden, `API key lacks scope "account"`}
	errAlready       = &frameError{proto.AlreadySubscribed, "already subscribed"}
	errNotSub        = &frameError{proto.NotSubscribed, "not subscribed"}
	errSubLimit      = &frameError{proto.SubscriptionLimit, "subscription limit reached"}
	errDelivered     = &frameError{proto.QuotaExceeded, "Rate limit exceeded: quota delivered_daily"}
	errConflate      = &frameError{proto.InvalidParams, "invalid param"}
	// errNoHistory: since or snapshot on a channel without history.
	errNoHistory = &frameError{proto.InvalidParams, "no history on this channel for param"}
	// errSinceConflate: a replay cannot be conflated.
	errSinceConflate = &frameError{proto.InvalidParams, "since cannot be combined with conflate_ms"}
	// errReplayBusy: the node runs its maximum of replays (64).
	errReplayBusy   = &frameError{proto.RateLimited, "replay limit of the node reached"}
	errChannelLimit = &frameError{proto.ChannelLimit, "node channel limit reached"}
	// errOwnerChannelLimit: one identity may open at most 10 % of the
	// node's channels.
	errOwnerChannelLimit = &frameError{proto.ChannelLimit, "channel limit of this identity reached"}
	errInternal          = &frameError{proto.Internal, "internal error"}
)

// parseRequest parses msg with p into req. The id is appended to idBuf so
// that it survives; req.id aliases the returned buffer. On error, req.id is
// still set when the frame had a valid id, so the error can echo it.
func parseRequest(p *fastjson.Parser, msg []byte, idBuf []byte) (request, []byte, *frameError) {
	var req request
	req.op = OpInvalid
	// fastjson's parser accepts some invalid numbers (NaN, -Inf, +5, --)
	// and would echo them in the id; the validator is strict, and nothing
	// is echoed from a frame it refuses.
	if fastjson.ValidateBytes(msg) != nil {
		return req, idBuf, errNotJSON
	}
	v, err := p.ParseBytes(msg)
	if err != nil {
		return req, idBuf, errNotJSON
	}
	obj, err := v.Object()
	if err != nil {
		return req, idBuf, errNotObject
	}
	if idv := obj.Get("id"); idv != nil {
		switch idv.Type() {
		case fastjson.TypeString:
			if len(idv.GetStringBytes()) > maxIDLen {
				return req, idBuf, errBadID
			}
		case fastjson.TypeNumber:
		default:
			return req, idBuf, errBadID
		}
		start := len(idBuf)
		if idv.Type() == fastjson.TypeString {
			// Re-escape as JSON: fastjson's MarshalTo would write Go
			// escapes for control characters and pass invalid UTF-8.
			idBuf = jsonw.AppendBytes(idBuf, idv.GetStringBytes())
		} else {
			idBuf = idv.MarshalTo(idBuf)
		}
		req.id = idBuf[start:]
	}
	mv := obj.Get("method")
	if mv == nil || mv.Type() != fastjson.TypeString {
		return req, idBuf, errNoMethod
	}
	switch string(mv.GetStringBytes()) {
	case "subscribe":
		req.op = OpSubscribe
	case "unsubscribe":
		req.op = OpUnsubscribe
	case "ping":
		req.op = OpPing
		return req, idBuf, nil
	default:
		return req, idBuf, errUnknownMethod
	}
	pv := obj.Get("params")
	if pv == nil || pv.Type() != fastjson.TypeObject {
		return req, idBuf, errNoParams
	}
	req.params, _ = pv.Object()
	return req, idBuf, nil
}

// replyBuf is a pooled, per-session direct reply: a complete websocket
// frame in b[off:].
type replyBuf struct {
	b   []byte
	off int
}

// replyPool holds replyBufs. A buffer is valid from get until the writer
// has written it; put resets it and drops buffers over 16 KiB.
type replyPool struct{ p sync.Pool }

func (rp *replyPool) get() *replyBuf {
	if v := rp.p.Get(); v != nil {
		r := v.(*replyBuf)
		r.b = r.b[:replyHeadroom]
		return r
	}
	return &replyBuf{b: make([]byte, replyHeadroom, 256)}
}

func (rp *replyPool) put(r *replyBuf) {
	if cap(r.b) > maxPooledReplyCapacity {
		return
	}
	r.off = 0
	rp.p.Put(r)
}

// finish writes the websocket header in front of the JSON text.
func (r *replyBuf) finish() {
	n := len(r.b) - replyHeadroom
	hl := wsframe.HeaderLen(n)
	r.off = replyHeadroom - hl
	wsframe.AppendHeader(r.b[r.off:r.off], wsframe.OpText, n)
}

func (r *replyBuf) wire() []byte { return r.b[r.off:] }

func appendTail(b []byte, id []byte, d *Decision) []byte {
	if id != nil {
		b = append(b, `,"id":`...)
		b = append(b, id...)
	}
	if d != nil && d.HasRL {
		b = append(b, `,"rl":{"r":`...)
		b = strconv.AppendInt(b, d.RL.Remaining, 10)
		b = append(b, `,"q":`...)
		b = strconv.AppendInt(b, d.RL.Quota, 10)
		b = append(b, `,"t":`...)
		b = strconv.AppendInt(b, d.RL.Reset, 10)
		b = append(b, '}')
	}
	return append(b, '}')
}

// ackFields are what a subscribe ack says beyond the channel: the
// options echoed in data, and the history state as top-level fields.
type ackFields struct {
	conflateMs int64  // echoed when not 0
	since      uint64 // echoed when hasSince
	hasSince   bool
	snapshot   bool // echoed when true
	sequenced  bool // "seq" and "epoch" follow the data
	seq        uint64
	epoch      int64
	recovered  int8 // 0: no "recovered"; 1 true; -1 false
}

// appendAck appends {"channel":"<method>","data":{"source":..,params..}...}
// with the options of x (nil: none) echoed in data and its history state
// ("seq", "epoch", "recovered") after it.
func appendAck(b []byte, method string, ch *fanout.Channel, x *ackFields, id []byte, d *Decision) []byte {
	b = append(b, `{"channel":"`...)
	b = append(b, method...)
	b = append(b, `","data":{`...)
	b = appendChannelParams(b, ch)
	if x == nil {
		b = append(b, '}')
		return appendTail(b, id, d)
	}
	if x.conflateMs != 0 {
		b = append(b, `,"conflate_ms":`...)
		b = strconv.AppendInt(b, x.conflateMs, 10)
	}
	if x.hasSince {
		b = append(b, `,"since":`...)
		b = strconv.AppendUint(b, x.since, 10)
	}
	if x.snapshot {
		b = append(b, `,"snapshot":true`...)
	}
	b = append(b, '}')
	if x.sequenced {
		b = append(b, `,"seq":`...)
		b = strconv.AppendUint(b, x.seq, 10)
		b = append(b, `,"epoch":`...)
		b = strconv.AppendInt(b, x.epoch, 10)
	}
	switch x.recovered {
	case 1:
		b = append(b, `,"recovered":true`...)
	case -1:
		b = append(b, `,"recovered":false`...)
	}
	return appendTail(b, id, d)
}

func appendPong(b []byte, id []byte, d *Decision) []byte {
	b = append(b, `{"channel":"pong"`...)
	return appendTail(b, id, d)
}

// appendError appends an error reply. detail, when non-empty, is quoted
// after the message (it may be client input and is escaped).
func appendError(b []byte, fe *frameError, detail string, retryAfterMs int64, id []byte, d *Decision) []byte {
	b = append(b, `{"channel":"error","data":{"code":"`...)
	b = append(b, fe.code...)
	b = append(b, `","message":`...)
	if detail == "" {
		b = jsonw.AppendString(b, fe.msg)
	} else {
		b = jsonw.AppendString(b, fe.msg+" "+strconv.Quote(detail))
	}
	if retryAfterMs > 0 {
		b = append(b, `,"retry_after_ms":`...)
		b = strconv.AppendInt(b, retryAfterMs, 10)
	}
	b = append(b, '}')
	return appendTail(b, id, d)
}

// appendChannelParams appends "source":"<name>" and the channel's params
// in canonical form (table order, int params as numbers), without braces.
func appendChannelParams(b []byte, ch *fanout.Channel) []byte {
	b = append(b, `"source":"`...)
	b = append(b, ch.Source.Name...)
	b = append(b, '"')
	for i := range ch.Source.Params {
		p := &ch.Source.Params[i]
		b = append(b, ',', '"')
		b = append(b, p.Name...)
		b = append(b, '"', ':')
		if p.Kind == fanout.KindInt {
			b = append(b, ch.Values[i]...) // digits only, validated
		} else {
			b = append(b, '"')
			b = append(b, ch.Values[i]...) // [A-Za-z0-9_-] only, validated
			b = append(b, '"')
		}
	}
	return b
}

// appendEnded appends the SUBSCRIPTION_ENDED notice of ch:
// {"channel":"notice","data":{"code":"SUBSCRIPTION_ENDED","source":..,
// "params":{"source":..,<params>},"reason":"<reason>"}}. params is what a
// subscribe of the same channel sends (without options).
func appendEnded(b []byte, ch *fanout.Channel, reason string) []byte {
	b = append(b, `{"channel":"notice","data":{"code":"`...)
	b = append(b, proto.NoticeSubscriptionEnded...)
	b = append(b, `","source":"`...)
	b = append(b, ch.Source.Name...)
	b = append(b, `","params":{`...)
	b = appendChannelParams(b, ch)
	b = append(b, `},"reason":`...)
	b = jsonw.AppendString(b, reason)
	return append(b, '}', '}')
}

// appendExpiring appends {"channel":"notice","data":{"code":"KEY_EXPIRING",
// "expires_at":"<RFC 3339 UTC>","in_ms":N}}.
func appendExpiring(b []byte, exp time.Time, inMs int64) []byte {
	b = append(b, `{"channel":"notice","data":{"code":"`...)
	b = append(b, proto.NoticeKeyExpiring...)
	b = append(b, `","expires_at":"`...)
	b = exp.UTC().AppendFormat(b, time.RFC3339)
	b = append(b, `","in_ms":`...)
	b = strconv.AppendInt(b, max(inMs, 0), 10)
	return append(b, '}', '}')
}

func appendNotice(b []byte, code string, inMs int64) []byte {
	b = append(b, `{"channel":"notice","data":{"code":"`...)
	b = append(b, code...)
	b = append(b, `","in_ms":`...)
	b = strconv.AppendInt(b, inMs, 10)
	return append(b, '}', '}')
}
