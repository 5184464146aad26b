package auth

import (
	"fmt"
	"strings"
	"time"

	"floodgate/internal/proto"
	"floodgate/limiter"
)

// Status is the stored state of a key. "expired" is not a status: it is
// derived from ExpiresAt at the time of a check.
type Status string

// Key statuses.
const (
	StatusActive   Status = "active"
	StatusInactive Status = "inactive"
	StatusRevoked  Status = "revoked" // final
)

// Valid reports whether s is one of the three statuses.
func (s Status) Valid() bool {
	return s == StatusActive || s == StatusInactive || s == StatusRevoked
}

// MaxLabelLen bounds a key's alias and category, in bytes.
const MaxLabelLen = 128

// MaxCreditsPerMinute bounds Limits.CreditsPerMinute.
const MaxCreditsPerMinute = 10000

// Limits are a key's overrides of its tier's budgets (the limiter's type:
// one definition); zero means "tier default".
type Limits = limiter.Limits

// Quotas are a key's quotas in credits (the limiter's type); zero means
// none.
type Quotas = limiter.Quotas

// ValidateLimits checks the ranges an operator may set; the error names
// the field.
func ValidateLimits(l Limits) error {
	switch {
	case l.CreditsPerMinute < 0 || l.CreditsPerMinute > MaxCreditsPerMinute:
		return &FieldError{Field: "limits.credits_per_minute", Problem: "must be 1..10000"}
	case l.MaxConnections < 0:
		return &FieldError{Field: "limits.max_connections", Problem: "must not be negative"}
	case l.MaxSubscriptions < 0:
		return &FieldError{Field: "limits.max_subscriptions", Problem: "must not be negative"}
	case l.ConnMessagesPerSecond < 0 || l.ConnMessagesPerSecond > 1e6:
		return &FieldError{Field: "limits.conn_messages_per_second", Problem: "must be 0..1000000"}
	}
	return nil
}

// ValidateQuotas checks that no quota is negative; the error names the
// field.
func ValidateQuotas(q Quotas) error {
	for _, f := range []struct {
		name string
		v    int64
	}{{"total", q.Total}, {"daily", q.Daily}, {"weekly", q.Weekly}, {"monthly", q.Monthly}, {"delivered_daily", q.DeliveredDaily}} {
		if f.v < 0 {
			return &FieldError{Field: "quotas." + f.name, Problem: "must not be negative"}
		}
	}
	return nil
}

// Record is a stored API key. It never holds the key itself, only its hash.
type Record struct {
	Prefix       string    `json:"prefix"`
	Hash         KeyHash   `json:"hash"`
	Account      string    `json:"account"`
	Alias        string    `json:"alias,omitempty"`
	Category     string    `json:"category,omitempty"`
	Status       Status    `json:"status"`
	CreatedAt    time.Time `json:"created_at"`
	ExpiresAt    time.Time `json:"expires_at,omitzero"`   // zero: never
	LastUsedAt   time.Time `json:"last_used_at,omitzero"` // zero: never used
	RevokedAt    time.Time `json:"revoked_at,omitzero"`   // set when revoked; purged after the retention
	RequestCount int64     `json:"request_count"`
	Limits       Limits    `json:"limits,omitzero"`
	Quotas       Quotas    `json:"quotas,omitzero"`
	// Scopes are the stream kinds the key may subscribe to; zero: both.
	Scopes proto.Scopes `json:"scopes,omitzero"`
	// AllowedCIDRs are the client IPs the key may be used from; empty: any.
	AllowedCIDRs CIDRs `json:"allowed_cidrs,omitzero"`
	// Metered usage (usage.go): UsageToday counts UTC day UsageDay only.
	UsageDay   int64         `json:"usage_day,omitempty"`
	UsageToday UsageCounters `json:"usage_today,omitzero"`
	UsageTotal UsageCounters `json:"usage_total,omitzero"`
}

// Today is the key's stored metered usage of the UTC day of now (zero when
// the stored day is an earlier one).
func (r *Record) Today(now time.Time) UsageCounters {
	if r.UsageDay != UTCDay(now) {
		return UsageCounters{}
	}
	return r.UsageToday
}

// addMetered adds d's metered usage to the totals and to today's counters,
// which a later day first resets; a delta of an earlier day than the
// stored one counts in the totals only.
func (r *Record) addMetered(d *UsageDelta) {
	if d.Metered == (UsageCounters{}) {
		return
	}
	r.UsageTotal.Add(d.Metered)
	switch {
	case d.Day > r.UsageDay:
		r.UsageDay, r.UsageToday = d.Day, d.Metered
	case d.Day == r.UsageDay:
		r.UsageToday.Add(d.Metered)
	}
}

// Expired reports whether the key is past its expiry at now.
func (r *Record) Expired(now time.Time) bool {
	return !r.ExpiresAt.IsZero() && !now.Before(r.ExpiresAt)
}

// Used reports whether the key was ever used (it then cannot be deleted).
func (r *Record) Used() bool {
	return r.RequestCount > 0 || !r.LastUsedAt.IsZero()
}

// EffectiveStatus is Status, or "expired" for an active or inactive key
// past its expiry at now.
func (r *Record) EffectiveStatus(now time.Time) string {
	if r.Status != StatusRevoked && r.Expired(now) {
		return "expired"
	}
	return string(r.Status)
}

// validate checks the invariants every stored record keeps.
func (r *Record) validate() error {
	if !ValidPrefix(r.Prefix) {
		return &FieldError{Field: "prefix", Problem: "malformed"}
	}
	if r.Account == "" {
		return &FieldError{Field: "account", Problem: "missing"}
	}
	// The account is a Redis hash tag ({account}): no braces, bounded.
	if len(r.Account) > MaxLabelLen || strings.ContainsAny(r.Account, "{}\x00") {
		return &FieldError{Field: "account", Problem: "malformed"}
	}
	if len(r.Alias) > MaxLabelLen {
		return &FieldError{Field: "alias", Problem: fmt.Sprintf("longer than %d bytes", MaxLabelLen)}
	}
	if len(r.Category) > MaxLabelLen {
		return &FieldError{Field: "category", Problem: fmt.Sprintf("longer than %d bytes", MaxLabelLen)}
	}
	if !r.Status.Valid() {
		return &FieldError{Field: "status", Problem: fmt.Sprintf("unknown status %q", r.Status)}
	}
	if err := ValidateLimits(r.Limits); err != nil {
		return err
	}
	if r.Scopes&^proto.AllScopes != 0 {
		return &FieldError{Field: "scopes", Problem: "unknown scope"}
	}
	if _, err := ParseCIDRs(r.AllowedCIDRs.List()); err != nil {
		return err
	}
	return ValidateQuotas(r.Quotas)
}
