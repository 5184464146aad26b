package auth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisSchema is the layout version kept in {ns}schema. Version 1 (no
// schema key) kept records under {ns}key:<prefix>, usage and events under
// {ns}usage:<prefix> and {ns}events:<prefix>, a set per account
// {ns}acct:<account> and the set of every prefix {ns}keys.
const redisSchema = "2"

// Upgrade converts the keys of an older layout to this one, once: the
// node that takes the upgrade lock converts them (the record, its
// indexes, usage and events, key by key, idempotently), the others wait
// for it (bounded by ctx). A revoked key without RevokedAt gets the
// upgrade time. Call it at start; on an up-to-date store it costs one
// GET.
func (s *RedisStore) Upgrade(ctx context.Context) error {
	if s.err != nil {
		return s.err
	}
	for {
		v, err := s.rdb.Get(ctx, s.schemaKey()).Result()
		if err == nil && v == redisSchema {
			return nil
		}
		if err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		ok, err := s.rdb.SetNX(ctx, s.ns+"upgrade-lock", 1, time.Minute).Result()
		if err != nil {
			return err
		}
		if ok {
			err = s.upgradeV1(ctx)
			s.rdb.Del(ctx, s.ns+"upgrade-lock")
			return err
		}
		select { // another node converts: wait for it
		case <-ctx.Done():
			return fmt.Errorf("auth: redis store: waiting for another node's upgrade: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (s *RedisStore) upgradeV1(ctx context.Context) error {
	oldAll := s.ns + "keys"
	prefixes, err := s.rdb.SMembers(ctx, oldAll).Result()
	if err != nil {
		return fmt.Errorf("auth: redis store upgrade: %w", err)
	}
	now := s.now().UTC()
	for _, prefix := range prefixes {
		if err := s.upgradeKey(ctx, prefix, now); err != nil {
			return fmt.Errorf("auth: redis store upgrade of key %s: %w", prefix, err)
		}
		if err := s.rdb.SRem(ctx, oldAll, prefix).Err(); err != nil {
			return err
		}
	}
	return s.rdb.Set(ctx, s.schemaKey(), redisSchema, 0).Err()
}

// upgradeKey moves one key of layout 1 to layout 2.
func (s *RedisStore) upgradeKey(ctx context.Context, prefix string, now time.Time) error {
	oldRec, oldUsage, oldEvents := s.ns+"key:"+prefix, s.ns+"usage:"+prefix, s.ns+"events:"+prefix
	v, err := s.rdb.Get(ctx, oldRec).Result()
	if errors.Is(err, redis.Nil) {
		return nil
	}
	if err != nil {
		return err
	}
	rec, err := decodeRecord(prefix, v)
	if err != nil {
		return err
	}
	if rec.Status == StatusRevoked && rec.RevokedAt.IsZero() {
		rec.RevokedAt = now
	}
	val, err := encodeRecord(rec)
	if err != nil {
		return err
	}
	sk := sortKey(&rec)
	if err := s.rdb.Set(ctx, s.ptrKey(prefix), rec.Account, 0).Err(); err != nil {
		return err
	}
	if err := s.rdb.ZAdd(ctx, s.indexKey(), redis.Z{Member: sk}).Err(); err != nil {
		return err
	}
	if rec.Status == StatusRevoked {
		if err := s.rdb.ZAdd(ctx, s.revokedKey(), redis.Z{Score: float64(rec.RevokedAt.UnixMilli()), Member: prefix}).Err(); err != nil {
			return err
		}
	}
	active := "0"
	if rec.Status == StatusActive {
		active = "1"
	}
	if err := createScript.Run(ctx, s.rdb,
		[]string{s.recKey(rec.Account, prefix), s.allKey(rec.Account), s.activeKey(rec.Account), s.aliasKey(rec.Account)},
		val, sk, active, rec.Alias, prefix, 0).Err(); err != nil {
		return err
	}
	usage, err := s.rdb.HGetAll(ctx, oldUsage).Result()
	if err != nil {
		return err
	}
	if len(usage) > 0 {
		if err := s.rdb.HSet(ctx, s.usageKey(prefix), usage).Err(); err != nil {
			return err
		}
	}
	if n, err := s.rdb.LLen(ctx, s.eventsKey(prefix)).Result(); err != nil {
		return err
	} else if n == 0 {
		evs, err := s.rdb.LRange(ctx, oldEvents, 0, -1).Result()
		if err != nil {
			return err
		}
		if len(evs) > 0 {
			args := make([]any, len(evs))
			for i, e := range evs {
				args[i] = e
			}
			if err := s.rdb.RPush(ctx, s.eventsKey(prefix), args...).Err(); err != nil {
				return err
			}
		}
	}
	for _, k := range []string{oldRec, oldUsage, oldEvents} {
		if err := s.rdb.Del(ctx, k).Err(); err != nil { // one key per DEL: they are in different slots
			return err
		}
	}
	return s.rdb.SRem(ctx, s.ns+"acct:"+rec.Account, prefix).Err()
}
