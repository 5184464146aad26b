package auth

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// The Redis audit log: a sorted set <ns>audit of JSON entries scored by
// their ID, from the counter <ns>audit:seq.

var _ AuditLog = (*RedisStore)(nil)

func (s *RedisStore) auditKey() string    { return s.ns + "audit" }
func (s *RedisStore) auditSeqKey() string { return s.ns + "audit:seq" }

// AppendAudit implements AuditLog: the ID, then one MULTI that adds the
// entry and trims the set to keep.
func (s *RedisStore) AppendAudit(ctx context.Context, e AuditEntry, keep int) error {
	if keep <= 0 {
		keep = MaxAudit
	}
	id, err := s.rdb.Incr(ctx, s.auditSeqKey()).Result()
	if err != nil {
		return err
	}
	e.ID = uint64(id)
	v, err := json.Marshal(e)
	if err != nil {
		return err
	}
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.ZAdd(ctx, s.auditKey(), redis.Z{Score: float64(e.ID), Member: v})
		p.ZRemRangeByRank(ctx, s.auditKey(), 0, int64(-keep-1))
		return nil
	})
	return err
}

// Audit implements AuditLog; with a prefix it reads pages of the set until
// limit entries match (the set holds at most MaxAudit).
func (s *RedisStore) Audit(ctx context.Context, prefix string, limit int, before uint64) ([]AuditEntry, uint64, error) {
	max := "+inf"
	if before > 0 {
		max = "(" + strconv.FormatUint(before, 10)
	}
	var out []AuditEntry
	for {
		page, err := s.rdb.ZRevRangeByScore(ctx, s.auditKey(), &redis.ZRangeBy{Max: max, Min: "-inf", Count: int64(limit + 1)}).Result()
		if err != nil {
			return nil, 0, err
		}
		for _, raw := range page {
			var e AuditEntry
			if err := json.Unmarshal([]byte(raw), &e); err != nil {
				return nil, 0, fmt.Errorf("auth: decode audit entry: %w", err)
			}
			max = "(" + strconv.FormatUint(e.ID, 10)
			if prefix != "" && e.Prefix != prefix {
				continue
			}
			if len(out) == limit {
				return out, out[len(out)-1].ID, nil
			}
			out = append(out, e)
		}
		if len(page) < limit+1 {
			return out, 0, nil
		}
	}
}
