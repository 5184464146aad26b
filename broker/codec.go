package broker

import (
	"strconv"
	"sync"

	"floodgate/fanout"
	"floodgate/internal/jsonw"
	"floodgate/internal/wsframe"

	"github.com/valyala/fastjson"
)

// Protocol error codes (protocol.md).
const (
	CodeBadRequest         = "BAD_REQUEST"
	CodeUnknownSource      = "UNKNOWN_SOURCE"
	CodeInvalidParams      = "INVALID_PARAMS"
	CodeAlreadySubscribed  = "ALREADY_SUBSCRIBED"
	CodeNotSubscribed      = "NOT_SUBSCRIBED"
	CodeSubscriptionLimit  = "SUBSCRIPTION_LIMIT"
	CodeRateLimited        = "RATE_LIMITED"
	CodeQuotaExceeded      = "QUOTA_EXCEEDED"
	CodeForbidden          = "FORBIDDEN"
	CodeInternal           = "INTERNAL"
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
	errNotJSON       = &frameError{CodeBadRequest, "frame is not valid JSON"}
	errNotObject     = &frameError{CodeBadRequest, "frame must be a JSON object"}
	errBadID         = &frameError{CodeBadRequest, "id must be a string of at most 128 bytes or a number"}
	errNoMethod      = &frameError{CodeBadRequest, "missing method"}
	errUnknownMethod = &frameError{CodeBadRequest, "unknown method"}
	errNoParams      = &frameError{CodeBadRequest, "missing params"}
	errNoSource      = &frameError{CodeBadRequest, "missing params.source"}
	errUnknownSource = &frameError{CodeUnknownSource, "unknown source"}
	errForbidden     = &frameError{CodeForbidden, "account streams need an API key of that account"}
	errAlready       = &frameError{CodeAlreadySubscribed, "already subscribed"}
	errNotSub        = &frameError{CodeNotSubscribed, "not subscribed"}
	errSubLimit      = &frameError{CodeSubscriptionLimit, "subscription limit reached"}
	errInternal      = &frameError{CodeInternal, "internal error"}
)

// parseRequest parses msg with p into req. The id is appended to idBuf so
// that it survives; req.id aliases the returned buffer. On error, req.id is
// still set when the frame had a valid id, so the error can echo it.
func parseRequest(p *fastjson.Parser, msg []byte, idBuf []byte) (request, []byte, *frameError) {
	var req request
	req.op = OpInvalid
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

// channelRef is a validated (source, params) pair.
type channelRef struct {
	src     *fanout.Source
	values  [fanout.MaxParams][]byte // in src.Params order
	subject []byte
}

// resolveChannel validates params against the sources table and builds the
// subject into scratch. Values point into the parser or scratch.
func resolveChannel(t *fanout.Sources, params *fastjson.Object, scratch []byte) (channelRef, []byte, *frameError, string) {
	var ref channelRef
	sv := params.Get("source")
	if sv == nil {
		return ref, scratch, errNoSource, ""
	}
	if sv.Type() != fastjson.TypeString {
		return ref, scratch, &frameError{CodeBadRequest, "params.source must be a string"}, ""
	}
	src := t.Lookup(sv.GetStringBytes())
	if src == nil {
		return ref, scratch, errUnknownSource, string(sv.GetStringBytes())
	}
	ref.src = src
	var seen uint
	var bad *frameError
	var badName string
	params.Visit(func(key []byte, v *fastjson.Value) {
		if bad != nil || string(key) == "source" {
			return
		}
		i := src.ParamIndex(key)
		if i < 0 {
			bad, badName = &frameError{CodeInvalidParams, "unknown param"}, string(key)
			return
		}
		if seen&(1<<i) != 0 {
			bad, badName = &frameError{CodeInvalidParams, "duplicate param"}, src.Params[i].Name
			return
		}
		seen |= 1 << i
		var val []byte
		switch v.Type() {
		case fastjson.TypeString:
			val = v.GetStringBytes()
		case fastjson.TypeNumber:
			start := len(scratch)
			scratch = v.MarshalTo(scratch)
			val = scratch[start:]
		}
		if val == nil || !src.Params[i].Allowed(val) {
			bad, badName = &frameError{CodeInvalidParams, "invalid param"}, src.Params[i].Name
			return
		}
		ref.values[i] = val
	})
	if bad != nil {
		return ref, scratch, bad, badName
	}
	for i := range src.Params {
		if seen&(1<<i) == 0 {
			return ref, scratch, &frameError{CodeInvalidParams, "missing param"}, src.Params[i].Name
		}
	}
	start := len(scratch)
	scratch = src.AppendSubject(scratch, ref.values[:len(src.Params)])
	ref.subject = scratch[start:]
	return ref, scratch, nil, ""
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

// appendAck appends {"channel":"<method>","data":{"source":..,params..}...}.
func appendAck(b []byte, method string, ref *channelRef, id []byte, d *Decision) []byte {
	b = append(b, `{"channel":"`...)
	b = append(b, method...)
	b = append(b, `","data":{"source":"`...)
	b = append(b, ref.src.Name...)
	b = append(b, '"')
	for i := range ref.src.Params {
		p := &ref.src.Params[i]
		b = append(b, ',', '"')
		b = append(b, p.Name...)
		b = append(b, '"', ':')
		if p.Kind == fanout.KindInt {
			b = append(b, ref.values[i]...) // digits only, validated
		} else {
			b = append(b, '"')
			b = append(b, ref.values[i]...) // [A-Za-z0-9_-] only, validated
			b = append(b, '"')
		}
	}
	b = append(b, '}')
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

func appendNotice(b []byte, code string, inMs int64) []byte {
	b = append(b, `{"channel":"notice","data":{"code":"`...)
	b = append(b, code...)
	b = append(b, `","in_ms":`...)
	b = strconv.AppendInt(b, inMs, 10)
	return append(b, '}', '}')
}
