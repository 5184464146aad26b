package keyapi

import (
	"bytes"
	"encoding/json"
	"time"

	"floodgate/auth"
)

// Wire types of the REST API, shared by the sidecar and AdminClient.

// Envelope wraps every REST response.
type Envelope struct {
	Success bool            `json:"success"`
	Data    json.RawMessage `json:"data"`
	Error   *string         `json:"error"`
	Code    *string         `json:"code"`
}

// KeyView is a key as the API shows it: never the secret or its hash.
type KeyView struct {
	Prefix       string      `json:"prefix"`
	Account      string      `json:"account"`
	Alias        string      `json:"alias,omitempty"`
	Category     string      `json:"category,omitempty"`
	Status       string      `json:"status"` // active, inactive, revoked or expired
	CreatedAt    time.Time   `json:"created_at"`
	ExpiresAt    *time.Time  `json:"expires_at"`
	LastUsedAt   *time.Time  `json:"last_used_at"`
	RevokedAt    *time.Time  `json:"revoked_at,omitempty"` // revoked keys are purged a retention period after it
	RequestCount int64       `json:"request_count"`
	Limits       auth.Limits `json:"limits"`
	Quotas       auth.Quotas `json:"quotas"`
	// UsageToday and UsageTotal are the key's metered usage (delivered
	// messages and bytes, charged credits) of the current UTC day and in
	// total, cluster-wide, including what is not yet flushed on this node.
	UsageToday auth.UsageCounters `json:"usage_today"`
	UsageTotal auth.UsageCounters `json:"usage_total"`
	// Scopes are the key's effective scopes: "market" (public sources)
	// and/or "account" (its account's private sources).
	Scopes []string `json:"scopes"`
	// AllowedCIDRs are the client IPs the key may be used from; empty:
	// any.
	AllowedCIDRs []string `json:"allowed_cidrs"`
	// Live is the key's live budget and quota use (show only, when the
	// limiter reports it).
	Live *KeyUsage `json:"live,omitempty"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

// CreateKeyRequest is the body of POST /admin/v1/keys.
type CreateKeyRequest struct {
	Account   string       `json:"account"`
	Alias     string       `json:"alias,omitempty"`
	Category  string       `json:"category,omitempty"`
	ExpiresAt *time.Time   `json:"expires_at,omitempty"`
	Limits    *auth.Limits `json:"limits,omitempty"`
	Quotas    *auth.Quotas `json:"quotas,omitempty"`
	Active    *bool        `json:"active,omitempty"` // default true
	// Scopes: "market" and/or "account"; absent or empty: both.
	Scopes []string `json:"scopes,omitempty"`
	// AllowedCIDRs: at most 32 CIDRs; absent or empty: any IP.
	AllowedCIDRs []string `json:"allowed_cidrs,omitempty"`
}

// CreatedKey answers a create or rotate: the full key, shown this once.
type CreatedKey struct {
	APIKey      string  `json:"api_key"`
	Key         KeyView `json:"key"`
	RotatedFrom string  `json:"rotated_from,omitempty"`
}

// RotateRequest is the optional body of POST /admin/v1/keys/{prefix}/rotate.
type RotateRequest struct {
	Alias string `json:"alias,omitempty"` // alias of the new key; default: the old key's alias moves to it
}

// KeyPatch is the body of PATCH /admin/v1/keys/{prefix}; absent fields
// are left alone.
type KeyPatch struct {
	Active    *bool        `json:"active,omitempty"`
	Status    *auth.Status `json:"status,omitempty"` // "revoked" revokes (final)
	ExpiresAt OptionalTime `json:"expires_at,omitzero"`
	Alias     *string      `json:"alias,omitempty"`
	Category  *string      `json:"category,omitempty"`
	Limits    *LimitsPatch `json:"limits,omitempty"`
	Quotas    *QuotasPatch `json:"quotas,omitempty"`
	// Scopes replaces the scopes; [] restores the default (both).
	Scopes *[]string `json:"scopes,omitempty"`
	// AllowedCIDRs replaces the allowlist; [] allows any IP.
	AllowedCIDRs *[]string `json:"allowed_cidrs,omitempty"`
}

// LimitsPatch changes the limits it names; 0 restores the tier default.
type LimitsPatch struct {
	CreditsPerMinute      *int64   `json:"credits_per_minute,omitempty"`
	MaxConnections        *int64   `json:"max_connections,omitempty"`
	MaxSubscriptions      *int     `json:"max_subscriptions,omitempty"`
	ConnMessagesPerSecond *float64 `json:"conn_messages_per_second,omitempty"`
}

// QuotasPatch changes the quotas it names; 0 removes one.
type QuotasPatch struct {
	Total   *int64 `json:"total,omitempty"`
	Daily   *int64 `json:"daily,omitempty"`
	Weekly  *int64 `json:"weekly,omitempty"`
	Monthly *int64 `json:"monthly,omitempty"`
	// DeliveredDaily: messages delivered per UTC day (usage_today).
	DeliveredDaily *int64 `json:"delivered_daily,omitempty"`
	// Calendar switches the daily, weekly and monthly quotas between UTC
	// calendar periods (true) and rolling windows (false).
	Calendar *bool `json:"calendar,omitempty"`
}

func (p *LimitsPatch) apply(l *auth.Limits) {
	setField(&l.CreditsPerMinute, p.CreditsPerMinute)
	setField(&l.MaxConnections, p.MaxConnections)
	setField(&l.MaxSubscriptions, p.MaxSubscriptions)
	setField(&l.ConnMessagesPerSecond, p.ConnMessagesPerSecond)
}

// setField sets *dst to *v when v is not nil.
func setField[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

func (p *QuotasPatch) apply(q *auth.Quotas) {
	setField(&q.Total, p.Total)
	setField(&q.Daily, p.Daily)
	setField(&q.Weekly, p.Weekly)
	setField(&q.Monthly, p.Monthly)
	setField(&q.DeliveredDaily, p.DeliveredDaily)
	setField(&q.Calendar, p.Calendar)
}

// OptionalTime is a JSON field that may be absent (Set false), null (Set,
// zero Time: "never") or a time.
type OptionalTime struct {
	Set  bool
	Time time.Time
}

// IsZero reports an absent field (for omitzero).
func (o OptionalTime) IsZero() bool { return !o.Set }

// MarshalJSON writes null for the zero time.
func (o OptionalTime) MarshalJSON() ([]byte, error) {
	if o.Time.IsZero() {
		return []byte("null"), nil
	}
	return json.Marshal(o.Time)
}

// UnmarshalJSON accepts null or an RFC 3339 time.
func (o *OptionalTime) UnmarshalJSON(b []byte) error {
	o.Set = true
	if bytes.Equal(b, []byte("null")) {
		o.Time = time.Time{}
		return nil
	}
	return json.Unmarshal(b, &o.Time)
}

// LiveUsage reports a key's live budget and quota use; the limiter
// implements it. A nil LiveUsage in Options means "not available".
type LiveUsage interface {
	// KeyUsage returns the live use of the key of rec (its limits and
	// quotas as stored) at now, or false when the limiter has no state for
	// it. The caller has read rec: KeyUsage does not read it again.
	KeyUsage(rec *auth.Record, now time.Time) (KeyUsage, bool)
}

// KeyUsage is a key's live use.
type KeyUsage struct {
	Credits BudgetUsage `json:"credits"`
	// Quotas reports each configured quota under its window name
	// ("daily", "weekly", "monthly", "total"); AddQuota fills it.
	Quotas      map[string]QuotaUsage `json:"quotas,omitempty"`
	Connections int                   `json:"connections"`
}

// AddQuota reports the quota named window: limit, used, and resetAt, when
// it next frees capacity (the zero Time for a quota that never refills,
// such as total).
func (u *KeyUsage) AddQuota(window string, limit, used int64, resetAt time.Time) {
	if u.Quotas == nil {
		u.Quotas = make(map[string]QuotaUsage, 4)
	}
	u.Quotas[window] = QuotaUsage{Limit: limit, Used: used, ResetAt: timePtr(resetAt)}
}

// BudgetUsage is the state of the rolling credit budget.
type BudgetUsage struct {
	Limit     int64     `json:"limit"`
	Remaining int64     `json:"remaining"`
	ResetAt   time.Time `json:"reset_at"` // when the budget is full again
}

// QuotaUsage is the state of one quota (`quotas.<window>`).
type QuotaUsage struct {
	Limit int64 `json:"limit"`
	Used  int64 `json:"used"`
	// ResetAt is when the quota next frees capacity, in UTC: the next
	// calendar boundary for a calendar quota; for a rolling one, when its
	// oldest use still in the window leaves it (the time of the request
	// when nothing is used). Absent for total, which never refills.
	ResetAt *time.Time `json:"reset_at,omitempty"`
}

// KeyStatus is the data of GET /api/v1/api_keys/status.
type KeyStatus struct {
	Status        string      `json:"status"` // active, inactive or expired
	WalletAddress string      `json:"wallet_address"`
	CreatedAt     time.Time   `json:"created_at"`
	LastUsedAt    *time.Time  `json:"last_used_at"`
	RequestCount  int64       `json:"request_count"`
	RateLimit     BudgetUsage `json:"rate_limit"`
	ExpiresAt     *time.Time  `json:"expires_at"` // RFC 3339 UTC; null: never
	Scopes        []string    `json:"scopes"`     // effective: "market" and/or "account"
	// UsageToday and UsageTotal: as in KeyView.
	UsageToday auth.UsageCounters `json:"usage_today"`
	UsageTotal auth.UsageCounters `json:"usage_total"`
	// Quotas reports each configured quota of the key (KeyUsage.Quotas).
	Quotas map[string]QuotaUsage `json:"quotas,omitempty"`
}

// AccountKey is one key in the account list endpoint.
type AccountKey struct {
	Prefix       string     `json:"prefix"`
	Alias        string     `json:"alias,omitempty"`
	Status       string     `json:"status"`
	CreatedAt    time.Time  `json:"created_at"`
	LastUsedAt   *time.Time `json:"last_used_at"`
	RequestCount int64      `json:"request_count"`
	Scopes       []string   `json:"scopes"` // effective: "market" and/or "account"
}

// AccountKeys is the data of POST /api/v1/account/api_keys. Keys is one
// page (oldest first); ActiveAPIKeys always lists every active key.
type AccountKeys struct {
	ActiveAPIKeys []string     `json:"active_api_keys"` // masked: "AbCdEfGh_…"
	APIKeyLimit   int          `json:"api_key_limit"`
	Keys          []AccountKey `json:"keys"`
	// NextCursor is the cursor of the next page; null after the last.
	NextCursor *string `json:"next_cursor"`
}

// KeyList is the data of GET /admin/v1/keys: one page, oldest first.
type KeyList struct {
	Keys []KeyView `json:"keys"`
	// NextCursor is the cursor of the next page; null after the last.
	NextCursor *string `json:"next_cursor"`
}

func cursorPtr(c string) *string {
	if c == "" {
		return nil
	}
	return &c
}

// KeyEvents is the data of GET /admin/v1/keys/{prefix}/events.
type KeyEvents struct {
	Prefix string       `json:"prefix"`
	Events []auth.Event `json:"events"`
}
