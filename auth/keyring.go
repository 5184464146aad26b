package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"floodgate/internal/proto"
)

// Verification errors of Keyring.Verify, mapped by the broker to the 401
// refusals of docs/protocol.md.
var (
	ErrInvalidKey  = errors.New("auth: invalid api key")  // unknown, malformed or revoked: "Invalid API Key"
	ErrInactiveKey = errors.New("auth: inactive api key") // "Inactive API Key"
	ErrExpiredKey  = errors.New("auth: expired api key")  // "Expired API Key"
)

// KeyInfo is what an upgrade needs to know about a valid key.
type KeyInfo struct {
	Prefix    string
	Account   string
	Status    Status
	ExpiresAt time.Time // zero: never
	Limits    Limits
	Quotas    Quotas
	// Scopes are the stream kinds the key may subscribe to (zero: both).
	Scopes proto.Scopes
	// AllowedCIDRs are the IPs the key may be used from (empty: any).
	AllowedCIDRs CIDRs
}

// KeyringOptions configure NewKeyring.
type KeyringOptions struct {
	// Store holds the records. Required.
	Store Store
	// TTL is how long a cached record is trusted without a control event;
	// after it the next Verify reloads the record (and keeps using the old
	// one if the store is unreachable). Defaults to 1 minute.
	TTL time.Duration
	// NegativeTTL is how long an unknown prefix is remembered, so a flood
	// of bad keys does not reach the store. Defaults to 10 s.
	NegativeTTL time.Duration
	// MaxNegative bounds the remembered unknown prefixes (about 100 bytes
	// each). Defaults to 100000.
	MaxNegative int
	// LookupTimeout bounds one store lookup. Defaults to 2 s.
	LookupTimeout time.Duration
}

// Keyring verifies keys against cached records: a warm Verify is a map
// lookup, a SHA-256 and a constant-time compare (about 0.3 µs, 0
// allocations); a cold one reads the store once per prefix, however many
// callers wait for it. Safe for concurrent use.
type Keyring struct {
	// Immutable after NewKeyring
	opts KeyringOptions

	// Guarded by mu
	mu       sync.RWMutex
	entries  map[string]*keyEntry // prefix -> cached record
	negative map[string]int64     // prefix -> unix ns until which it is unknown
	gen      uint64               // bumped by Invalidate; a lookup started before is not cached

	// Guarded by fmu
	fmu     sync.Mutex
	flights map[string]*flight
}

type keyEntry struct {
	hash       KeyHash
	info       KeyInfo
	freshUntil int64 // unix ns
}

type flight struct {
	done    chan struct{}
	waiters int // guarded by Keyring.fmu
	e       *keyEntry
	err     error
}

// NewKeyring returns a Keyring over opts.Store.
func NewKeyring(opts KeyringOptions) *Keyring {
	if opts.TTL <= 0 {
		opts.TTL = time.Minute
	}
	if opts.NegativeTTL <= 0 {
		opts.NegativeTTL = 10 * time.Second
	}
	if opts.MaxNegative <= 0 {
		opts.MaxNegative = 100000
	}
	if opts.LookupTimeout <= 0 {
		opts.LookupTimeout = 2 * time.Second
	}
	return &Keyring{
		opts:     opts,
		entries:  make(map[string]*keyEntry),
		negative: make(map[string]int64),
		flights:  make(map[string]*flight),
	}
}

// Verify checks key at now and returns its record. Errors: ErrInvalidKey
// (malformed, unknown, wrong secret, revoked), ErrInactiveKey,
// ErrExpiredKey, or a wrapped store error when the record is not cached
// and the store cannot be read. With the record cached it does not
// allocate or block on I/O.
func (k *Keyring) Verify(key string, now time.Time) (KeyInfo, error) {
	prefix, err := ParseKey(key)
	if err != nil {
		return KeyInfo{}, ErrInvalidKey
	}
	h := Hash(key)
	ns := now.UnixNano()
	k.mu.RLock()
	e := k.entries[prefix]
	neg, isNeg := k.negative[prefix]
	k.mu.RUnlock()
	if e == nil && isNeg && ns < neg {
		return KeyInfo{}, ErrInvalidKey
	}
	if e == nil || ns >= e.freshUntil {
		fresh, err := k.load(prefix, now)
		switch {
		case err == nil:
			e = fresh
		case errors.Is(err, ErrNotFound):
			return KeyInfo{}, ErrInvalidKey
		case e == nil:
			return KeyInfo{}, err
		}
		// Store unreachable: keep using the stale record.
	}
	if !e.hash.Equal(h) {
		return KeyInfo{}, ErrInvalidKey
	}
	switch {
	case e.info.Status == StatusRevoked:
		return KeyInfo{}, ErrInvalidKey
	case e.info.Status == StatusInactive:
		return KeyInfo{}, ErrInactiveKey
	case !e.info.ExpiresAt.IsZero() && !now.Before(e.info.ExpiresAt):
		return KeyInfo{}, ErrExpiredKey
	}
	return e.info, nil
}

// load reads prefix from the store, one lookup per prefix at a time, and
// caches the result (ErrNotFound in the negative cache).
func (k *Keyring) load(prefix string, now time.Time) (*keyEntry, error) {
	k.fmu.Lock()
	if f := k.flights[prefix]; f != nil {
		f.waiters++
		k.fmu.Unlock()
		<-f.done
		return f.e, f.err
	}
	prefix = strings.Clone(prefix) // do not keep the caller's key reachable
	f := &flight{done: make(chan struct{})}
	k.flights[prefix] = f
	k.fmu.Unlock()

	k.mu.RLock()
	gen := k.gen
	k.mu.RUnlock()
	ctx, cancel := context.WithTimeout(context.Background(), k.opts.LookupTimeout)
	rec, err := k.opts.Store.Get(ctx, prefix)
	cancel()

	k.mu.Lock()
	switch {
	case err == nil:
		f.e = &keyEntry{
			hash: rec.Hash,
			info: KeyInfo{Prefix: rec.Prefix, Account: rec.Account, Status: rec.Status,
				ExpiresAt: rec.ExpiresAt, Limits: rec.Limits, Quotas: rec.Quotas,
				Scopes: rec.Scopes, AllowedCIDRs: rec.AllowedCIDRs},
			freshUntil: now.Add(k.opts.TTL).UnixNano(),
		}
		if k.gen == gen {
			k.entries[prefix] = f.e
			delete(k.negative, prefix)
		}
	case errors.Is(err, ErrNotFound):
		f.err = ErrNotFound
		if k.gen == gen {
			delete(k.entries, prefix)
			k.addNegativeLocked(prefix, now)
		}
	default:
		f.err = fmt.Errorf("auth: key lookup: %w", err)
	}
	k.mu.Unlock()

	k.fmu.Lock()
	delete(k.flights, prefix)
	k.fmu.Unlock()
	close(f.done)
	return f.e, f.err
}

func (k *Keyring) addNegativeLocked(prefix string, now time.Time) {
	ns := now.UnixNano()
	if len(k.negative) >= k.opts.MaxNegative {
		for p, until := range k.negative {
			if until <= ns {
				delete(k.negative, p)
			}
		}
		if len(k.negative) >= k.opts.MaxNegative {
			clear(k.negative)
		}
	}
	k.negative[prefix] = now.Add(k.opts.NegativeTTL).UnixNano()
}

// Invalidate drops what is cached about prefix; the next Verify reads the
// store. Call it on every control event (HandleEvent does).
func (k *Keyring) Invalidate(prefix string) {
	k.mu.Lock()
	delete(k.entries, prefix)
	delete(k.negative, prefix)
	k.gen++
	k.mu.Unlock()
}

// HandleEvent invalidates the key of a control event; it has the
// signature SubscribeEvents wants.
func (k *Keyring) HandleEvent(ev KeyEvent) { k.Invalidate(ev.Prefix) }
