package keyapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"reflect"
	"sort"
	"strconv"
	"time"

	"floodgate/auth"
)

// The operator API's side of the audit log: the middleware that records
// every operator action and GET /admin/v1/audit.

// TokenID is the public id of an admin token: "sha256:" and the first 8
// hex digits of its SHA-256. It names the token in the audit log without
// revealing it.
func TokenID(token string) string {
	h := sha256.Sum256([]byte(token))
	return "sha256:" + hex.EncodeToString(h[:4])
}

// auditTimeout bounds the store write of an audit entry.
const auditTimeout = 2 * time.Second

// AuditList is the data of GET /admin/v1/audit.
type AuditList struct {
	Entries []auth.AuditEntry `json:"entries"`
	// NextCursor is the cursor of the next (older) page; null after the
	// last.
	NextCursor *string `json:"next_cursor"`
}

// GET /admin/v1/audit?prefix=&limit=&cursor=
func (s *Server) handleAdminAudit(w http.ResponseWriter, r *http.Request) {
	al, ok := s.opts.Store.(auth.AuditLog)
	if !ok {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "This key store keeps no audit log")
		return
	}
	q := r.URL.Query()
	limit := 50
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			s.fail(w, &auth.FieldError{Field: "limit", Problem: "must be 1..1000"})
			return
		}
		limit = n
	}
	var before uint64
	if v := q.Get("cursor"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n == 0 {
			s.fail(w, &auth.FieldError{Field: "cursor", Problem: "malformed"})
			return
		}
		before = n
	}
	prefix := q.Get("prefix")
	if prefix != "" && !auth.ValidPrefix(prefix) {
		s.fail(w, &auth.FieldError{Field: "prefix", Problem: "malformed"})
		return
	}
	entries, next, err := al.Audit(r.Context(), prefix, limit, before)
	if errors.Is(err, auth.ErrNoAudit) {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "This key store keeps no audit log")
		return
	}
	if err != nil {
		s.fail(w, err)
		return
	}
	out := AuditList{Entries: entries}
	if out.Entries == nil {
		out.Entries = []auth.AuditEntry{}
	}
	if next != 0 {
		c := strconv.FormatUint(next, 10)
		out.NextCursor = &c
	}
	writeData(w, http.StatusOK, out)
}

// audited wraps an operator handler that changes a key: it reads the key
// before (when the path names one), runs h, and when h succeeded records
// the action with the fields that changed. The response's full key (create
// and rotate) is never recorded: only its prefix.
func (s *Server) audited(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		al, ok := s.opts.Store.(auth.AuditLog)
		if !ok {
			h(w, r)
			return
		}
		var before *auth.Record
		if p := r.PathValue("prefix"); auth.ValidPrefix(p) {
			if rec, err := s.opts.Store.Get(r.Context(), p); err == nil {
				before = &rec
			}
		}
		rw := &captureWriter{ResponseWriter: w}
		h(rw, r)
		if rw.status < 200 || rw.status > 299 {
			return
		}
		e := auth.AuditEntry{Time: s.opts.Now().UTC(), TokenID: TokenID(s.opts.AdminToken), IP: s.requestIP(r)}
		if !s.describe(r, rw.body.Bytes(), before, &e) {
			return
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), auditTimeout)
		defer cancel()
		if err := al.AppendAudit(ctx, e, auth.MaxAudit); err != nil {
			s.log.Error().Err(err).Str("prefix", e.Prefix).Str("action", e.Action).Msg("keyapi: audit entry not recorded")
		}
	}
}

// describe fills e's action, key and changes from the request, the
// handler's answer and the record before; false when there is nothing to
// record.
func (s *Server) describe(r *http.Request, answer []byte, before *auth.Record, e *auth.AuditEntry) bool {
	var env struct {
		Data json.RawMessage `json:"data"`
	}
	_ = json.Unmarshal(answer, &env)
	switch {
	case r.Method == http.MethodPost && r.PathValue("prefix") == "": // create
		var ck struct {
			Key json.RawMessage `json:"key"`
		}
		if json.Unmarshal(env.Data, &ck) != nil {
			return false
		}
		after := s.storedFields(r, str(fieldsOf(ck.Key)["prefix"]))
		if after == nil {
			return false
		}
		e.Action, e.Prefix, e.Account = auth.AuditCreate, str(after["prefix"]), str(after["account"])
		e.Changes = diffFields(nil, after)
	case r.Method == http.MethodPost: // rotate
		var ck struct {
			Key json.RawMessage `json:"key"`
		}
		if json.Unmarshal(env.Data, &ck) != nil {
			return false
		}
		newKey := fieldsOf(ck.Key)
		e.Action, e.Prefix, e.Detail = auth.AuditRotate, r.PathValue("prefix"), "rotated to "+str(newKey["prefix"])
		if before != nil {
			e.Account = before.Account
		}
	case r.Method == http.MethodDelete:
		e.Action, e.Prefix = auth.AuditDelete, r.PathValue("prefix")
		if before != nil {
			e.Account = before.Account
			e.Changes = diffFields(recordFields(before), nil)
		}
	default: // PATCH
		after := s.storedFields(r, r.PathValue("prefix"))
		if after == nil {
			return false
		}
		e.Prefix, e.Account = r.PathValue("prefix"), str(after["account"])
		var from map[string]any
		if before != nil {
			from = recordFields(before)
		}
		e.Changes = diffFields(from, after)
		if len(e.Changes) == 0 {
			return false // nothing changed: not an action
		}
		e.Action = auth.AuditUpdate
		if st, ok := e.Changes["status"]; ok {
			switch st.To {
			case string(auth.StatusRevoked):
				e.Action = auth.AuditRevoke
			case string(auth.StatusInactive):
				e.Action = auth.AuditDeactivate
			case string(auth.StatusActive):
				e.Action = auth.AuditActivate
			}
		}
	}
	return e.Prefix != ""
}

// storedFields reads the stored record of prefix as fields (nil when it
// cannot be read).
func (s *Server) storedFields(r *http.Request, prefix string) map[string]any {
	if !auth.ValidPrefix(prefix) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), auditTimeout)
	defer cancel()
	rec, err := s.opts.Store.Get(ctx, prefix)
	if err != nil {
		return nil
	}
	return recordFields(&rec)
}

// auditIgnored are the fields of a key that are not settings.
var auditIgnored = map[string]bool{"prefix": true, "account": true, "hash": true, "created_at": true,
	"last_used_at": true, "request_count": true, "live": true, "revoked_at": true, "usage_today": true,
	"usage_total": true, "usage_day": true}

// recordFields is a stored record as the API shows it (status as stored).
func recordFields(rec *auth.Record) map[string]any {
	b, _ := json.Marshal(rec)
	m := fieldsOf(b)
	if rec.ExpiresAt.IsZero() {
		m["expires_at"] = nil
	}
	return m
}

// fieldsOf flattens a JSON object into dotted paths (one level of nested
// objects: limits.*, quotas.*).
func fieldsOf(raw []byte) map[string]any {
	var m map[string]any
	if json.Unmarshal(raw, &m) != nil {
		return map[string]any{}
	}
	out := map[string]any{}
	for k, v := range m {
		if sub, ok := v.(map[string]any); ok && k != "live" {
			for sk, sv := range sub {
				out[k+"."+sk] = sv
			}
			continue
		}
		out[k] = v
	}
	return out
}

// diffFields lists the settings whose values differ; zero values ("", 0,
// false, null) count as unset.
func diffFields(from, to map[string]any) map[string]auth.Change {
	keys := map[string]bool{}
	for k := range from {
		keys[k] = true
	}
	for k := range to {
		keys[k] = true
	}
	names := make([]string, 0, len(keys))
	for k := range keys {
		if !auditIgnored[k] {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	out := map[string]auth.Change{}
	for _, k := range names {
		a, b := unset(from[k]), unset(to[k])
		if !reflect.DeepEqual(a, b) {
			out[k] = auth.Change{From: a, To: b}
		}
	}
	return out
}

func unset(v any) any {
	switch x := v.(type) {
	case string:
		if x == "" {
			return nil
		}
	case float64:
		if x == 0 {
			return nil
		}
	case bool:
		if !x {
			return nil
		}
	case []any:
		if len(x) == 0 {
			return nil
		}
	}
	return v
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// requestIP is the client address of the request: the node's rule
// (trusted proxies) when it gave one, else the connection's peer.
func (s *Server) requestIP(r *http.Request) string {
	if s.opts.ClientIP != nil {
		if a := s.opts.ClientIP(r); a.IsValid() {
			return a.String()
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// captureWriter keeps the status and a copy of the body of an answer.
type captureWriter struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (c *captureWriter) WriteHeader(status int) {
	c.status = status
	c.ResponseWriter.WriteHeader(status)
}

func (c *captureWriter) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	if c.body.Len() < MaxBodyBytes {
		c.body.Write(b)
	}
	return c.ResponseWriter.Write(b)
}
