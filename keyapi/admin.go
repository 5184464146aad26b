package keyapi

import (
	"crypto/ed25519"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"floodgate/auth"
	"floodgate/internal/proto"

	"github.com/mr-tron/base58"
)

// The operator API (/admin/v1), behind the bearer token checked in
// dispatch.

// POST /admin/v1/keys
func (s *Server) handleAdminCreate(w http.ResponseWriter, r *http.Request) {
	var req CreateKeyRequest
	if err := decodeBody(w, r, &req, false); err != nil {
		s.fail(w, err)
		return
	}
	if req.Account == "" {
		s.fail(w, &auth.FieldError{Field: "account", Problem: "missing"})
		return
	}
	if pk, err := base58.Decode(req.Account); err != nil || len(pk) != ed25519.PublicKeySize {
		s.fail(w, ErrInvalidPublicKey)
		return
	}
	now := s.opts.Now().UTC()
	rec := auth.Record{Account: req.Account, Alias: req.Alias, Category: req.Category, Status: auth.StatusActive, CreatedAt: now}
	if req.Active != nil && !*req.Active {
		rec.Status = auth.StatusInactive
	}
	if req.ExpiresAt != nil {
		rec.ExpiresAt = req.ExpiresAt.UTC()
	} else if s.opts.DefaultExpiry > 0 {
		rec.ExpiresAt = now.Add(s.opts.DefaultExpiry)
	}
	if req.Limits != nil {
		rec.Limits = *req.Limits
	}
	if req.Quotas != nil {
		rec.Quotas = *req.Quotas
	}
	var err error
	if rec.Scopes, err = parseScopes(req.Scopes); err != nil {
		s.fail(w, err)
		return
	}
	if rec.AllowedCIDRs, err = auth.ParseCIDRs(req.AllowedCIDRs); err != nil {
		s.fail(w, err)
		return
	}
	s.createAndAnswer(w, r, rec, "")
}

// createAndAnswer stores a new key for rec and answers with it; it reports
// whether the key was made.
func (s *Server) createAndAnswer(w http.ResponseWriter, r *http.Request, rec auth.Record, rotatedFrom string) bool {
	if err := auth.ValidateLimits(rec.Limits); err != nil {
		s.fail(w, err)
		return false
	}
	if err := auth.ValidateQuotas(rec.Quotas); err != nil {
		s.fail(w, err)
		return false
	}
	key, rec, err := s.newKey(r, rec)
	if err != nil {
		s.fail(w, err)
		return false
	}
	writeData(w, http.StatusCreated, CreatedKey{APIKey: key, Key: s.view(&rec, s.opts.Now()), RotatedFrom: rotatedFrom})
	return true
}

// GET /admin/v1/keys?account=&category=&status=&q=&limit=&cursor=: one
// page (q: a case-insensitive substring of the account, alias, prefix or
// category, matched by the store as it fills the page). "expired" and
// "active" (which excludes expired keys) are applied after the page is
// read, so such a page may be shorter than limit: follow next_cursor.
func (s *Server) handleAdminList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := auth.Filter{Account: q.Get("account"), Category: q.Get("category"), Query: q.Get("q")}
	status := q.Get("status")
	switch status {
	case "", "expired":
	default:
		if !auth.Status(status).Valid() {
			s.fail(w, &auth.FieldError{Field: "status", Problem: "must be active, inactive, revoked or expired"})
			return
		}
		f.Status = auth.Status(status)
	}
	page := auth.Page{Limit: auth.DefaultPageLimit, Cursor: q.Get("cursor")}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > auth.MaxPageLimit {
			s.fail(w, &auth.FieldError{Field: "limit", Problem: fmt.Sprintf("must be 1..%d", auth.MaxPageLimit)})
			return
		}
		page.Limit = n
	}
	recs, next, err := s.opts.Store.List(r.Context(), f, page)
	if err != nil {
		s.fail(w, err)
		return
	}
	now := s.opts.Now()
	out := KeyList{Keys: []KeyView{}, NextCursor: cursorPtr(next)}
	for i := range recs {
		v := s.view(&recs[i], now)
		if status != "" && v.Status != status {
			continue // "active" excludes expired keys; "expired" is derived
		}
		if s.opts.LiveUsage != nil {
			if u, ok := s.opts.LiveUsage.KeyUsage(&recs[i], now); ok {
				addDeliveredQuota(&u, &recs[i], v.UsageToday, now)
				v.Live = &u
			}
		}
		out.Keys = append(out.Keys, v)
	}
	writeData(w, http.StatusOK, out)
}

// pathPrefix returns the {prefix} path value, or answers 404.
func (s *Server) pathPrefix(w http.ResponseWriter, r *http.Request) (string, bool) {
	p := r.PathValue("prefix")
	if !auth.ValidPrefix(p) {
		s.fail(w, auth.ErrNotFound)
		return "", false
	}
	return p, true
}

// GET /admin/v1/keys/{prefix}
func (s *Server) handleAdminShow(w http.ResponseWriter, r *http.Request) {
	prefix, ok := s.pathPrefix(w, r)
	if !ok {
		return
	}
	rec, err := s.opts.Store.Get(r.Context(), prefix)
	if err != nil {
		s.fail(w, err)
		return
	}
	now := s.opts.Now()
	v := s.view(&rec, now)
	if s.opts.LiveUsage != nil {
		if u, ok := s.opts.LiveUsage.KeyUsage(&rec, now); ok {
			addDeliveredQuota(&u, &rec, v.UsageToday, now)
			v.Live = &u
		}
	}
	writeData(w, http.StatusOK, v)
}

// PATCH /admin/v1/keys/{prefix}
func (s *Server) handleAdminPatch(w http.ResponseWriter, r *http.Request) {
	prefix, ok := s.pathPrefix(w, r)
	if !ok {
		return
	}
	var p KeyPatch
	if err := decodeBody(w, r, &p, false); err != nil {
		s.fail(w, err)
		return
	}
	if p.Status != nil && !p.Status.Valid() {
		s.fail(w, &auth.FieldError{Field: "status", Problem: "must be active, inactive or revoked"})
		return
	}
	var scopes proto.Scopes
	var cidrs auth.CIDRs
	var err error
	if p.Scopes != nil {
		if scopes, err = parseScopes(*p.Scopes); err != nil {
			s.fail(w, err)
			return
		}
	}
	if p.AllowedCIDRs != nil {
		if cidrs, err = auth.ParseCIDRs(*p.AllowedCIDRs); err != nil {
			s.fail(w, err)
			return
		}
	}
	var before auth.Record
	rec, err := s.opts.Store.Update(r.Context(), prefix, s.opts.MaxActiveKeys, func(rec *auth.Record) error {
		before = *rec
		if p.Active != nil {
			if *p.Active {
				rec.Status = auth.StatusActive
			} else if rec.Status != auth.StatusRevoked {
				rec.Status = auth.StatusInactive
			}
		}
		if p.Status != nil {
			rec.Status = *p.Status
		}
		if p.ExpiresAt.Set {
			rec.ExpiresAt = p.ExpiresAt.Time.UTC()
		}
		if p.Alias != nil {
			rec.Alias = *p.Alias
		}
		if p.Category != nil {
			rec.Category = *p.Category
		}
		if p.Limits != nil {
			p.Limits.apply(&rec.Limits)
		}
		if p.Quotas != nil {
			p.Quotas.apply(&rec.Quotas)
		}
		if p.Scopes != nil {
			rec.Scopes = scopes
		}
		if p.AllowedCIDRs != nil {
			rec.AllowedCIDRs = cidrs
		}
		return nil
	})
	if err != nil {
		s.fail(w, err)
		return
	}
	now := s.opts.Now()
	if ev, ok := changeEvent(&before, &rec, now); ok {
		s.notify(r, ev)
	}
	writeData(w, http.StatusOK, s.view(&rec, now))
}

// parseScopes is proto.ParseScopes with the error naming the field.
func parseScopes(names []string) (proto.Scopes, error) {
	sc, err := proto.ParseScopes(names)
	if err != nil {
		return 0, &auth.FieldError{Field: "scopes", Problem: `must be "market" and/or "account"`}
	}
	return sc, nil
}

// changeEvent is the control event for a change from before to after.
func changeEvent(before, after *auth.Record, now time.Time) (auth.KeyEvent, bool) {
	ev := auth.KeyEvent{Prefix: after.Prefix}
	switch {
	case after.Status == auth.StatusRevoked && before.Status != auth.StatusRevoked:
		ev.Type, ev.Reason = auth.EventRevoked, auth.ReasonRevoked
	case after.Status == auth.StatusInactive && before.Status == auth.StatusActive:
		ev.Type, ev.Reason = auth.EventDeactivated, auth.ReasonDeactivated
	case !after.ExpiresAt.Equal(before.ExpiresAt) && after.Expired(now):
		ev.Type, ev.Reason = auth.EventExpired, auth.ReasonExpired
	case *after != *before:
		ev.Type = auth.EventUpdated
	default:
		return auth.KeyEvent{}, false
	}
	return ev, true
}

// DELETE /admin/v1/keys/{prefix}
func (s *Server) handleAdminDelete(w http.ResponseWriter, r *http.Request) {
	prefix, ok := s.pathPrefix(w, r)
	if !ok {
		return
	}
	if err := s.opts.Store.Delete(r.Context(), prefix); err != nil {
		s.fail(w, err)
		return
	}
	s.notify(r, auth.KeyEvent{Type: auth.EventRevoked, Prefix: prefix, Reason: auth.ReasonDeleted})
	writeData(w, http.StatusOK, map[string]string{"deleted": prefix})
}

// POST /admin/v1/keys/{prefix}/rotate
func (s *Server) handleAdminRotate(w http.ResponseWriter, r *http.Request) {
	prefix, ok := s.pathPrefix(w, r)
	if !ok {
		return
	}
	var req RotateRequest
	if err := decodeBody(w, r, &req, true); err != nil {
		s.fail(w, err)
		return
	}
	old, err := s.opts.Store.Get(r.Context(), prefix)
	if err != nil {
		s.fail(w, err)
		return
	}
	if old.Status == auth.StatusRevoked {
		s.fail(w, auth.ErrRevoked)
		return
	}
	// Every setting carries over; the alias moves to the new key (aliases
	// are unique per account) unless the request names another.
	rec := old
	rec.Prefix, rec.Hash, rec.Status, rec.CreatedAt = "", auth.KeyHash{}, auth.StatusActive, s.opts.Now().UTC()
	rec.RequestCount, rec.LastUsedAt = 0, time.Time{}
	moveAlias := req.Alias == "" && old.Alias != ""
	if req.Alias != "" {
		rec.Alias = req.Alias
	}
	if moveAlias {
		if _, err := s.opts.Store.Update(r.Context(), prefix, 0, func(o *auth.Record) error { o.Alias = ""; return nil }); err != nil {
			s.fail(w, err)
			return
		}
	}
	if !s.createAndAnswer(w, r, rec, prefix) && moveAlias {
		// The new key was not made: give the alias back.
		if _, err := s.opts.Store.Update(r.Context(), prefix, 0, func(o *auth.Record) error { o.Alias = old.Alias; return nil }); err != nil {
			s.log.Error().Err(err).Str("prefix", prefix).Msg("keyapi: rotate failed and the old key's alias could not be restored")
		}
	}
}

// GET /admin/v1/keys/{prefix}/events?limit=
func (s *Server) handleAdminEvents(w http.ResponseWriter, r *http.Request) {
	prefix, ok := s.pathPrefix(w, r)
	if !ok {
		return
	}
	limit := 100
	if q := r.URL.Query().Get("limit"); q != "" {
		n, err := strconv.Atoi(q)
		if err != nil || n < 1 || n > auth.MaxEvents {
			s.fail(w, &auth.FieldError{Field: "limit", Problem: "must be 1..1000"})
			return
		}
		limit = n
	}
	evs, err := s.opts.Store.Events(r.Context(), prefix, limit)
	if err != nil {
		s.fail(w, err)
		return
	}
	if evs == nil {
		evs = []auth.Event{}
	}
	writeData(w, http.StatusOK, KeyEvents{Prefix: prefix, Events: evs})
}
