package auth

import (
	"context"
	"encoding/hex"
	"errors"
	"strings"
	"time"
)

// Store errors. Implementations return them unwrapped so callers can
// compare with errors.Is.
var (
	ErrNotFound     = errors.New("auth: key not found")
	ErrExists       = errors.New("auth: key prefix already exists")
	ErrTooManyKeys  = errors.New("auth: too many active keys for the account")
	ErrAliasTaken   = errors.New("auth: alias already in use for the account")
	ErrKeyInUse     = errors.New("auth: key has usage history")
	ErrStoreClosed  = errors.New("auth: store closed")
	ErrInvalidField = errors.New("auth: invalid field")
)

// FieldError is a request or record field that is missing or out of range.
// It matches ErrInvalidField with errors.Is.
type FieldError struct {
	Field   string // dotted JSON path, e.g. "limits.credits_per_minute"
	Problem string // "missing", "must be 1..10000", ...
}

func (e *FieldError) Error() string { return "auth: field " + e.Field + ": " + e.Problem }

// Is makes errors.Is(err, ErrInvalidField) true.
func (e *FieldError) Is(target error) bool { return target == ErrInvalidField }

// MaxEvents is the number of connection events kept per key.
const MaxEvents = 1000

// Event is one connection event of a key: a closed connection or a
// refused upgrade.
type Event struct {
	Time        time.Time `json:"time"`
	IP          string    `json:"ip"`
	Node        string    `json:"node,omitempty"`
	DurationMS  int64     `json:"duration_ms"`
	MsgsIn      int64     `json:"msgs_in"`
	MsgsOut     int64     `json:"msgs_out"`
	CloseCode   int       `json:"close_code,omitempty"`
	CloseReason string    `json:"close_reason,omitempty"`
	Refusal     string    `json:"refusal,omitempty"` // refusal code of an upgrade that never happened
	// Count is how many refusals of this code the event stands for: the
	// node coalesces a key's refusals per code and second (Time is the
	// first). 0 or 1: one.
	Count int `json:"count,omitempty"`
}

// PrefixEvent is one event of a batch for AppendEvents.
type PrefixEvent struct {
	Prefix string
	Event  Event
}

// UsageDelta is usage counted in memory since the last flush.
type UsageDelta struct {
	Count    int64     // client messages to add to RequestCount
	LastUsed time.Time // new LastUsedAt, if later than the stored one
	// Metered is delivered messages and bytes and charged credits, added
	// to UsageTotal and, when Day is the stored UsageDay or later (a later
	// day first resets UsageToday), to UsageToday. Day is the UTC day of
	// the flush (UTCDay).
	Metered UsageCounters
	Day     int64
}

// Page selects one page of List.
type Page struct {
	// Limit is the most records returned; <= 0 returns every match.
	Limit int
	// Cursor is the next cursor of the previous page; "" starts at the
	// first record.
	Cursor string
}

// Pagination bounds of the list endpoints.
const (
	// DefaultPageLimit is the page size of a list request without limit.
	DefaultPageLimit = 100
	// MaxPageLimit is the largest limit a list request may ask for.
	MaxPageLimit = 1000
)

// Filter selects records in List; zero fields match everything.
type Filter struct {
	Account  string
	Category string
	Status   Status
	// Query, when set, keeps the records whose account, alias, prefix or
	// category contains it, case-insensitively (the console's search).
	Query string
}

// Match reports whether r passes the filter.
func (f Filter) Match(r *Record) bool {
	return (f.Account == "" || r.Account == f.Account) &&
		(f.Category == "" || r.Category == f.Category) &&
		(f.Status == "" || r.Status == f.Status) &&
		matchQuery(r, f.Query)
}

// matchQuery reports whether q (empty: everything) is in the record's
// account, alias, prefix or category, case-insensitively.
func matchQuery(rec *Record, q string) bool {
	if q == "" {
		return true
	}
	for _, f := range []string{rec.Account, rec.Alias, rec.Prefix, rec.Category} {
		if len(f) >= len(q) && strings.Contains(strings.ToLower(f), strings.ToLower(q)) {
			return true
		}
	}
	return false
}

// Store keeps key records durably. Implementations are safe for concurrent
// use; every write has been committed (fsynced for bbolt) when the method
// returns. The bbolt store (OpenBolt) is the single-node default; the Redis
// store (NewRedisStore) is shared by a cluster.
//
// "Active" for the per-account limit means Status == StatusActive,
// whatever the expiry: an expired key keeps its slot until it is revoked or
// deactivated. Both stores keep per-account indexes (active keys, aliases,
// every key in creation order) in the same transaction as the record, so
// checking the limit and the alias never reads revoked records, however
// many the account has.
type Store interface {
	// Create stores a new record. If rec is active and maxActive > 0, it
	// fails with ErrTooManyKeys when the account already has maxActive
	// active keys; a non-empty alias must be unique per account
	// (ErrAliasTaken); an existing prefix gives ErrExists. All checks and
	// the write are one atomic step.
	Create(ctx context.Context, rec Record, maxActive int) error
	// Get returns the record of prefix, or ErrNotFound.
	Get(ctx context.Context, prefix string) (Record, error)
	// List returns one page of the records that match f, ordered by
	// CreatedAt (to the microsecond) then prefix, and the cursor of the
	// next page ("" after the last). With f.Account only the account's
	// index is read; with f.Account and f.Status active only its active
	// keys. A malformed cursor is a *FieldError for "cursor".
	List(ctx context.Context, f Filter, p Page) (recs []Record, next string, err error)
	// Update applies fn to the record of prefix and stores the result in
	// one atomic step; fn may run more than once (Redis retries on
	// conflicts) and must not have side effects. An error from fn aborts
	// the update and is returned as is. fn must not change Prefix, Hash,
	// Account, CreatedAt or usage. When the update turns a non-active key
	// active and maxActive > 0, the account's limit is checked as in
	// Create; an alias change is checked for uniqueness. A key that turns
	// revoked gets RevokedAt (the store's clock unless fn set it).
	Update(ctx context.Context, prefix string, maxActive int, fn func(*Record) error) (Record, error)
	// Delete removes a record that was never used (ErrKeyInUse otherwise)
	// together with its events.
	Delete(ctx context.Context, prefix string) error
	// AddUsage adds a batch of in-memory usage counts, one write for the
	// whole batch. Unknown prefixes are skipped.
	AddUsage(ctx context.Context, batch map[string]UsageDelta) error
	// AppendEvent records a connection event; only the last MaxEvents are
	// kept per key. An unknown prefix gives ErrNotFound.
	AppendEvent(ctx context.Context, prefix string, ev Event) error
	// AppendEvents records a batch of connection events, in order, in one
	// write (one bbolt transaction; one pipelined round trip on Redis);
	// events of unknown prefixes are skipped.
	AppendEvents(ctx context.Context, batch []PrefixEvent) error
	// Events returns up to limit (MaxEvents if limit <= 0) of the latest
	// events of prefix, newest last.
	Events(ctx context.Context, prefix string, limit int) ([]Event, error)
	// UseSignature records a request signature until its expiry and
	// reports whether it was fresh (false: seen before and not expired at
	// now). The entry is gone once until has passed (Redis: PX; bbolt:
	// deleted by the next UseSignature or Purge). In the Redis store this
	// holds across the whole cluster.
	UseSignature(ctx context.Context, sig string, now, until time.Time) (fresh bool, err error)
	// Purge deletes up to max keys revoked before revokedBefore, with
	// their usage and events, and the replay signatures expired at now;
	// it returns how many keys it deleted (call again while it returns
	// max).
	Purge(ctx context.Context, revokedBefore, now time.Time, max int) (int, error)
	// Ping checks that the store is reachable (for /readyz).
	Ping(ctx context.Context) error
	// Close releases the store; the Redis client is not closed.
	Close() error
}

// checkCreate validates a new record against its account: active is the
// number of active keys it has, aliasOwner the prefix holding rec.Alias
// ("" none).
func checkCreate(rec *Record, active int, aliasOwner string, maxActive int) error {
	if rec.Status == StatusActive && maxActive > 0 && active >= maxActive {
		return ErrTooManyKeys
	}
	if rec.Alias != "" && aliasOwner != "" {
		return ErrAliasTaken
	}
	return nil
}

// prepareUpdate checks the immutable fields of an updated record against
// the original, carries over usage and RevokedAt, stamps RevokedAt (now)
// on a key that turns revoked, and validates the result.
func prepareUpdate(before, after *Record, now time.Time) error {
	if after.Prefix != before.Prefix || after.Hash != before.Hash || after.Account != before.Account ||
		!after.CreatedAt.Equal(before.CreatedAt) {
		return errors.New("auth: update must not change prefix, hash, account or creation time")
	}
	after.CreatedAt = before.CreatedAt
	after.RequestCount, after.LastUsedAt = before.RequestCount, before.LastUsedAt
	after.UsageDay, after.UsageToday, after.UsageTotal = before.UsageDay, before.UsageToday, before.UsageTotal
	if before.Status == StatusRevoked {
		if after.Status != StatusRevoked {
			return ErrRevoked
		}
		after.RevokedAt = before.RevokedAt
	}
	switch {
	case after.Status != StatusRevoked:
		after.RevokedAt = time.Time{}
	case after.RevokedAt.IsZero():
		after.RevokedAt = now.UTC()
	}
	return after.validate()
}

// checkUpdate validates an updated record against its account: active is
// the number of its active keys other than this one, aliasOwner the
// prefix holding after.Alias ("" none).
func checkUpdate(before, after *Record, active int, aliasOwner string, maxActive int) error {
	if after.Alias != "" && after.Alias != before.Alias && aliasOwner != "" && aliasOwner != after.Prefix {
		return ErrAliasTaken
	}
	if before.Status != StatusActive && after.Status == StatusActive && maxActive > 0 && active >= maxActive {
		return ErrTooManyKeys
	}
	return nil
}

// ErrRevoked is returned by Update when fn tries to bring back a revoked key.
var ErrRevoked = errors.New("auth: key is revoked")

// sortKey is a record's position in every list: its creation time in
// microseconds (16 hex digits, sign bit flipped so that byte order is time
// order) then ":" and the prefix. It is also the opaque list cursor.
func sortKey(r *Record) string {
	var b [8]byte
	us := uint64(r.CreatedAt.UnixMicro()) ^ 1<<63
	for i := 7; i >= 0; i-- {
		b[i] = byte(us)
		us >>= 8
	}
	return hex.EncodeToString(b[:]) + ":" + r.Prefix
}

// CheckCursor validates a cursor from a client: the sort key of a record.
func CheckCursor(c string) error {
	if c == "" {
		return nil
	}
	h, p, ok := strings.Cut(c, ":")
	if _, err := hex.DecodeString(h); !ok || err != nil || len(h) != 16 || h != strings.ToLower(h) || !ValidPrefix(p) {
		return &FieldError{Field: "cursor", Problem: "malformed"}
	}
	return nil
}
