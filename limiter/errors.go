package limiter

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Sentinel errors. A refused admission is a *Refusal that unwraps to one of
// the first five.
var (
	ErrIPBlocked          = errors.New("limiter: IP temporarily blocked")
	ErrCooldown           = errors.New("limiter: identity cooling down after repeated violations")
	ErrConnectRate        = errors.New("limiter: connect rate exceeded")
	ErrTooManyConnections = errors.New("limiter: too many concurrent connections")
	ErrQuotaExceeded      = errors.New("limiter: quota exceeded")

	// ErrInvalidConfig is wrapped by every error of Config.Validate.
	ErrInvalidConfig = errors.New("limiter: invalid config")
	// ErrInvalidRequest is returned by Admit for an empty identity.
	ErrInvalidRequest = errors.New("limiter: invalid admission request")
	// ErrClusterDegraded is wrapped by Health while Redis is unreachable and
	// the node enforces its local share.
	ErrClusterDegraded = errors.New("limiter: cluster budgets unavailable")
	// ErrClosed is returned by Run after Close.
	ErrClosed = errors.New("limiter: closed")
)

// Refusal is an admission refused for limits: the HTTP answer the broker
// sends before the upgrade. It unwraps to ErrIPBlocked, ErrCooldown,
// ErrConnectRate, ErrTooManyConnections or ErrQuotaExceeded.
type Refusal struct {
	// Status is the HTTP status: 403, 429 or 401.
	Status int
	// Code and Message form the JSON body {"error":Message,"code":Code}.
	Code    string
	Message string
	// RetryAfter is when trying again can succeed; 0 when unknown (total
	// quota).
	RetryAfter time.Duration
	// Policy and RateLimit are the values of the RateLimit-Policy and
	// RateLimit header fields, e.g. `"connects";q=300;w=300` and
	// `"connects";r=0;t=1`. Empty when not applicable.
	Policy    string
	RateLimit string

	err error
}

func (r *Refusal) Error() string { return r.err.Error() + ": " + r.Message }
func (r *Refusal) Unwrap() error { return r.err }

// RetryAfterSeconds is RetryAfter rounded up to whole seconds, at least 1
// when RetryAfter > 0: the value of the Retry-After header.
func (r *Refusal) RetryAfterSeconds() int64 { return ceilSeconds(r.RetryAfter) }

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

// PolicyHeader formats one IETF RateLimit-Policy item: `"name";q=Q;w=W`
// (w in whole seconds, left out when window is 0).
func PolicyHeader(name string, q int64, window time.Duration) string {
	s := `"` + name + `";q=` + strconv.FormatInt(q, 10)
	if window > 0 {
		s += ";w=" + strconv.FormatInt(ceilSeconds(window), 10)
	}
	return s
}

// RateLimitHeader formats one IETF RateLimit item: `"name";r=R;t=T` (t in
// whole seconds, rounded up).
func RateLimitHeader(name string, remaining int64, reset time.Duration) string {
	if remaining < 0 {
		remaining = 0
	}
	return `"` + name + `";r=` + strconv.FormatInt(remaining, 10) + ";t=" + strconv.FormatInt(ceilSeconds(reset), 10)
}

func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

func refusal(err error, status int, code, msg string, retry time.Duration) *Refusal {
	return &Refusal{Status: status, Code: code, Message: msg, RetryAfter: retry, err: err}
}

func (r *Refusal) withHeaders(policy, rl string) *Refusal {
	r.Policy, r.RateLimit = policy, rl
	return r
}

func newIPBlocked(retry time.Duration) *Refusal {
	return refusal(ErrIPBlocked, http.StatusForbidden, "IP_BLOCKED", "IP temporarily blocked", retry)
}

func newQuotaRefusal(w QuotaWindow, limit, used int64, retry time.Duration) *Refusal {
	name := "quota-" + w.String()
	r := refusal(ErrQuotaExceeded, http.StatusUnauthorized, "QUOTA_EXCEEDED",
		fmt.Sprintf("Rate limit exceeded: quota %s", w), retry)
	return r.withHeaders(PolicyHeader(name, limit, w.Duration()), RateLimitHeader(name, limit-used, retry))
}
