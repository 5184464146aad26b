package auth

import (
	"context"
	"errors"
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
}

// UsageDelta is usage counted in memory since the last flush.
type UsageDelta struct {
	Count    int64     // client messages to add to RequestCount
	LastUsed time.Time // new LastUsedAt, if later than the stored one
}

// Filter selects records in List; zero fields match everything.
type Filter struct {
	Account  string
	Category string
	Status   Status
}

// Match reports whether r passes the filter.
func (f Filter) Match(r *Record) bool {
	return (f.Account == "" || r.Account == f.Account) &&
		(f.Category == "" || r.Category == f.Category) &&
		(f.Status == "" || r.Status == f.Status)
}

// Store keeps key records durably. Implementations are safe for concurrent
// use; every write has been committed (fsynced for bbolt) when the method
// returns. The bbolt store (OpenBolt) is the single-node default; the Redis
// store (NewRedisStore) is shared by a cluster.
//
// "Active" for the per-account limit means Status == StatusActive,
// whatever the expiry: an expired key keeps its slot until it is revoked or
// deactivated.
type Store interface {
	// Create stores a new record. If rec is active and maxActive > 0, it
	// fails with ErrTooManyKeys when the account already has maxActive
	// active keys; a non-empty alias must be unique per account
	// (ErrAliasTaken); an existing prefix gives ErrExists. All checks and
	// the write are one atomic step.
	Create(ctx context.Context, rec Record, maxActive int) error
	// Get returns the record of prefix, or ErrNotFound.
	Get(ctx context.Context, prefix string) (Record, error)
	// List returns the records that match f, ordered by CreatedAt then
	// prefix.
	List(ctx context.Context, f Filter) ([]Record, error)
	// Update applies fn to the record of prefix and stores the result in
	// one atomic step; fn may run more than once (Redis retries on
	// conflicts) and must not have side effects. An error from fn aborts
	// the update and is returned as is. fn must not change Prefix, Hash,
	// Account or usage. When the update turns a non-active key active and
	// maxActive > 0, the account's limit is checked as in Create; an alias
	// change is checked for uniqueness.
	Update(ctx context.Context, prefix string, maxActive int, fn func(*Record) error) (Record, error)
	// Delete removes a record that was never used (ErrKeyInUse otherwise)
	// together with its events.
	Delete(ctx context.Context, prefix string) error
	// AddUsage adds a batch of in-memory usage counts, one write for the
	// whole batch. Unknown prefixes are skipped.
	AddUsage(ctx context.Context, batch map[string]UsageDelta) error
	// AppendEvent records a connection event; only the last MaxEvents are
	// kept per key.
	AppendEvent(ctx context.Context, prefix string, ev Event) error
	// Events returns up to limit (MaxEvents if limit <= 0) of the latest
	// events of prefix, newest last.
	Events(ctx context.Context, prefix string, limit int) ([]Event, error)
	// UseSignature records a request signature until its expiry and
	// reports whether it was fresh (false: seen before and not expired at
	// now). In the Redis store this holds across the whole cluster.
	UseSignature(ctx context.Context, sig string, now, until time.Time) (fresh bool, err error)
	// Ping checks that the store is reachable (for /readyz).
	Ping(ctx context.Context) error
	// Close releases the store; the Redis client is not closed.
	Close() error
}

// countActive counts the active keys of account among recs, skipping skip.
func countActive(recs []Record, skip string) int {
	n := 0
	for i := range recs {
		if recs[i].Status == StatusActive && recs[i].Prefix != skip {
			n++
		}
	}
	return n
}

// aliasTaken reports whether alias is used by a record other than skip.
func aliasTaken(recs []Record, alias, skip string) bool {
	if alias == "" {
		return false
	}
	for i := range recs {
		if recs[i].Alias == alias && recs[i].Prefix != skip {
			return true
		}
	}
	return false
}

// checkCreate validates a new record against the account's other records:
// the active-key limit and alias uniqueness.
func checkCreate(rec *Record, others []Record, maxActive int) error {
	if rec.Status == StatusActive && maxActive > 0 && countActive(others, "") >= maxActive {
		return ErrTooManyKeys
	}
	if aliasTaken(others, rec.Alias, "") {
		return ErrAliasTaken
	}
	return nil
}

// checkUpdate validates an updated record against the immutable fields of
// the original and the account's other records.
func checkUpdate(before, after *Record, others []Record, maxActive int) error {
	if after.Prefix != before.Prefix || after.Hash != before.Hash || after.Account != before.Account {
		return errors.New("auth: update must not change prefix, hash or account")
	}
	after.RequestCount, after.LastUsedAt = before.RequestCount, before.LastUsedAt
	if before.Status == StatusRevoked && after.Status != StatusRevoked {
		return ErrRevoked
	}
	if err := after.validate(); err != nil {
		return err
	}
	if after.Alias != before.Alias && aliasTaken(others, after.Alias, after.Prefix) {
		return ErrAliasTaken
	}
	if before.Status != StatusActive && after.Status == StatusActive && maxActive > 0 &&
		countActive(others, after.Prefix) >= maxActive {
		return ErrTooManyKeys
	}
	return nil
}

// ErrRevoked is returned by Update when fn tries to bring back a revoked key.
var ErrRevoked = errors.New("auth: key is revoked")
