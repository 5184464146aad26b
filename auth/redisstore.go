package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisOptions configure NewRedisStore. The zero value is ready to use.
type RedisOptions struct {
	// Namespace prefixes every Redis key. Defaults to "floodgate:". On a
	// Redis Cluster use a hash tag such as "{floodgate}:" so that the
	// multi-key transactions stay in one slot.
	Namespace string
	// MaxRetries bounds the optimistic (WATCH) retries of one write under
	// contention. Defaults to 20.
	MaxRetries int
}

// RedisStore is the Store shared by a cluster through Redis. Multi-key
// writes are MULTI/EXEC transactions guarded by WATCH (retried on
// conflict) or Lua scripts; each method is one to three round trips. The
// key layout is described in the package documentation.
type RedisStore struct {
	// Immutable after NewRedisStore
	rdb     redis.UniversalClient
	ns      string
	retries int
}

var _ Store = (*RedisStore)(nil)

// NewRedisStore returns a store over rdb. The caller owns rdb and closes it
// after the store.
func NewRedisStore(rdb redis.UniversalClient, opts RedisOptions) *RedisStore {
	if opts.Namespace == "" {
		opts.Namespace = "floodgate:"
	}
	if opts.MaxRetries <= 0 {
		opts.MaxRetries = 20
	}
	return &RedisStore{rdb: rdb, ns: opts.Namespace, retries: opts.MaxRetries}
}

func (s *RedisStore) keyKey(prefix string) string    { return s.ns + "key:" + prefix }
func (s *RedisStore) usageKey(prefix string) string  { return s.ns + "usage:" + prefix }
func (s *RedisStore) eventsKey(prefix string) string { return s.ns + "events:" + prefix }
func (s *RedisStore) acctKey(account string) string  { return s.ns + "acct:" + account }
func (s *RedisStore) allKey() string                 { return s.ns + "keys" }
func (s *RedisStore) sigKey(sig string) string       { return s.ns + "sig:" + sig }

// Close implements Store; the client stays open.
func (s *RedisStore) Close() error { return nil }

// Ping implements Store.
func (s *RedisStore) Ping(ctx context.Context) error { return s.rdb.Ping(ctx).Err() }

// watch runs fn in a WATCH transaction over keys, retrying on conflicts.
func (s *RedisStore) watch(ctx context.Context, fn func(*redis.Tx) error, keys ...string) error {
	for i := 0; i < s.retries; i++ {
		err := s.rdb.Watch(ctx, fn, keys...)
		if !errors.Is(err, redis.TxFailedErr) {
			return err
		}
	}
	return fmt.Errorf("auth: redis store: too much contention: %w", redis.TxFailedErr)
}

// encodeRecord stores a record without its usage (kept in the usage hash).
func encodeRecord(r Record) ([]byte, error) {
	r.RequestCount, r.LastUsedAt = 0, time.Time{}
	return json.Marshal(r)
}

// readRecords watches and loads the records of prefixes (missing ones are
// skipped), without usage.
func (s *RedisStore) readRecords(ctx context.Context, c redis.Cmdable, prefixes []string) ([]Record, error) {
	if len(prefixes) == 0 {
		return nil, nil
	}
	keys := make([]string, len(prefixes))
	for i, p := range prefixes {
		keys[i] = s.keyKey(p)
	}
	vals, err := c.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, err
	}
	out := make([]Record, 0, len(vals))
	for i, v := range vals {
		str, ok := v.(string)
		if !ok {
			continue
		}
		var r Record
		if err := json.Unmarshal([]byte(str), &r); err != nil {
			return nil, fmt.Errorf("auth: decode record %s: %w", prefixes[i], err)
		}
		out = append(out, r)
	}
	return out, nil
}

// accountRecordsTx watches every record in the (already watched) account
// index, except watched, and returns the records. A key must not be watched
// twice: miniredis would forget the first version.
func (s *RedisStore) accountRecordsTx(ctx context.Context, tx *redis.Tx, account, watched string) ([]Record, error) {
	members, err := tx.SMembers(ctx, s.acctKey(account)).Result()
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(members))
	for _, m := range members {
		if m != watched {
			keys = append(keys, s.keyKey(m))
		}
	}
	if len(keys) > 0 {
		if err := tx.Watch(ctx, keys...).Err(); err != nil {
			return nil, err
		}
	}
	return s.readRecords(ctx, tx, members)
}

// Create implements Store.
func (s *RedisStore) Create(ctx context.Context, rec Record, maxActive int) error {
	if err := rec.validate(); err != nil {
		return err
	}
	val, err := encodeRecord(rec)
	if err != nil {
		return err
	}
	return s.watch(ctx, func(tx *redis.Tx) error {
		n, err := tx.Exists(ctx, s.keyKey(rec.Prefix)).Result()
		if err != nil {
			return err
		}
		if n > 0 {
			return ErrExists
		}
		others, err := s.accountRecordsTx(ctx, tx, rec.Account, rec.Prefix)
		if err != nil {
			return err
		}
		if err := checkCreate(&rec, others, maxActive); err != nil {
			return err
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, s.keyKey(rec.Prefix), val, 0)
			p.SAdd(ctx, s.acctKey(rec.Account), rec.Prefix)
			p.SAdd(ctx, s.allKey(), rec.Prefix)
			return nil
		})
		return err
	}, s.keyKey(rec.Prefix), s.acctKey(rec.Account))
}

// withUsage loads the usage hashes of recs into them.
func (s *RedisStore) withUsage(ctx context.Context, recs []Record) error {
	if len(recs) == 0 {
		return nil
	}
	cmds, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range recs {
			p.HMGet(ctx, s.usageKey(recs[i].Prefix), "count", "last")
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i, c := range cmds {
		vals, err := c.(*redis.SliceCmd).Result()
		if err != nil {
			return err
		}
		applyUsage(&recs[i], vals)
	}
	return nil
}

func applyUsage(r *Record, vals []any) {
	if len(vals) != 2 {
		return
	}
	if s, ok := vals[0].(string); ok {
		r.RequestCount, _ = strconv.ParseInt(s, 10, 64)
	}
	if s, ok := vals[1].(string); ok {
		if ms, err := strconv.ParseInt(s, 10, 64); err == nil && ms > 0 {
			r.LastUsedAt = time.UnixMilli(ms).UTC()
		}
	}
}

// Get implements Store.
func (s *RedisStore) Get(ctx context.Context, prefix string) (Record, error) {
	recs, err := s.readRecords(ctx, s.rdb, []string{prefix})
	if err != nil {
		return Record{}, err
	}
	if len(recs) == 0 {
		return Record{}, ErrNotFound
	}
	if err := s.withUsage(ctx, recs); err != nil {
		return Record{}, err
	}
	return recs[0], nil
}

// List implements Store.
func (s *RedisStore) List(ctx context.Context, f Filter) ([]Record, error) {
	set := s.allKey()
	if f.Account != "" {
		set = s.acctKey(f.Account)
	}
	members, err := s.rdb.SMembers(ctx, set).Result()
	if err != nil {
		return nil, err
	}
	var out []Record
	for len(members) > 0 {
		n := min(len(members), 500)
		recs, err := s.readRecords(ctx, s.rdb, members[:n])
		if err != nil {
			return nil, err
		}
		members = members[n:]
		for i := range recs {
			if f.Match(&recs[i]) {
				out = append(out, recs[i])
			}
		}
	}
	if err := s.withUsage(ctx, out); err != nil {
		return nil, err
	}
	sortRecords(out)
	return out, nil
}

// Update implements Store.
func (s *RedisStore) Update(ctx context.Context, prefix string, maxActive int, fn func(*Record) error) (Record, error) {
	var rec Record
	err := s.watch(ctx, func(tx *redis.Tx) error {
		recs, err := s.readRecords(ctx, tx, []string{prefix})
		if err != nil {
			return err
		}
		if len(recs) == 0 {
			return ErrNotFound
		}
		before := recs[0]
		rec = before
		if err := fn(&rec); err != nil {
			return err
		}
		if err := tx.Watch(ctx, s.acctKey(before.Account)).Err(); err != nil {
			return err
		}
		others, err := s.accountRecordsTx(ctx, tx, before.Account, prefix)
		if err != nil {
			return err
		}
		if err := checkUpdate(&before, &rec, others, maxActive); err != nil {
			return err
		}
		val, err := encodeRecord(rec)
		if err != nil {
			return err
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, s.keyKey(prefix), val, 0)
			return nil
		})
		return err
	}, s.keyKey(prefix))
	if err != nil {
		return Record{}, err
	}
	recs := []Record{rec}
	if err := s.withUsage(ctx, recs); err != nil {
		return Record{}, err
	}
	return recs[0], nil
}

// Delete implements Store.
func (s *RedisStore) Delete(ctx context.Context, prefix string) error {
	return s.watch(ctx, func(tx *redis.Tx) error {
		recs, err := s.readRecords(ctx, tx, []string{prefix})
		if err != nil {
			return err
		}
		if len(recs) == 0 {
			return ErrNotFound
		}
		vals, err := tx.HMGet(ctx, s.usageKey(prefix), "count", "last").Result()
		if err != nil {
			return err
		}
		applyUsage(&recs[0], vals)
		if recs[0].Used() {
			return ErrKeyInUse
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Del(ctx, s.keyKey(prefix), s.usageKey(prefix), s.eventsKey(prefix))
			p.SRem(ctx, s.acctKey(recs[0].Account), prefix)
			p.SRem(ctx, s.allKey(), prefix)
			return nil
		})
		return err
	}, s.keyKey(prefix), s.usageKey(prefix))
}

// addUsageScript: KEYS record, usage; ARGV count, last (unix ms).
var addUsageScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local n = tonumber(ARGV[1])
if n ~= 0 then redis.call('HINCRBY', KEYS[2], 'count', n) end
local last = tonumber(ARGV[2])
local cur = tonumber(redis.call('HGET', KEYS[2], 'last') or '0')
if last > cur then redis.call('HSET', KEYS[2], 'last', ARGV[2]) end
return 1`)

// AddUsage implements Store: one pipelined round trip for the batch.
func (s *RedisStore) AddUsage(ctx context.Context, batch map[string]UsageDelta) error {
	if len(batch) == 0 {
		return nil
	}
	// Load the script once so the pipeline can use EVALSHA.
	if err := addUsageScript.Load(ctx, s.rdb).Err(); err != nil {
		return err
	}
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for prefix, d := range batch {
			var last int64
			if !d.LastUsed.IsZero() {
				last = d.LastUsed.UnixMilli()
			}
			addUsageScript.EvalSha(ctx, p, []string{s.keyKey(prefix), s.usageKey(prefix)}, d.Count, last)
		}
		return nil
	})
	return err
}

// appendEventScript: KEYS record, events; ARGV event JSON, max.
var appendEventScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[2]), -1)
return 1`)

// AppendEvent implements Store.
func (s *RedisStore) AppendEvent(ctx context.Context, prefix string, ev Event) error {
	v, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	n, err := appendEventScript.Run(ctx, s.rdb, []string{s.keyKey(prefix), s.eventsKey(prefix)}, v, MaxEvents).Int()
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// Events implements Store.
func (s *RedisStore) Events(ctx context.Context, prefix string, limit int) ([]Event, error) {
	if limit <= 0 || limit > MaxEvents {
		limit = MaxEvents
	}
	var exists *redis.IntCmd
	var lr *redis.StringSliceCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		exists = p.Exists(ctx, s.keyKey(prefix))
		lr = p.LRange(ctx, s.eventsKey(prefix), int64(-limit), -1)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if exists.Val() == 0 {
		return nil, ErrNotFound
	}
	out := make([]Event, 0, len(lr.Val()))
	for _, v := range lr.Val() {
		var ev Event
		if err := json.Unmarshal([]byte(v), &ev); err != nil {
			return nil, fmt.Errorf("auth: decode event: %w", err)
		}
		out = append(out, ev)
	}
	return out, nil
}

// UseSignature implements Store with SET NX PX, so a signature is fresh
// once across the whole cluster.
func (s *RedisStore) UseSignature(ctx context.Context, sig string, now, until time.Time) (bool, error) {
	ttl := until.Sub(now)
	if ttl < time.Millisecond {
		ttl = time.Millisecond
	}
	return s.rdb.SetNX(ctx, s.sigKey(sig), 1, ttl).Result()
}
