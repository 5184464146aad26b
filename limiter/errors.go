package limiter

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"floodgate/internal/proto"
)

// Sentinel errors. A refused admission is a *proto.Refusal that unwraps to
// one of the first five.
var (
	ErrIPBlocked          = errors.New("limiter: IP temporarily blocked")
	ErrCooldown           = errors.New("limiter: identity cooling down after repeated violations")
	ErrConnectRate        = errors.New("limiter: connect rate exceeded")
	ErrTooManyConnections = errors.New("limiter: too many concurrent connections")
	ErrQuotaExceeded      = errors.New("limiter: quota exceeded")
	// ErrAPIRate is what the refusal of AllowAPI unwraps to.
	ErrAPIRate = errors.New("limiter: API request rate exceeded")

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

// refusal builds a limits refusal: a *proto.Refusal that unwraps to err.
func refusal(err error, status int, code, msg string, retry time.Duration) *proto.Refusal {
	return &proto.Refusal{Status: status, Code: code, Message: msg, RetryAfter: retry, Err: err}
}

func withHeaders(r *proto.Refusal, policy, rl string) *proto.Refusal {
	r.Policy, r.RateLimit = policy, rl
	return r
}

// newIPBlocked is the 403 of a blocked IP; its RateLimit fields name the
// failed-key policy ("ip_block", MaxAttempts per Window).
func newIPBlocked(fk *FailedKeys, retry time.Duration) *proto.Refusal {
	r := refusal(ErrIPBlocked, http.StatusForbidden, proto.IPBlocked, "IP temporarily blocked", retry)
	return withHeaders(r, proto.PolicyHeader("ip_block", int64(fk.MaxAttempts), fk.Window), proto.RateLimitHeader("ip_block", 0, retry))
}

func newQuotaRefusal(w QuotaWindow, limit, used int64, retry time.Duration) *proto.Refusal {
	name := "quota-" + w.String()
	r := refusal(ErrQuotaExceeded, http.StatusUnauthorized, proto.QuotaExceeded,
		fmt.Sprintf("Rate limit exceeded: quota %s", w), retry)
	return withHeaders(r, proto.PolicyHeader(name, limit, w.Duration()), proto.RateLimitHeader(name, limit-used, retry))
}
