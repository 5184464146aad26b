package auth

import (
	"context"
	"errors"

	"github.com/redis/go-redis/v9"
	bolt "go.etcd.io/bbolt"
)

// FlightWaiters is the number of callers waiting for the in-flight lookup
// of prefix.
func (k *Keyring) FlightWaiters(prefix string) int {
	k.fmu.Lock()
	defer k.fmu.Unlock()
	if f := k.flights[prefix]; f != nil {
		return f.waiters
	}
	return -1
}

// NegativeLen is the number of remembered unknown prefixes.
func (k *Keyring) NegativeLen() int {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return len(k.negative)
}

// SignatureCount is the number of remembered signatures (both buckets
// agree: signatures and their expiry index).
func (s *BoltStore) SignatureCount() (sigs, index int) {
	_ = s.db.View(func(tx *bolt.Tx) error {
		sigs = tx.Bucket(bucketSigs).Stats().KeyN
		index = tx.Bucket(bucketSigExp).Stats().KeyN
		return nil
	})
	return sigs, index
}

// LoadRecords stores recs (validated, indexed) without the one-write-per-
// record cost of Create: batches of 10,000 per bbolt transaction, or
// pipelines of 1,000 on Redis. For benchmarks that need 100k records.
func LoadRecords(ctx context.Context, s Store, recs []Record) error {
	switch st := s.(type) {
	case *BoltStore:
		for len(recs) > 0 {
			n := min(len(recs), 10000)
			err := st.db.Update(func(tx *bolt.Tx) error {
				for i := range recs[:n] {
					if err := putRecord(tx, &recs[i]); err != nil {
						return err
					}
					if err := indexNew(tx, &recs[i]); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
			recs = recs[n:]
		}
		return nil
	case *RedisStore:
		for len(recs) > 0 {
			n := min(len(recs), 1000)
			_, err := st.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				for i := range recs[:n] {
					r := &recs[i]
					val, err := encodeRecord(*r)
					if err != nil {
						return err
					}
					sk := sortKey(r)
					p.Set(ctx, st.ptrKey(r.Prefix), r.Account, 0)
					p.ZAdd(ctx, st.indexKey(), redis.Z{Member: sk})
					p.Set(ctx, st.recKey(r.Account, r.Prefix), val, 0)
					p.ZAdd(ctx, st.allKey(r.Account), redis.Z{Member: sk})
					switch r.Status {
					case StatusActive:
						p.ZAdd(ctx, st.activeKey(r.Account), redis.Z{Member: sk})
					case StatusRevoked:
						p.ZAdd(ctx, st.revokedKey(), redis.Z{Score: float64(r.RevokedAt.UnixMilli()), Member: r.Prefix})
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
			recs = recs[n:]
		}
		return nil
	}
	return errors.New("LoadRecords: unknown store")
}
