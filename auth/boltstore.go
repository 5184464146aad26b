package auth

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
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
	// SignaturePruneEvery is how often expired replay signatures are
	// deleted (during a UseSignature call). Defaults to 1 minute.
	SignaturePruneEvery time.Duration
}

var (
	bucketKeys     = []byte("keys")     // prefix -> JSON Record
	bucketAccounts = []byte("accounts") // account \x00 prefix -> empty
	bucketEvents   = []byte("events")   // prefix -> bucket{ seq(8, big endian) -> JSON Event }
	bucketSigs     = []byte("sigs")     // signature -> until (8 bytes, unix ms)
)

// BoltStore is the Store kept in one bbolt file. Every write is an fsynced
// bbolt transaction, committed before the method returns (a few ms on a
// disk). Reads are lock-free MVCC views.
type BoltStore struct {
	// Immutable after OpenBolt
	db         *bolt.DB
	pruneEvery time.Duration

	// Guarded by mu
	mu        sync.Mutex
	lastPrune time.Time
}

var _ Store = (*BoltStore)(nil)

// OpenBolt opens (creating if needed) the key database in dir.
func OpenBolt(dir string, opts BoltOptions) (*BoltStore, error) {
	if opts.FileName == "" {
		opts.FileName = "keys.db"
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = time.Second
	}
	if opts.SignaturePruneEvery <= 0 {
		opts.SignaturePruneEvery = time.Minute
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("auth: open bolt store: %w", err)
	}
	db, err := bolt.Open(filepath.Join(dir, opts.FileName), 0o600, &bolt.Options{Timeout: opts.LockTimeout})
	if err != nil {
		return nil, fmt.Errorf("auth: open bolt store: %w", err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketKeys, bucketAccounts, bucketEvents, bucketSigs} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("auth: open bolt store: %w", err)
	}
	return &BoltStore{db: db, pruneEvery: opts.SignaturePruneEvery}, nil
}

// Close closes the database file.
func (s *BoltStore) Close() error { return s.db.Close() }

// Ping reports whether the database is open.
func (s *BoltStore) Ping(ctx context.Context) error {
	return s.db.View(func(*bolt.Tx) error { return nil })
}

func accountKey(account, prefix string) []byte {
	k := make([]byte, 0, len(account)+1+len(prefix))
	k = append(k, account...)
	k = append(k, 0)
	return append(k, prefix...)
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

// accountRecords returns every record of account, via the index.
func accountRecords(tx *bolt.Tx, account string) ([]Record, error) {
	var out []Record
	c := tx.Bucket(bucketAccounts).Cursor()
	pfx := accountKey(account, "")
	for k, _ := c.Seek(pfx); k != nil && bytes.HasPrefix(k, pfx); k, _ = c.Next() {
		r, err := getRecord(tx, string(k[len(pfx):]))
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// Create implements Store.
func (s *BoltStore) Create(ctx context.Context, rec Record, maxActive int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := rec.validate(); err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketKeys).Get([]byte(rec.Prefix)) != nil {
			return ErrExists
		}
		others, err := accountRecords(tx, rec.Account)
		if err != nil {
			return err
		}
		if err := checkCreate(&rec, others, maxActive); err != nil {
			return err
		}
		if err := putRecord(tx, &rec); err != nil {
			return err
		}
		return tx.Bucket(bucketAccounts).Put(accountKey(rec.Account, rec.Prefix), nil)
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

// List implements Store.
func (s *BoltStore) List(ctx context.Context, f Filter) ([]Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []Record
	err := s.db.View(func(tx *bolt.Tx) error {
		if f.Account != "" {
			recs, err := accountRecords(tx, f.Account)
			for i := range recs {
				if f.Match(&recs[i]) {
					out = append(out, recs[i])
				}
			}
			return err
		}
		return tx.Bucket(bucketKeys).ForEach(func(k, v []byte) error {
			var r Record
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("auth: decode record %s: %w", k, err)
			}
			if f.Match(&r) {
				out = append(out, r)
			}
			return nil
		})
	})
	sortRecords(out)
	return out, err
}

func sortRecords(recs []Record) {
	sort.Slice(recs, func(i, j int) bool {
		if !recs[i].CreatedAt.Equal(recs[j].CreatedAt) {
			return recs[i].CreatedAt.Before(recs[j].CreatedAt)
		}
		return recs[i].Prefix < recs[j].Prefix
	})
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
		others, err := accountRecords(tx, before.Account)
		if err != nil {
			return err
		}
		if err := checkUpdate(&before, &rec, others, maxActive); err != nil {
			return err
		}
		return putRecord(tx, &rec)
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
		if err := tx.Bucket(bucketKeys).Delete([]byte(prefix)); err != nil {
			return err
		}
		if err := tx.Bucket(bucketAccounts).Delete(accountKey(rec.Account, prefix)); err != nil {
			return err
		}
		if tx.Bucket(bucketEvents).Bucket([]byte(prefix)) != nil {
			return tx.Bucket(bucketEvents).DeleteBucket([]byte(prefix))
		}
		return nil
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

// AppendEvent implements Store.
func (s *BoltStore) AppendEvent(ctx context.Context, prefix string, ev Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	v, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
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

// UseSignature implements Store with a bucket of signatures; expired ones
// are pruned at most once per SignaturePruneEvery.
func (s *BoltStore) UseSignature(ctx context.Context, sig string, now, until time.Time) (fresh bool, err error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	s.mu.Lock()
	prune := now.Sub(s.lastPrune) >= s.pruneEvery
	if prune {
		s.lastPrune = now
	}
	s.mu.Unlock()
	nowMS := now.UnixMilli()
	err = s.db.Update(func(tx *bolt.Tx) error {
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
		if !prune {
			return nil
		}
		// Collect first: deleting under a moving cursor can skip keys.
		var stale [][]byte
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if len(v) != 8 || int64(binary.BigEndian.Uint64(v)) <= nowMS {
				stale = append(stale, bytes.Clone(k))
			}
		}
		for _, k := range stale {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	return fresh, nil
}
