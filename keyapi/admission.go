package keyapi

import (
	"errors"
	"net/http"
	"time"

	"floodgate/internal/httpx"
	"floodgate/internal/proto"
	"floodgate/limiter"
)

// Admission of REST requests before they cost anything: the per-IP
// budgets of the account and status endpoints (through the limiter), the
// failed-key IP block, and the account endpoints' CORS.

// allowAPI takes one request of r's client from the budget of api; on a
// refusal it answers (429) and returns false. The RateLimit fields are
// set either way.
func (s *Server) allowAPI(w http.ResponseWriter, r *http.Request, api limiter.API, now time.Time) bool {
	if s.opts.Limiter == nil {
		return true
	}
	d := s.opts.Limiter.AllowAPI(api, s.opts.ClientIP(r), now)
	if d.Refusal != nil {
		writeRefusal(w, d.Refusal)
		return false
	}
	w.Header().Set("RateLimit-Policy", d.Policy)
	w.Header().Set("RateLimit", d.RateLimit)
	return true
}

// ipBlocked answers 403 IP_BLOCKED and returns true while r's client is
// blocked for failed key attempts.
func (s *Server) ipBlocked(w http.ResponseWriter, r *http.Request, now time.Time) bool {
	if s.opts.Limiter == nil {
		return false
	}
	if err := s.opts.Limiter.CheckIP(s.opts.ClientIP(r), now); err != nil {
		writeRefusal(w, refusalOf(err))
		return true
	}
	return false
}

// failedKey records a failed key attempt of r's client and answers: 401
// INVALID_API_KEY, or 403 IP_BLOCKED once the attempt blocks the IP.
func (s *Server) failedKey(w http.ResponseWriter, r *http.Request, now time.Time) {
	s.failedKeyWith(w, r, now, errInvalidKey)
}

// errIPNotAllowed answers a key used from an IP outside its allowed_cidrs.
var errIPNotAllowed = &apiError{http.StatusForbidden, proto.IPNotAllowed, "IP not allowed for this API key"}

// failedKeyWith is failedKey answering ae unless the IP gets blocked.
func (s *Server) failedKeyWith(w http.ResponseWriter, r *http.Request, now time.Time, ae *apiError) {
	if s.opts.Limiter != nil {
		if err := s.opts.Limiter.FailedKey(s.opts.ClientIP(r), now); err != nil {
			writeRefusal(w, refusalOf(err))
			return
		}
	}
	s.fail(w, ae)
}

var errOrigin = &apiError{http.StatusForbidden, "ORIGIN_NOT_ALLOWED", "origin not allowed"}

// account wraps an account endpoint: the origin rule (CORS for
// AllowedOrigins), then the per-IP budget, before the body is read or a
// signature checked.
func (s *Server) account(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.cors(w, r) {
			return
		}
		if !s.allowAPI(w, r, limiter.APIAccount, s.opts.Now()) {
			return
		}
		h(w, r)
	}
}

// cors applies the cross-origin rule to an account request: no Origin or
// the API's own host passes as is; an allowed origin passes with
// Access-Control-Allow-Origin; any other origin is answered 403
// ORIGIN_NOT_ALLOWED and cors returns false.
func (s *Server) cors(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	w.Header().Add("Vary", "Origin")
	if !httpx.OriginAllowed(r, s.opts.AllowedOrigins) {
		s.fail(w, errOrigin)
		return false
	}
	w.Header().Set("Access-Control-Allow-Origin", origin)
	return true
}

// handlePreflight answers OPTIONS on an account endpoint: for an allowed
// origin, 204 with the CORS fields (POST, Content-Type, cached 10 min);
// without an Origin, 204 with Allow; any other origin 403.
func (s *Server) handlePreflight(w http.ResponseWriter, r *http.Request) {
	if !s.cors(w, r) {
		return
	}
	h := w.Header()
	h.Set("Allow", "POST, OPTIONS")
	if r.Header.Get("Origin") != "" {
		h.Set("Access-Control-Allow-Methods", "POST")
		h.Set("Access-Control-Allow-Headers", "Content-Type")
		h.Set("Access-Control-Max-Age", "600")
	}
	w.WriteHeader(http.StatusNoContent)
}

// refusalOf is the *proto.Refusal of a limiter error.
func refusalOf(err error) *proto.Refusal {
	var r *proto.Refusal
	if errors.As(err, &r) {
		return r
	}
	return &proto.Refusal{Status: http.StatusServiceUnavailable, Code: proto.Unavailable, Message: "key store unavailable, retry", RetryAfter: time.Second}
}
