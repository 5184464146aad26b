package auth

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// bucketAudit holds the audit log: ID (8 bytes, big endian) -> JSON
// AuditEntry. It is made by the first AppendAudit.
var bucketAudit = []byte("audit")

var _ AuditLog = (*BoltStore)(nil)

// AppendAudit implements AuditLog: one fsynced transaction that also drops
// the entries beyond keep.
func (s *BoltStore) AppendAudit(ctx context.Context, e AuditEntry, keep int) error {
	if keep <= 0 {
		keep = MaxAudit
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketAudit)
		if err != nil {
			return err
		}
		if e.ID, err = b.NextSequence(); err != nil {
			return err
		}
		v, err := json.Marshal(e)
		if err != nil {
			return err
		}
		if err := b.Put(auditKey(e.ID), v); err != nil {
			return err
		}
		if e.ID > uint64(keep) {
			c := b.Cursor()
			for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) <= e.ID-uint64(keep); k, _ = c.First() {
				if err := c.Delete(); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// Audit implements AuditLog.
func (s *BoltStore) Audit(ctx context.Context, prefix string, limit int, before uint64) ([]AuditEntry, uint64, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	var out []AuditEntry
	var next uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAudit)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		var k, v []byte
		if before == 0 {
			k, v = c.Last()
		} else {
			k, _ = c.Seek(auditKey(before))
			if k == nil {
				k, v = c.Last()
			} else {
				k, v = c.Prev() // Seek lands on before (or after it): start below
			}
		}
		for ; k != nil; k, v = c.Prev() {
			var e AuditEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("auth: decode audit entry %d: %w", binary.BigEndian.Uint64(k), err)
			}
			if prefix != "" && e.Prefix != prefix {
				continue
			}
			if len(out) == limit {
				next = out[len(out)-1].ID
				return nil
			}
			out = append(out, e)
		}
		return nil
	})
	return out, next, err
}

func auditKey(id uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], id)
	return k[:]
}
