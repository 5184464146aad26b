package auth

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
)

// The audit log of the operator API: every operator action on a key
// (create, change, activate, deactivate, revoke, rotate, delete) with who
// (the admin token's id), when, from which IP and what changed, kept in
// the key store (AuditLog) and read with GET /admin/v1/audit.

// MaxAudit is the number of audit entries a store keeps (the oldest go).
const MaxAudit = 10000

// Audit actions.
const (
	AuditCreate     = "create"
	AuditUpdate     = "update"
	AuditActivate   = "activate"
	AuditDeactivate = "deactivate"
	AuditRevoke     = "revoke"
	AuditRotate     = "rotate"
	AuditDelete     = "delete"
)

// AuditEntry is one operator action.
type AuditEntry struct {
	// ID orders the entries (a store sequence, newest highest).
	ID uint64 `json:"id"`
	// Time is when the action was done (UTC).
	Time time.Time `json:"time"`
	// Action is one of the Audit* constants.
	Action string `json:"action"`
	// Prefix is the key acted on.
	Prefix string `json:"prefix"`
	// Account is the key's account.
	Account string `json:"account,omitempty"`
	// TokenID identifies the admin token (TokenID), never the token.
	TokenID string `json:"token_id"`
	// IP is the client address of the request.
	IP string `json:"ip"`
	// Changes are the fields that changed, by dotted JSON path (e.g.
	// "limits.credits_per_minute"); a create lists the settings it set.
	Changes map[string]Change `json:"changes,omitempty"`
	// Detail adds what the fields do not say (e.g. "rotated to AbCd1234").
	Detail string `json:"detail,omitempty"`
}

// Change is one field's value before and after (null: unset).
type Change struct {
	From any `json:"from"`
	To   any `json:"to"`
}

// AuditLog keeps the audit entries. The bbolt and Redis stores implement
// it (so does TimedStore when its store does); entries are written in one
// store write each and at most MaxAudit are kept by the sidecar.
type AuditLog interface {
	// AppendAudit stores e, giving it the next ID, and drops the oldest
	// entries beyond keep (keep <= 0: MaxAudit).
	AppendAudit(ctx context.Context, e AuditEntry, keep int) error
	// Audit returns up to limit entries with an ID below before (0: from
	// the newest), newest first, of prefix only when prefix is not empty,
	// and the before of the next page (0 after the last).
	Audit(ctx context.Context, prefix string, limit int, before uint64) ([]AuditEntry, uint64, error)
}

// ErrNoAudit is returned by TimedStore when its store keeps no audit log.
var ErrNoAudit = errors.New("auth: the store keeps no audit log")

// AppendAudit implements AuditLog when the wrapped store does.
func (t *TimedStore) AppendAudit(ctx context.Context, e AuditEntry, keep int) error {
	a, ok := t.Store.(AuditLog)
	if !ok {
		return ErrNoAudit
	}
	start := time.Now()
	err := a.AppendAudit(ctx, e, keep)
	t.done("append_audit", start, err)
	return err
}

// Audit implements AuditLog when the wrapped store does.
func (t *TimedStore) Audit(ctx context.Context, prefix string, limit int, before uint64) ([]AuditEntry, uint64, error) {
	a, ok := t.Store.(AuditLog)
	if !ok {
		return nil, 0, ErrNoAudit
	}
	start := time.Now()
	out, next, err := a.Audit(ctx, prefix, limit, before)
	t.done("audit", start, err)
	return out, next, err
}

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
	Entries []AuditEntry `json:"entries"`
	// NextCursor is the cursor of the next (older) page; null after the
	// last.
	NextCursor *string `json:"next_cursor"`
}

// GET /admin/v1/audit?prefix=&limit=&cursor=
func (s *Sidecar) handleAdminAudit(w http.ResponseWriter, r *http.Request) {
	al, ok := s.opts.Store.(AuditLog)
	if !ok {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "This key store keeps no audit log")
		return
	}
	q := r.URL.Query()
	limit := 50
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			s.fail(w, &FieldError{Field: "limit", Problem: "must be 1..1000"})
			return
		}
		limit = n
	}
	var before uint64
	if v := q.Get("cursor"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n == 0 {
			s.fail(w, &FieldError{Field: "cursor", Problem: "malformed"})
			return
		}
		before = n
	}
	prefix := q.Get("prefix")
	if prefix != "" && !ValidPrefix(prefix) {
		s.fail(w, &FieldError{Field: "prefix", Problem: "malformed"})
		return
	}
	entries, next, err := al.Audit(r.Context(), prefix, limit, before)
	if errors.Is(err, ErrNoAudit) {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "This key store keeps no audit log")
		return
	}
	if err != nil {
		s.fail(w, err)
		return
	}
	out := AuditList{Entries: entries}
	if out.Entries == nil {
		out.Entries = []AuditEntry{}
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
func (s *Sidecar) audited(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		al, ok := s.opts.Store.(AuditLog)
		if !ok {
			h(w, r)
			return
		}
		var before *Record
		if p := r.PathValue("prefix"); ValidPrefix(p) {
			if rec, err := s.opts.Store.Get(r.Context(), p); err == nil {
				before = &rec
			}
		}
		rw := &captureWriter{ResponseWriter: w}
		h(rw, r)
		if rw.status < 200 || rw.status > 299 {
			return
		}
		e := AuditEntry{Time: s.opts.Now().UTC(), TokenID: TokenID(s.opts.AdminToken), IP: s.requestIP(r)}
		if !s.describe(r, rw.body.Bytes(), before, &e) {
			return
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), auditTimeout)
		defer cancel()
		if err := al.AppendAudit(ctx, e, MaxAudit); err != nil {
			s.log.Error().Err(err).Str("prefix", e.Prefix).Str("action", e.Action).Msg("auth: audit entry not recorded")
		}
	}
}

// describe fills e's action, key and changes from the request, the
// handler's answer and the record before; false when there is nothing to
// record.
func (s *Sidecar) describe(r *http.Request, answer []byte, before *Record, e *AuditEntry) bool {
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
		e.Action, e.Prefix, e.Account = AuditCreate, str(after["prefix"]), str(after["account"])
		e.Changes = diffFields(nil, after)
	case r.Method == http.MethodPost: // rotate
		var ck struct {
			Key json.RawMessage `json:"key"`
		}
		if json.Unmarshal(env.Data, &ck) != nil {
			return false
		}
		newKey := fieldsOf(ck.Key)
		e.Action, e.Prefix, e.Detail = AuditRotate, r.PathValue("prefix"), "rotated to "+str(newKey["prefix"])
		if before != nil {
			e.Account = before.Account
		}
	case r.Method == http.MethodDelete:
		e.Action, e.Prefix = AuditDelete, r.PathValue("prefix")
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
		e.Action = AuditUpdate
		if st, ok := e.Changes["status"]; ok {
			switch st.To {
			case string(StatusRevoked):
				e.Action = AuditRevoke
			case string(StatusInactive):
				e.Action = AuditDeactivate
			case string(StatusActive):
				e.Action = AuditActivate
			}
		}
	}
	return e.Prefix != ""
}

// storedFields reads the stored record of prefix as fields (nil when it
// cannot be read).
func (s *Sidecar) storedFields(r *http.Request, prefix string) map[string]any {
	if !ValidPrefix(prefix) {
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
func recordFields(rec *Record) map[string]any {
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
func diffFields(from, to map[string]any) map[string]Change {
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
	out := map[string]Change{}
	for _, k := range names {
		a, b := unset(from[k]), unset(to[k])
		if !reflect.DeepEqual(a, b) {
			out[k] = Change{From: a, To: b}
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
func (s *Sidecar) requestIP(r *http.Request) string {
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
