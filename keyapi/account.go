package keyapi

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"floodgate/auth"
	"floodgate/internal/proto"
	"floodgate/limiter"
)

// Signed types of the account endpoints.
const (
	TypeCreateAPIKey = "create_api_key"
	TypeRevokeAPIKey = "revoke_api_key"
	TypeListAPIKeys  = "list_api_keys"
)

var errAccountNotAllowed = &apiError{http.StatusForbidden, "ACCOUNT_NOT_ALLOWED", "Account not allowed to create API keys"}

var errAgentWallet = &apiError{http.StatusBadRequest, "BAD_REQUEST", "Agent wallets are not supported: sign with the account key"}

// verifySigned reads and checks a wallet-signed request: body, signature,
// time window, replay (in that order). The payload is made of the
// required payloadFields and those of optional that the body has (signed
// when present; a request without them is signed without them).
func (s *Server) verifySigned(w http.ResponseWriter, r *http.Request, typ string, optional []string, payloadFields ...string) (*SignedRequest, error) {
	body, err := readBody(w, r)
	if err != nil {
		return nil, err
	}
	req, err := ParseSignedRequest(body, typ, payloadFields...)
	if err != nil {
		return nil, err
	}
	for _, f := range optional {
		if v, ok := req.Fields[f]; ok {
			req.Payload[f] = v
		}
	}
	if req.AgentWallet != "" {
		return nil, errAgentWallet
	}
	if req.ExpiryWindow > s.opts.MaxExpiryWindow.Milliseconds() {
		return nil, ErrExpiryWindowTooLong
	}
	if err := req.Verify(); err != nil {
		return nil, err
	}
	now := s.opts.Now()
	if err := req.CheckTime(now, MaxFutureSkew); err != nil {
		return nil, err
	}
	key, until := req.ReplayKey()
	fresh, err := s.opts.Store.UseSignature(r.Context(), key, now, until)
	if err != nil {
		return nil, err
	}
	if !fresh {
		return nil, ErrSignatureReplayed
	}
	return req, nil
}

// POST /api/v1/account/api_keys/create
func (s *Server) handleAccountCreate(w http.ResponseWriter, r *http.Request) {
	req, err := s.verifySigned(w, r, TypeCreateAPIKey, []string{"scopes"})
	if err != nil {
		s.fail(w, err)
		return
	}
	scopes, err := signedScopes(req.Payload["scopes"])
	if err != nil {
		s.fail(w, err)
		return
	}
	allowed, err := s.opts.Verifier.Allowed(r.Context(), req.Account)
	if err != nil {
		s.fail(w, fmt.Errorf("%w: %w", ErrVerifierUnavailable, err))
		return
	}
	if !allowed {
		s.fail(w, errAccountNotAllowed)
		return
	}
	now := s.opts.Now().UTC()
	rec := auth.Record{Account: req.Account, Status: auth.StatusActive, CreatedAt: now, Scopes: scopes}
	if s.opts.DefaultExpiry > 0 {
		rec.ExpiresAt = now.Add(s.opts.DefaultExpiry)
	}
	key, _, err := s.newKey(r, rec)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeData(w, http.StatusOK, map[string]string{"api_key": key})
}

// signedScopes reads the optional signed "scopes" of a create: absent or
// null is the default (both); otherwise a list of "market" and/or
// "account".
func signedScopes(v any) (proto.Scopes, error) {
	if v == nil {
		return 0, nil
	}
	list, ok := v.([]any)
	if !ok {
		return 0, &auth.FieldError{Field: "scopes", Problem: "must be a list"}
	}
	names := make([]string, 0, len(list))
	for _, e := range list {
		n, ok := e.(string)
		if !ok {
			return 0, &auth.FieldError{Field: "scopes", Problem: `must be "market" and/or "account"`}
		}
		names = append(names, n)
	}
	return parseScopes(names)
}

// POST /api/v1/account/api_keys/revoke
func (s *Server) handleAccountRevoke(w http.ResponseWriter, r *http.Request) {
	req, err := s.verifySigned(w, r, TypeRevokeAPIKey, nil, "api_key")
	if err != nil {
		s.fail(w, err)
		return
	}
	given, ok := req.Payload["api_key"].(string)
	if !ok {
		s.fail(w, &auth.FieldError{Field: "api_key", Problem: "must be a string"})
		return
	}
	prefix, ok := prefixOf(given)
	if !ok {
		s.fail(w, &auth.FieldError{Field: "api_key", Problem: "not an API key or prefix"})
		return
	}
	rec, err := s.opts.Store.Update(r.Context(), prefix, 0, func(rec *auth.Record) error {
		if rec.Account != req.Account {
			return errNotFound // never reveal other accounts' keys
		}
		rec.Status = auth.StatusRevoked
		return nil
	})
	if err != nil {
		s.fail(w, err)
		return
	}
	s.notify(r, auth.KeyEvent{Type: auth.EventRevoked, Prefix: rec.Prefix, Reason: auth.ReasonRevoked})
	writeData(w, http.StatusOK, map[string]string{"revoked": rec.Prefix})
}

// prefixOf accepts a full key, a masked key ("AbCdEfGh_…") or a prefix.
func prefixOf(s string) (string, bool) {
	if len(s) < auth.PrefixLen || (len(s) > auth.PrefixLen && s[auth.PrefixLen] != '_') {
		return "", false
	}
	p := s[:auth.PrefixLen]
	return p, auth.ValidPrefix(p)
}

// POST /api/v1/account/api_keys: every active key (masked) and one page
// of all the account's keys. The page is chosen by "limit" and "cursor"
// next to the signed fields (not part of the signed message: the
// signature is single-use anyway, and a page is only ever the signer's).
func (s *Server) handleAccountList(w http.ResponseWriter, r *http.Request) {
	req, err := s.verifySigned(w, r, TypeListAPIKeys, nil)
	if err != nil {
		s.fail(w, err)
		return
	}
	page, err := bodyPage(req.Fields)
	if err != nil {
		s.fail(w, err)
		return
	}
	active, _, err := s.opts.Store.List(r.Context(), auth.Filter{Account: req.Account, Status: auth.StatusActive}, auth.Page{})
	if err != nil {
		s.fail(w, err)
		return
	}
	recs, next, err := s.opts.Store.List(r.Context(), auth.Filter{Account: req.Account}, page)
	if err != nil {
		s.fail(w, err)
		return
	}
	now := s.opts.Now()
	out := AccountKeys{ActiveAPIKeys: []string{}, APIKeyLimit: s.opts.MaxActiveKeys, Keys: []AccountKey{}, NextCursor: cursorPtr(next)}
	for i := range active {
		if active[i].EffectiveStatus(now) == string(auth.StatusActive) {
			out.ActiveAPIKeys = append(out.ActiveAPIKeys, active[i].Prefix+"_…")
		}
	}
	for i := range recs {
		rec := &recs[i]
		count, last := s.usage(rec)
		out.Keys = append(out.Keys, AccountKey{Prefix: rec.Prefix, Alias: rec.Alias, Status: rec.EffectiveStatus(now),
			CreatedAt: rec.CreatedAt.UTC(), LastUsedAt: timePtr(last), RequestCount: count, Scopes: rec.Scopes.Names()})
	}
	writeData(w, http.StatusOK, out)
}

// bodyPage reads the optional "limit" (1..MaxPageLimit, default
// DefaultPageLimit) and "cursor" of a list request body.
func bodyPage(fields map[string]any) (auth.Page, error) {
	p := auth.Page{Limit: auth.DefaultPageLimit}
	if v, ok := fields["limit"]; ok && v != nil {
		n, err := intField(fields, "limit")
		if err != nil || n < 1 || n > auth.MaxPageLimit {
			return p, &auth.FieldError{Field: "limit", Problem: fmt.Sprintf("must be 1..%d", auth.MaxPageLimit)}
		}
		p.Limit = int(n)
	}
	if v, ok := fields["cursor"]; ok && v != nil {
		c, ok := v.(string)
		if !ok {
			return p, &auth.FieldError{Field: "cursor", Problem: "must be a string"}
		}
		p.Cursor = c
	}
	return p, auth.CheckCursor(p.Cursor)
}

var (
	errNoKeyHeader = &apiError{http.StatusUnauthorized, "API_KEY_NOT_FOUND", "API key not found: send it in the PF-API-KEY header"}
	errInvalidKey  = &apiError{http.StatusUnauthorized, "INVALID_API_KEY", "Invalid API Key"}
)

// GET /api/v1/api_keys/status: the IP block, then the per-IP budget
// (limits.status_api.per_ip_per_minute), then the key (an unknown,
// malformed, wrong or revoked key, or a client IP outside its allowed_cidrs,
// is a failed attempt of the IP, as at the upgrade), then the key's own
// budget (limits.status_api.per_key_per_minute).
func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	now := s.opts.Now()
	if s.ipBlocked(w, r, now) || !s.allowAPI(w, r, limiter.APIStatus, now) {
		return
	}
	key := r.Header.Get("PF-API-KEY")
	if key == "" {
		key = r.Header.Get("X-API-Key")
	}
	if key == "" {
		s.fail(w, errNoKeyHeader)
		return
	}
	prefix, err := auth.ParseKey(key)
	if err != nil {
		s.failedKey(w, r, now)
		return
	}
	if s.opts.Keyring != nil {
		// Turns away unknown and wrong keys from the cache.
		if _, err := s.opts.Keyring.Verify(key, now); errors.Is(err, auth.ErrInvalidKey) {
			s.failedKey(w, r, now)
			return
		}
	}
	rec, err := s.opts.Store.Get(r.Context(), prefix)
	if errors.Is(err, auth.ErrNotFound) || (err == nil && (!rec.Hash.Equal(auth.Hash(key)) || rec.Status == auth.StatusRevoked)) {
		s.failedKey(w, r, now)
		return
	}
	if err != nil {
		s.fail(w, err)
		return
	}
	if !rec.AllowedCIDRs.Allows(s.opts.ClientIP(r)) {
		s.failedKeyWith(w, r, now, errIPNotAllowed)
		return
	}
	if s.opts.Limiter != nil {
		// The key's own budget (status_api.per_key_per_minute), whatever
		// the IP: polling one key from many IPs is refused too.
		if d := s.opts.Limiter.AllowAPIKey(limiter.APIStatus, rec.Prefix, now); d.Refusal != nil {
			writeRefusal(w, d.Refusal)
			return
		}
	}
	count, last := s.usage(&rec)
	today, total := s.metered(&rec, now)
	live := s.liveUsage(&rec, now)
	addDeliveredQuota(&live, &rec, today, now)
	st := KeyStatus{
		Status: rec.EffectiveStatus(now), WalletAddress: rec.Account, CreatedAt: rec.CreatedAt.UTC(),
		LastUsedAt: timePtr(last), RequestCount: count, RateLimit: live.Credits, Quotas: live.Quotas,
		UsageToday: today, UsageTotal: total,
		ExpiresAt: timePtr(rec.ExpiresAt), Scopes: rec.Scopes.Names(),
	}
	writeData(w, http.StatusOK, st)
}

// addDeliveredQuota reports rec's delivered_daily quota in u as
// quotas.delivered_daily: messages delivered today (the UTC day of now)
// against the limit, reset at the next 00:00 UTC.
func addDeliveredQuota(u *KeyUsage, rec *auth.Record, today auth.UsageCounters, now time.Time) {
	if lim := rec.Quotas.DeliveredDaily; lim > 0 {
		u.AddQuota("delivered_daily", lim, today.MessagesDelivered, auth.NextUTCMidnight(now))
	}
}

// liveUsage is the live credit budget and quota use of rec, or, when the
// limiter does not report them, the full budget and unused quotas.
func (s *Server) liveUsage(rec *auth.Record, now time.Time) KeyUsage {
	if s.opts.LiveUsage != nil {
		if u, ok := s.opts.LiveUsage.KeyUsage(rec, now); ok {
			u.Credits.ResetAt = u.Credits.ResetAt.UTC()
			return u
		}
	}
	limit := int64(rec.Limits.CreditsPerMinute)
	if limit == 0 {
		limit = int64(s.opts.DefaultCreditsPerMinute)
	}
	u := KeyUsage{Credits: BudgetUsage{Limit: limit, Remaining: limit, ResetAt: now.UTC()}}
	q := rec.Quotas
	for _, w := range []limiter.QuotaWindow{limiter.QuotaDaily, limiter.QuotaWeekly, limiter.QuotaMonthly, limiter.QuotaTotal} {
		if lim := q.Limit(w); lim > 0 {
			reset := now
			switch {
			case w == limiter.QuotaTotal:
				reset = time.Time{}
			case q.Calendar:
				_, reset = limiter.CalendarPeriod(w, now)
			}
			u.AddQuota(w.String(), lim, 0, reset)
		}
	}
	return u
}
