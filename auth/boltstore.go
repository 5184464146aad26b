package auth

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// BoltOptions configure OpenBolt. The zero value is ready to use.
type BoltOptions struct {
	// FileName is the database file inside the data dir. Defaults to "keys.db".
	FileName string
	// LockTimeout bounds the wait for another process holding the file.
	// Defaults to 1 s.
	LockTimeout time.Duration
	// Now is the clock that stamps RevokedAt when an update revokes a key
	// without one, and the schema upgrade. Defaults to time.Now.
	Now func() time.Time
}

// Buckets. Index keys hold the record's sortKey (creation time then
// prefix), so that every list is in order and pages seek to their cursor.
var (
	bucketKeys     = []byte("keys")     // prefix -> JSON Record
	bucketAccounts = []byte("accounts") // account \x00 sortKey -> empty (every key of the account)
	bucketActive   = []byte("active")   // account \x00 sortKey -> empty (its active keys)
	bucketAliases  = []byte("aliases")  // account \x00 alias -> prefix
	bucketCreated  = []byte("created")  // sortKey -> empty (every key)
	bucketRevoked  = []byte("revoked")  // revoked_at (8, unix µs) prefix -> empty
	bucketEvents   = []byte("events")   // prefix -> bucket{ seq(8, big endian) -> JSON Event }
	bucketSigs     = []byte("sigs")     // signature -> until (8 bytes, unix ms)
	bucketSigExp   = []byte("sigexp")   // until (8, unix ms) signature -> empty
	bucketMeta     = []byte("meta")     // "schema" -> "2"

	allBuckets = [][]byte{bucketKeys, bucketAccounts, bucketActive, bucketAliases, bucketCreated,
		bucketRevoked, bucketEvents, bucketSigs, bucketSigExp, bucketMeta}
)

// boltSchema is the layout version kept in the meta bucket. Version 1 (no
// meta bucket) had the accounts index by prefix and no other index;
// OpenBolt upgrades it in one transaction.
const boltSchema = "2"

// BoltStore is the Store kept in one bbolt file. Every write is an fsynced
// bbolt transaction, committed before the method returns (a few ms on a
// disk). Reads are lock-free MVCC views.
type BoltStore struct {
	// Immutable after OpenBolt
	db  *bolt.DB
	now func() time.Time
}

var _ Store = (*BoltStore)(nil)

// OpenBolt opens (creating if needed) the key database in dir, upgrading
// an older layout.
func OpenBolt(dir string, opts BoltOptions) (*BoltStore, error) {
	if opts.FileName == "" {
		opts.FileName = "keys.db"
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("auth: open bolt store: %w", err)
	}
	db, err := bolt.Open(filepath.Join(dir, opts.FileName), 0o600, &bolt.Options{Timeout: opts.LockTimeout})
	if err != nil {
		return nil, fmt.Errorf("auth: open bolt store: %w", err)
	}
	s := &BoltStore{db: db, now: opts.Now}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		if string(tx.Bucket(bucketMeta).Get([]byte("schema"))) == boltSchema {
			return nil
		}
		return s.upgrade(tx)
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("auth: open bolt store: %w", err)
	}
	return s, nil
}

// upgrade rebuilds every index from the records (schema 1 to 2): a revoked
// record without RevokedAt gets the upgrade time, so the retention counts
// from the upgrade.
func (s *BoltStore) upgrade(tx *bolt.Tx) error {
	for _, b := range [][]byte{bucketAccounts, bucketActive, bucketAliases, bucketCreated, bucketRevoked, bucketSigExp} {
		if err := tx.DeleteBucket(b); err != nil {
			return err
		}
		if _, err := tx.CreateBucket(b); err != nil {
			return err
		}
	}
	now := s.now().UTC()
	var recs []Record
	err := tx.Bucket(bucketKeys).ForEach(func(k, v []byte) error {
		var r Record
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("auth: decode record %s: %w", k, err)
		}
		recs = append(recs, r)
		return nil
	})
	if err != nil {
		return err
	}
	for i := range recs {
		r := &recs[i]
		if r.Status == StatusRevoked && r.RevokedAt.IsZero() {
			r.RevokedAt = now
			if err := putRecord(tx, r); err != nil {
				return err
			}
		}
		if err := indexNew(tx, r); err != nil {
			return err
		}
	}
	sigExp := tx.Bucket(bucketSigExp)
	err = tx.Bucket(bucketSigs).ForEach(func(k, v []byte) error {
		if len(v) != 8 {
			return nil
		}
		return sigExp.Put(append(bytes.Clone(v), k...), nil)
	})
	if err != nil {
		return err
	}
	return tx.Bucket(bucketMeta).Put([]byte("schema"), []byte(boltSchema))
}

// Close closes the database file.
func (s *BoltStore) Close() error { return s.db.Close() }

// Ping reports whether the database is open.
func (s *BoltStore) Ping(ctx context.Context) error {
	return s.db.View(func(*bolt.Tx) error { return nil })
}

// acctKey is account \x00 rest.
func acctKey(account, rest string) []byte {
	k := make([]byte, 0, len(account)+1+len(rest))
	k = append(k, account...)
	k = append(k, 0)
	return append(k, rest...)
}

// microKey is t in unix µs (big endian, sign bit flipped) followed by rest.
func microKey(t time.Time, rest string) []byte {
	k := make([]byte, 8, 8+len(rest))
	binary.BigEndian.PutUint64(k, uint64(t.UnixMicro())^1<<63)
	return append(k, rest...)
}

func getRecord(tx *bolt.Tx, prefix string) (Record, error) {
	v := tx.Bucket(bucketKeys).Get([]byte(prefix))
	if v == nil {
		return Record{}, ErrNotFound
	}
	var r Record
	if err := json.Unmarshal(v, &r); err != nil {
		return Record{}, fmt.Errorf("auth: decode record %s: %w", prefix, err)
	}
	return r, nil
}

func putRecord(tx *bolt.Tx, r *Record) error {
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketKeys).Put([]byte(r.Prefix), v)
}

// countActive counts the active keys of account (they are few: at most
// the account's limit, whatever its revoked keys).
func countActive(tx *bolt.Tx, account string) int {
	n := 0
	c := tx.Bucket(bucketActive).Cursor()
	pfx := acctKey(account, "")
	for k, _ := c.Seek(pfx); k != nil && bytes.HasPrefix(k, pfx); k, _ = c.Next() {
		n++
	}
	return n
}

// aliasOwner is the prefix holding alias in account ("" none).
func aliasOwner(tx *bolt.Tx, account, alias string) string {
	if alias == "" {
		return ""
	}
	return string(tx.Bucket(bucketAliases).Get(acctKey(account, alias)))
}

// indexNew adds a new record to every index.
func indexNew(tx *bolt.Tx, r *Record) error {
	sk := sortKey(r)
	if err := tx.Bucket(bucketAccounts).Put(acctKey(r.Account, sk), nil); err != nil {
		return err
	}
	if err := tx.Bucket(bucketCreated).Put([]byte(sk), nil); err != nil {
		return err
	}
	return indexChange(tx, &Record{Prefix: r.Prefix, Account: r.Account, CreatedAt: r.CreatedAt}, r)
}

// indexChange moves a record's status, alias and revocation in the
// indexes from before to after.
func indexChange(tx *bolt.Tx, before, after *Record) error {
	sk := acctKey(after.Account, sortKey(after))
	if was, is := before.Status == StatusActive, after.Status == StatusActive; was != is {
		var err error
		if is {
			err = tx.Bucket(bucketActive).Put(sk, nil)
		} else {
			err = tx.Bucket(bucketActive).Delete(sk)
		}
		if err != nil {
			return err
		}
	}
	if before.Alias != after.Alias {
		al := tx.Bucket(bucketAliases)
		if before.Alias != "" && aliasOwner(tx, before.Account, before.Alias) == before.Prefix {
			if err := al.Delete(acctKey(before.Account, before.Alias)); err != nil {
				return err
			}
		}
		if after.Alias != "" {
			if err := al.Put(acctKey(after.Account, after.Alias), []byte(after.Prefix)); err != nil {
				return err
			}
		}
	}
	if before.Status != StatusRevoked && after.Status == StatusRevoked {
		return tx.Bucket(bucketRevoked).Put(microKey(after.RevokedAt, after.Prefix), nil)
	}
	return nil
}

// removeRecord deletes a record, its indexes, usage and events.
func removeRecord(tx *bolt.Tx, r *Record) error {
	sk := sortKey(r)
	if err := indexChange(tx, r, &Record{Prefix: r.Prefix, Account: r.Account, CreatedAt: r.CreatedAt}); err != nil {
		return err
	}
	for _, del := range []struct {
		b []byte
		k []byte
	}{
		{bucketKeys, []byte(r.Prefix)},
		{bucketAccounts, acctKey(r.Account, sk)},
		{bucketCreated, []byte(sk)},
		{bucketRevoked, microKey(r.RevokedAt, r.Prefix)},
	} {
		if err := tx.Bucket(del.b).Delete(del.k); err != nil {
			return err
		}
	}
	if tx.Bucket(bucketEvents).Bucket([]byte(r.Prefix)) != nil {
		return tx.Bucket(bucketEvents).DeleteBucket([]byte(r.Prefix))
	}
	return nil
}

// Create implements Store.
func (s *BoltStore) Create(ctx context.Context, rec Record, maxActive int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if rec.Status == StatusRevoked && rec.RevokedAt.IsZero() {
		rec.RevokedAt = s.now().UTC()
	}
	if err := rec.validate(); err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketKeys).Get([]byte(rec.Prefix)) != nil {
			return ErrExists
		}
		if err := checkCreate(&rec, countActive(tx, rec.Account), aliasOwner(tx, rec.Account, rec.Alias), maxActive); err != nil {
			return err
		}
		if err := putRecord(tx, &rec); err != nil {
			return err
		}
		return indexNew(tx, &rec)
	})
}

// Get implements Store.
func (s *BoltStore) Get(ctx context.Context, prefix string) (rec Record, err error) {
	if err := ctx.Err(); err != nil {
		return Record{}, err
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		rec, err = getRecord(tx, prefix)
		return err
	})
	return rec, err
}

// List implements Store: a cursor over the account's index (its active
// index for active keys of one account) or over every key.
func (s *BoltStore) List(ctx context.Context, f Filter, p Page) (out []Record, next string, err error) {
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	if err := CheckCursor(p.Cursor); err != nil {
		return nil, "", err
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		b, pfx := tx.Bucket(bucketCreated), []byte(nil)
		if f.Account != "" {
			b, pfx = tx.Bucket(bucketAccounts), acctKey(f.Account, "")
			if f.Status == StatusActive {
				b = tx.Bucket(bucketActive)
			}
		}
		c := b.Cursor()
		k, _ := c.Seek(append(bytes.Clone(pfx), p.Cursor...))
		if p.Cursor != "" && k != nil && string(k[len(pfx):]) == p.Cursor {
			k, _ = c.Next()
		}
		for ; k != nil && bytes.HasPrefix(k, pfx); k, _ = c.Next() {
			sk := k[len(pfx):]
			i := bytes.LastIndexByte(sk, ':')
			if i < 0 {
				return fmt.Errorf("auth: bad index entry %q", k)
			}
			r, err := getRecord(tx, string(sk[i+1:]))
			if err != nil {
				return err
			}
			if !f.Match(&r) {
				continue
			}
			if p.Limit > 0 && len(out) == p.Limit {
				next = sortKey(&out[len(out)-1])
				return nil
			}
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	return out, next, nil
}

// Update implements Store.
func (s *BoltStore) Update(ctx context.Context, prefix string, maxActive int, fn func(*Record) error) (rec Record, err error) {
	if err := ctx.Err(); err != nil {
		return Record{}, err
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		before, err := getRecord(tx, prefix)
		if err != nil {
			return err
		}
		rec = before
		if err := fn(&rec); err != nil {
			return err
		}
		if err := prepareUpdate(&before, &rec, s.now()); err != nil {
			return err
		}
		active := countActive(tx, before.Account)
		if before.Status == StatusActive {
			active--
		}
		if err := checkUpdate(&before, &rec, active, aliasOwner(tx, rec.Account, rec.Alias), maxActive); err != nil {
			return err
		}
		if err := putRecord(tx, &rec); err != nil {
			return err
		}
		return indexChange(tx, &before, &rec)
	})
	if err != nil {
		return Record{}, err
	}
	return rec, nil
}

// Delete implements Store.
func (s *BoltStore) Delete(ctx context.Context, prefix string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		rec, err := getRecord(tx, prefix)
		if err != nil {
			return err
		}
		if rec.Used() {
			return ErrKeyInUse
		}
		return removeRecord(tx, &rec)
	})
}

// AddUsage implements Store: one transaction for the whole batch.
func (s *BoltStore) AddUsage(ctx context.Context, batch map[string]UsageDelta) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(batch) == 0 {
		return nil
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		for prefix, d := range batch {
			rec, err := getRecord(tx, prefix)
			if err == ErrNotFound {
				continue
			}
			if err != nil {
				return err
			}
			rec.RequestCount += d.Count
			rec.addMetered(&d)
			if d.LastUsed.After(rec.LastUsedAt) {
				rec.LastUsedAt = d.LastUsed.UTC()
			}
			if err := putRecord(tx, &rec); err != nil {
				return err
			}
		}
		return nil
	})
}

// appendEvent adds one event to the key's bucket, trimmed to MaxEvents.
func appendEvent(tx *bolt.Tx, prefix string, v []byte) error {
	if tx.Bucket(bucketKeys).Get([]byte(prefix)) == nil {
		return ErrNotFound
	}
	b, err := tx.Bucket(bucketEvents).CreateBucketIfNotExists([]byte(prefix))
	if err != nil {
		return err
	}
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], seq)
	if err := b.Put(k[:], v); err != nil {
		return err
	}
	// Sequences are contiguous: drop everything at or below seq-MaxEvents.
	c := b.Cursor()
	for k, _ := c.First(); k != nil && seq > MaxEvents && binary.BigEndian.Uint64(k) <= seq-MaxEvents; k, _ = c.First() {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// AppendEvent implements Store.
func (s *BoltStore) AppendEvent(ctx context.Context, prefix string, ev Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	v, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error { return appendEvent(tx, prefix, v) })
}

// AppendEvents implements Store: one transaction (one fsync) per batch.
func (s *BoltStore) AppendEvents(ctx context.Context, batch []PrefixEvent) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(batch) == 0 {
		return nil
	}
	vals, err := marshalEvents(batch)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		for i := range batch {
			if err := appendEvent(tx, batch[i].Prefix, vals[i]); err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
		}
		return nil
	})
}

// Events implements Store.
func (s *BoltStore) Events(ctx context.Context, prefix string, limit int) ([]Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if limit <= 0 || limit > MaxEvents {
		limit = MaxEvents
	}
	var out []Event
	err := s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketKeys).Get([]byte(prefix)) == nil {
			return ErrNotFound
		}
		b := tx.Bucket(bucketEvents).Bucket([]byte(prefix))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.Last(); k != nil && len(out) < limit; k, v = c.Prev() {
			var ev Event
			if err := json.Unmarshal(v, &ev); err != nil {
				return fmt.Errorf("auth: decode event: %w", err)
			}
			out = append(out, ev)
		}
		return nil
	})
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, err
}

// pruneSignatures deletes the signatures expired at nowMS, oldest first,
// through the expiry index: the cost is the number deleted.
func pruneSignatures(tx *bolt.Tx, nowMS int64) error {
	sigs, exp := tx.Bucket(bucketSigs), tx.Bucket(bucketSigExp)
	var stale [][]byte
	c := exp.Cursor()
	for k, _ := c.First(); len(k) >= 8 && int64(binary.BigEndian.Uint64(k)) <= nowMS; k, _ = c.Next() {
		stale = append(stale, bytes.Clone(k)) // deleting under a moving cursor can skip keys
	}
	for _, k := range stale {
		if err := exp.Delete(k); err != nil {
			return err
		}
		sig := k[8:]
		// A signature seen again after it expired has a newer entry.
		if v := sigs.Get(sig); len(v) != 8 || int64(binary.BigEndian.Uint64(v)) <= nowMS {
			if err := sigs.Delete(sig); err != nil {
				return err
			}
		}
	}
	return nil
}

// UseSignature implements Store; expired signatures are deleted in the
// same transaction, so none outlives its window by more than the time to
// the next signed request (or the node's purge).
func (s *BoltStore) UseSignature(ctx context.Context, sig string, now, until time.Time) (fresh bool, err error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	nowMS := now.UnixMilli()
	err = s.db.Update(func(tx *bolt.Tx) error {
		if err := pruneSignatures(tx, nowMS); err != nil {
			return err
		}
		b := tx.Bucket(bucketSigs)
		if v := b.Get([]byte(sig)); len(v) == 8 && int64(binary.BigEndian.Uint64(v)) > nowMS {
			return nil
		}
		fresh = true
		var v [8]byte
		binary.BigEndian.PutUint64(v[:], uint64(until.UnixMilli()))
		if err := b.Put([]byte(sig), v[:]); err != nil {
			return err
		}
		return tx.Bucket(bucketSigExp).Put(append(v[:], sig...), nil)
	})
	if err != nil {
		return false, err
	}
	return fresh, nil
}

// Purge implements Store: one transaction, through the revocation index
// (the cost is the number of keys deleted, not the number kept).
func (s *BoltStore) Purge(ctx context.Context, revokedBefore, now time.Time, max int) (n int, err error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	cutoff := microKey(revokedBefore, "")
	err = s.db.Update(func(tx *bolt.Tx) error {
		if err := pruneSignatures(tx, now.UnixMilli()); err != nil {
			return err
		}
		var due [][]byte
		c := tx.Bucket(bucketRevoked).Cursor()
		for k, _ := c.First(); len(k) > 8 && bytes.Compare(k[:8], cutoff) < 0 && len(due) < max; k, _ = c.Next() {
			due = append(due, bytes.Clone(k))
		}
		for _, k := range due {
			rec, err := getRecord(tx, string(k[8:]))
			if errors.Is(err, ErrNotFound) {
				if err := tx.Bucket(bucketRevoked).Delete(k); err != nil { // stale entry
					return err
				}
				continue
			}
			if err != nil {
				return err
			}
			if err := removeRecord(tx, &rec); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}
