// Package proto is the shared vocabulary of Floodgate's client protocol:
// every error and notice code a client can see, and the pre-upgrade
// [Refusal] with its HTTP status, code, message and RateLimit fields.
//
// The broker, the limiter, the key store's REST sidecar and the node all
// speak these codes; docs/protocol.md keeps one table of them, and a test
// holds the table and [Codes] equal.
//
// # Concurrency
//
// Everything here is immutable or pure; safe for concurrent use.
//
// # Hot path
//
// None of it runs per message: a Refusal is built and written once per
// refused upgrade (a few allocations).
package proto

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// Error codes of refused upgrades (HTTP) and error frames (websocket).
const (
	BadRequest        = "BAD_REQUEST"
	NotFound          = "NOT_FOUND"
	UnknownSource     = "UNKNOWN_SOURCE"
	InvalidParams     = "INVALID_PARAMS"
	AlreadySubscribed = "ALREADY_SUBSCRIBED"
	NotSubscribed     = "NOT_SUBSCRIBED"
	SubscriptionLimit = "SUBSCRIPTION_LIMIT"
	ChannelLimit      = "CHANNEL_LIMIT"
	RateLimited       = "RATE_LIMITED"
	QuotaExceeded     = "QUOTA_EXCEEDED"
	Forbidden         = "FORBIDDEN"
	Internal          = "INTERNAL"
	Unavailable       = "UNAVAILABLE"

	InvalidAPIKey      = "INVALID_API_KEY"
	InactiveAPIKey     = "INACTIVE_API_KEY"
	ExpiredAPIKey      = "EXPIRED_API_KEY"
	IPBlocked          = "IP_BLOCKED"
	TooManyConnections = "TOO_MANY_CONNECTIONS"
	ConnectRate        = "CONNECT_RATE"
	OriginNotAllowed   = "ORIGIN_NOT_ALLOWED"
	Draining           = "DRAINING"
	TooManyPending     = "TOO_MANY_PENDING"
	IPNotAllowed       = "IP_NOT_ALLOWED"
)

// Notice codes: {"channel":"notice","data":{"code":...}}.
const (
	NoticeReconnect = "RECONNECT"
	// NoticeKeyExpiring: the connection's key expires within
	// keys.expiry_notice ("expires_at", "in_ms").
	NoticeKeyExpiring = "KEY_EXPIRING"
	// NoticeSubscriptionEnded: the node ended one subscription
	// ("source", "params", "reason": the code of why).
	NoticeSubscriptionEnded = "SUBSCRIPTION_ENDED"
)

// Codes lists every code above, errors then notices, for the documentation
// test.
var Codes = []string{
	BadRequest, NotFound, UnknownSource, InvalidParams, AlreadySubscribed, NotSubscribed,
	SubscriptionLimit, ChannelLimit, RateLimited, QuotaExceeded, Forbidden, Internal, Unavailable,
	InvalidAPIKey, InactiveAPIKey, ExpiredAPIKey, IPBlocked, TooManyConnections,
	ConnectRate, OriginNotAllowed, Draining, TooManyPending, IPNotAllowed,
	NoticeReconnect, NoticeKeyExpiring, NoticeSubscriptionEnded,
}

// Refusal is an upgrade (or REST request) refused before anything else
// happens: an HTTP status with the JSON body {"error":Message,"code":Code}
// and, when set, Retry-After and the IETF RateLimit fields. A *Refusal is
// an error; Err, when set, is what errors.Is matches (the limiter's
// sentinels).
type Refusal struct {
	// Status is the HTTP status code.
	Status int
	// Code is the protocol code, e.g. INVALID_API_KEY.
	Code string
	// Message is the human-readable error.
	Message string
	// RetryAfter, when positive, is sent as Retry-After in whole seconds,
	// rounded up (never early).
	RetryAfter time.Duration
	// Policy and RateLimit are the RateLimit-Policy and RateLimit field
	// values (PolicyHeader, RateLimitHeader); empty: not sent.
	Policy    string
	RateLimit string
	// Err is the sentinel error the refusal unwraps to; may be nil.
	Err error
}

// Error implements error.
func (r *Refusal) Error() string {
	if r.Err != nil {
		return r.Err.Error() + ": " + r.Message
	}
	return r.Code + ": " + r.Message
}

// Unwrap returns Err.
func (r *Refusal) Unwrap() error { return r.Err }

// RetryAfterSeconds is RetryAfter in whole seconds, rounded up: the
// Retry-After value (0 when RetryAfter is not positive).
func (r *Refusal) RetryAfterSeconds() int64 { return CeilSeconds(r.RetryAfter) }

// SetHeaders sets Retry-After, RateLimit-Policy and RateLimit on h.
func (r *Refusal) SetHeaders(h http.Header) {
	if r.RetryAfter > 0 {
		h.Set("Retry-After", strconv.FormatInt(r.RetryAfterSeconds(), 10))
	}
	if r.Policy != "" {
		h.Set("RateLimit-Policy", r.Policy)
	}
	if r.RateLimit != "" {
		h.Set("RateLimit", r.RateLimit)
	}
}

// Write answers the request with the refusal. The connection is closed
// after the response (Connection: close): a refused client does not keep
// a socket of the node.
func (r *Refusal) Write(w http.ResponseWriter) {
	h := w.Header()
	r.SetHeaders(h)
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Connection", "close")
	w.WriteHeader(r.Status)
	b, _ := json.Marshal(struct {
		Error string `json:"error"`
		Code  string `json:"code"`
	}{r.Message, r.Code})
	_, _ = w.Write(append(b, '\n'))
}

// PolicyHeader formats one RateLimit-Policy item: `"name";q=Q;w=W` (w in
// whole seconds, rounded up; left out when window is 0).
func PolicyHeader(name string, q int64, window time.Duration) string {
	s := `"` + name + `";q=` + strconv.FormatInt(q, 10)
	if window > 0 {
		s += ";w=" + strconv.FormatInt(CeilSeconds(window), 10)
	}
	return s
}

// RateLimitHeader formats one RateLimit item: `"name";r=R;t=T` (t in whole
// seconds, rounded up; a negative r is sent as 0).
func RateLimitHeader(name string, remaining int64, reset time.Duration) string {
	return `"` + name + `";r=` + strconv.FormatInt(max(remaining, 0), 10) + ";t=" + strconv.FormatInt(CeilSeconds(reset), 10)
}

// CeilSeconds is d in whole seconds, rounded up; 0 for d <= 0.
func CeilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}
