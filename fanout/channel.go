package fanout

import (
	"errors"

	"floodgate/internal/proto"

	"github.com/valyala/fastjson"
)

// ErrForbidden is returned by Sources.Authorize for a private account
// source of another account (or an anonymous client).
var ErrForbidden = errors.New("fanout: account streams need an API key of that account")

// Channel is a validated (source, params) pair: one stream a client can
// subscribe to, and its NATS subject. Values and Subject point into the
// parser's memory or the scratch buffer given to Resolve, and are valid
// until either is reused.
type Channel struct {
	Source  *Source
	Values  [MaxParams][]byte // in Source.Params order
	Subject []byte
}

// ParamError is why subscribe params were refused: a protocol code and a
// message. Resolve returns pointers to fixed values (no allocation); the
// offending name travels separately.
type ParamError struct {
	Code    string
	Message string
}

// Refusals of Resolve.
var (
	errNoSource      = &ParamError{proto.BadRequest, "missing params.source"}
	errSourceType    = &ParamError{proto.BadRequest, "params.source must be a string"}
	errUnknownSource = &ParamError{proto.UnknownSource, "unknown source"}
	errUnknownParam  = &ParamError{proto.InvalidParams, "unknown param"}
	errDupParam      = &ParamError{proto.InvalidParams, "duplicate param"}
	errInvalidParam  = &ParamError{proto.InvalidParams, "invalid param"}
	errMissingParam  = &ParamError{proto.InvalidParams, "missing param"}
)

// Resolve validates a client's params object against the table and builds
// the channel's subject into scratch (returned, possibly grown). On a
// refusal it returns the error and the name it concerns (the param, or
// the unknown source). Every key other than "source" must be a param of
// the source; extra option keys are the caller's to strip before (see
// Options). It does not allocate once scratch has grown, except for the
// name of an unknown source.
func (t *Sources) Resolve(params *fastjson.Object, scratch []byte) (Channel, []byte, *ParamError, string) {
	return t.resolve(params, scratch, nil)
}

// ResolveSkipping is Resolve that ignores the keys for which skip returns
// true (the protocol's subscription options, such as conflate_ms).
func (t *Sources) ResolveSkipping(params *fastjson.Object, scratch []byte, skip func(key []byte) bool) (Channel, []byte, *ParamError, string) {
	return t.resolve(params, scratch, skip)
}

func (t *Sources) resolve(params *fastjson.Object, scratch []byte, skip func([]byte) bool) (Channel, []byte, *ParamError, string) {
	var ch Channel
	sv := params.Get("source")
	if sv == nil {
		return ch, scratch, errNoSource, ""
	}
	if sv.Type() != fastjson.TypeString {
		return ch, scratch, errSourceType, ""
	}
	src := t.Lookup(sv.GetStringBytes())
	if src == nil {
		return ch, scratch, errUnknownSource, string(sv.GetStringBytes())
	}
	ch.Source = src
	var seen uint
	var bad *ParamError
	var badName string
	params.Visit(func(key []byte, v *fastjson.Value) {
		if bad != nil || string(key) == "source" || (skip != nil && skip(key)) {
			return
		}
		i := src.ParamIndex(key)
		if i < 0 {
			bad, badName = errUnknownParam, string(key)
			return
		}
		if seen&(1<<i) != 0 {
			bad, badName = errDupParam, src.Params[i].Name
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
			bad, badName = errInvalidParam, src.Params[i].Name
			return
		}
		ch.Values[i] = val
	})
	if bad != nil {
		return ch, scratch, bad, badName
	}
	for i := range src.Params {
		if seen&(1<<i) == 0 {
			return ch, scratch, errMissingParam, src.Params[i].Name
		}
	}
	start := len(scratch)
	scratch = src.AppendSubject(scratch, ch.Values[:len(src.Params)])
	ch.Subject = scratch[start:]
	return ch, scratch, nil, ""
}

// Authorize applies the privacy rule of account sources: a private source
// may be subscribed only by a connection whose key belongs to the account
// named in the channel's params (ErrForbidden otherwise). account is the
// connection's key account, "" when anonymous.
func (t *Sources) Authorize(ch *Channel, account string) error {
	src := ch.Source
	if src.Private && (account == "" || account != string(ch.Values[src.AccountParam])) {
		return ErrForbidden
	}
	return nil
}
