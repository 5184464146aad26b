package auth

import (
	"context"
	"errors"
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
