package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisOptions configure NewRedisStore. The zero value is ready to use.
type RedisOptions struct {
	// Namespace prefixes every Redis key. Defaults to "floodgate:". It must
	// not contain braces (ValidNamespace): the store puts its own hash
	// tags in every key, and Redis hashes only the first {...}.
	Namespace string
	// MaxRetries bounds the optimistic (WATCH) retries of one update under
	// contention. Defaults to 20.
	MaxRetries int
	// Now is the clock that stamps RevokedAt when an update revokes a key
	// without one, and the schema upgrade. Defaults to time.Now.
	Now func() time.Time
}

// ErrBadNamespace is returned by every method of a RedisStore whose
// namespace ValidNamespace refuses.
var ErrBadNamespace = errors.New("auth: invalid redis namespace")

// ValidNamespace checks a Redis key namespace: at most 64 printable ASCII
// characters without spaces or braces. A brace would become the hash tag
// of every key (Redis Cluster hashes only the first {...} of a key name),
// so every key of the cluster would land in one slot, or the store's own
// account tags would be ignored.
func ValidNamespace(ns string) error {
	if len(ns) > 64 {
		return fmt.Errorf("%w %q: longer than 64 bytes", ErrBadNamespace, ns)
	}
	for i := 0; i < len(ns); i++ {
		if c := ns[i]; c <= ' ' || c > '~' || c == '{' || c == '}' {
			return fmt.Errorf("%w %q: only printable ASCII without spaces or braces (Redis Cluster hashes the first {...} of a key)", ErrBadNamespace, ns)
		}
	}
	return nil
}

// RedisStore is the Store shared by a cluster through Redis, a single
// server or a Redis Cluster (any redis.UniversalClient). Every multi-key
// write touches one hash slot: an account's record, indexes and alias map
// carry the account as hash tag; a key's pointer, usage and events carry
// its prefix. The key layout is described in the package documentation.
type RedisStore struct {
	// Immutable after NewRedisStore
	rdb     redis.UniversalClient
	ns      string
	retries int
	now     func() time.Time
	err     error // the namespace's problem, returned by every method
}

var _ Store = (*RedisStore)(nil)

// NewRedisStore returns a store over rdb. The caller owns rdb and closes it
// after the store. An invalid namespace makes every method fail with
// ErrBadNamespace (check it first with ValidNamespace). Call Upgrade once
// at start to convert keys of an older layout.
func NewRedisStore(rdb redis.UniversalClient, opts RedisOptions) *RedisStore {
	if opts.Namespace == "" {
		opts.Namespace = "floodgate:"
	}
	if opts.MaxRetries <= 0 {
		opts.MaxRetries = 20
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &RedisStore{rdb: rdb, ns: opts.Namespace, retries: opts.MaxRetries, now: opts.Now, err: ValidNamespace(opts.Namespace)}
}

// Key names (see the package documentation).
func (s *RedisStore) ptrKey(prefix string) string    { return s.ns + "p:{" + prefix + "}" }
func (s *RedisStore) usageKey(prefix string) string  { return s.ns + "u:{" + prefix + "}" }
func (s *RedisStore) eventsKey(prefix string) string { return s.ns + "e:{" + prefix + "}" }
func (s *RedisStore) acct(account string) string     { return s.ns + "a:{" + account + "}:" }
func (s *RedisStore) recKey(account, prefix string) string {
	return s.acct(account) + "k:" + prefix
}
func (s *RedisStore) allKey(account string) string    { return s.acct(account) + "all" }
func (s *RedisStore) activeKey(account string) string { return s.acct(account) + "active" }
func (s *RedisStore) aliasKey(account string) string  { return s.acct(account) + "alias" }
func (s *RedisStore) indexKey() string                { return s.ns + "index" }
func (s *RedisStore) revokedKey() string              { return s.ns + "revoked" }
func (s *RedisStore) sigKey(sig string) string        { return s.ns + "sig:" + sig }
func (s *RedisStore) schemaKey() string               { return s.ns + "schema" }

// Close implements Store; the client stays open.
func (s *RedisStore) Close() error { return nil }

// Ping implements Store.
func (s *RedisStore) Ping(ctx context.Context) error {
	if s.err != nil {
		return s.err
	}
	return s.rdb.Ping(ctx).Err()
}

// watch runs fn in a WATCH transaction over keys (one slot), retrying on
// conflicts.
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
	r.UsageDay, r.UsageToday, r.UsageTotal = 0, UsageCounters{}, UsageCounters{}
	return json.Marshal(r)
}

func decodeRecord(prefix, v string) (Record, error) {
	var r Record
	if err := json.Unmarshal([]byte(v), &r); err != nil {
		return Record{}, fmt.Errorf("auth: decode record %s: %w", prefix, err)
	}
	return r, nil
}

// prefixOfMember is the prefix at the end of an index member (a sortKey).
func prefixOfMember(m string) string { return m[strings.LastIndexByte(m, ':')+1:] }

// account returns the account of prefix from its pointer (ErrNotFound).
func (s *RedisStore) account(ctx context.Context, prefix string) (string, error) {
	a, err := s.rdb.Get(ctx, s.ptrKey(prefix)).Result()
	if errors.Is(err, redis.Nil) {
		return "", ErrNotFound
	}
	return a, err
}

// createScript: KEYS record, all, active, alias (one account, one slot);
// ARGV json, sortKey, active (1/0), alias, prefix, maxActive. Returns 0
// stored, 1 too many active keys, 2 alias taken, 3 record exists.
var createScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 3 end
local max = tonumber(ARGV[6])
if ARGV[3] == '1' and max > 0 and redis.call('ZCARD', KEYS[3]) >= max then return 1 end
if ARGV[4] ~= '' and redis.call('HEXISTS', KEYS[4], ARGV[4]) == 1 then return 2 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], 0, ARGV[2])
if ARGV[3] == '1' then redis.call('ZADD', KEYS[3], 0, ARGV[2]) end
if ARGV[4] ~= '' then redis.call('HSET', KEYS[4], ARGV[4], ARGV[5]) end
return 0`)

// Create implements Store in three steps: the prefix's pointer (SET NX:
// the prefix is unique), the global indexes (entries that the list and
// the purge check against the record), then one script in the account's
// slot that checks the limit and the alias and writes the record and its
// account indexes atomically. A refusal removes the first two.
func (s *RedisStore) Create(ctx context.Context, rec Record, maxActive int) error {
	if s.err != nil {
		return s.err
	}
	if rec.Status == StatusRevoked && rec.RevokedAt.IsZero() {
		rec.RevokedAt = s.now().UTC()
	}
	if err := rec.validate(); err != nil {
		return err
	}
	val, err := encodeRecord(rec)
	if err != nil {
		return err
	}
	ok, err := s.rdb.SetNX(ctx, s.ptrKey(rec.Prefix), rec.Account, 0).Result()
	if err != nil {
		return err
	}
	if !ok {
		return ErrExists
	}
	sk := sortKey(&rec)
	code, err := func() (int64, error) {
		if err := s.rdb.ZAdd(ctx, s.indexKey(), redis.Z{Member: sk}).Err(); err != nil {
			return 0, err
		}
		if rec.Status == StatusRevoked {
			if err := s.rdb.ZAdd(ctx, s.revokedKey(), redis.Z{Score: float64(rec.RevokedAt.UnixMilli()), Member: rec.Prefix}).Err(); err != nil {
				return 0, err
			}
		}
		active := "0"
		if rec.Status == StatusActive {
			active = "1"
		}
		return createScript.Run(ctx, s.rdb,
			[]string{s.recKey(rec.Account, rec.Prefix), s.allKey(rec.Account), s.activeKey(rec.Account), s.aliasKey(rec.Account)},
			val, sk, active, rec.Alias, rec.Prefix, maxActive).Int64()
	}()
	if err == nil && code == 0 {
		return nil
	}
	// Undo the pointer and the global entries (a leftover is harmless:
	// both checks read the record).
	s.rdb.ZRem(ctx, s.indexKey(), sk)
	s.rdb.ZRem(ctx, s.revokedKey(), rec.Prefix)
	s.rdb.Del(ctx, s.ptrKey(rec.Prefix))
	switch {
	case err != nil:
		return err
	case code == 1:
		return ErrTooManyKeys
	case code == 2:
		return ErrAliasTaken
	}
	return ErrExists
}

// withUsage loads the usage hashes of recs into them (one pipelined round
// trip; each hash is in its key's slot).
func (s *RedisStore) withUsage(ctx context.Context, recs []Record) error {
	if len(recs) == 0 {
		return nil
	}
	cmds := make([]*redis.SliceCmd, len(recs))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range recs {
			cmds[i] = p.HMGet(ctx, s.usageKey(recs[i].Prefix), usageFields...)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i, c := range cmds {
		applyUsage(&recs[i], c.Val())
	}
	return nil
}

// usageFields are the fields of a usage hash: request count, last use
// (unix ms), the UTC day of the today counters, today's delivered
// messages, bytes and charged credits, and the same in total.
var usageFields = []string{"count", "last", "day", "tm", "tb", "tc", "m", "b", "c"}

func applyUsage(r *Record, vals []any) {
	if len(vals) != len(usageFields) {
		return
	}
	var n [9]int64
	for i, v := range vals {
		if s, ok := v.(string); ok {
			n[i], _ = strconv.ParseInt(s, 10, 64)
		}
	}
	r.RequestCount = n[0]
	if n[1] > 0 {
		r.LastUsedAt = time.UnixMilli(n[1]).UTC()
	}
	r.UsageDay = n[2]
	r.UsageToday = UsageCounters{MessagesDelivered: n[3], BytesDelivered: n[4], Credits: n[5]}
	r.UsageTotal = UsageCounters{MessagesDelivered: n[6], BytesDelivered: n[7], Credits: n[8]}
}

// Get implements Store: the pointer and the usage (one slot, one round
// trip), then the record.
func (s *RedisStore) Get(ctx context.Context, prefix string) (Record, error) {
	if s.err != nil {
		return Record{}, s.err
	}
	var ptr *redis.StringCmd
	var usage *redis.SliceCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		ptr = p.Get(ctx, s.ptrKey(prefix))
		usage = p.HMGet(ctx, s.usageKey(prefix), usageFields...)
		return nil
	})
	if errors.Is(err, redis.Nil) {
		return Record{}, ErrNotFound
	}
	if err != nil {
		return Record{}, err
	}
	v, err := s.rdb.Get(ctx, s.recKey(ptr.Val(), prefix)).Result()
	if errors.Is(err, redis.Nil) {
		return Record{}, ErrNotFound
	}
	if err != nil {
		return Record{}, err
	}
	rec, err := decodeRecord(prefix, v)
	if err != nil {
		return Record{}, err
	}
	applyUsage(&rec, usage.Val())
	return rec, nil
}

// loadMembers returns the records of index members (nil where a record is
// gone): with account, one MGET in its slot; without, the pointers then
// the records, each a pipelined round trip.
func (s *RedisStore) loadMembers(ctx context.Context, account string, members []string) ([]*Record, error) {
	out := make([]*Record, len(members))
	if len(members) == 0 {
		return out, nil
	}
	if account != "" {
		keys := make([]string, len(members))
		for i, m := range members {
			keys[i] = s.recKey(account, prefixOfMember(m))
		}
		vals, err := s.rdb.MGet(ctx, keys...).Result()
		if err != nil {
			return nil, err
		}
		for i, v := range vals {
			if str, ok := v.(string); ok {
				r, err := decodeRecord(prefixOfMember(members[i]), str)
				if err != nil {
					return nil, err
				}
				out[i] = &r
			}
		}
		return out, nil
	}
	ptrs := make([]*redis.StringCmd, len(members))
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, m := range members {
			ptrs[i] = p.Get(ctx, s.ptrKey(prefixOfMember(m)))
		}
		return nil
	}); err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	accounts := make([]string, len(members))
	for i := range ptrs {
		accounts[i] = ptrs[i].Val()
	}
	recs := make([]*redis.StringCmd, len(members))
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, m := range members {
			if accounts[i] != "" {
				recs[i] = p.Get(ctx, s.recKey(accounts[i], prefixOfMember(m)))
			}
		}
		return nil
	}); err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	for i, c := range recs {
		if c == nil || c.Err() != nil {
			continue
		}
		r, err := decodeRecord(prefixOfMember(members[i]), c.Val())
		if err != nil {
			return nil, err
		}
		out[i] = &r
	}
	return out, nil
}

// listBatch is how many index entries List reads per round trip.
const listBatch = 500

// List implements Store: ZRANGEBYLEX over the account's index (its
// active index for active keys of one account) or the global index, from
// the cursor.
func (s *RedisStore) List(ctx context.Context, f Filter, p Page) ([]Record, string, error) {
	if s.err != nil {
		return nil, "", s.err
	}
	if err := CheckCursor(p.Cursor); err != nil {
		return nil, "", err
	}
	index := s.indexKey()
	if f.Account != "" {
		index = s.allKey(f.Account)
		if f.Status == StatusActive {
			index = s.activeKey(f.Account)
		}
	}
	from := "-"
	if p.Cursor != "" {
		from = "(" + p.Cursor
	}
	batch := int64(listBatch)
	if p.Limit > 0 && p.Limit < listBatch {
		batch = int64(p.Limit) + 1
	}
	var out []Record
	var next string
scan:
	for {
		members, err := s.rdb.ZRangeByLex(ctx, index, &redis.ZRangeBy{Min: from, Max: "+", Count: batch}).Result()
		if err != nil {
			return nil, "", err
		}
		recs, err := s.loadMembers(ctx, f.Account, members)
		if err != nil {
			return nil, "", err
		}
		for i, m := range members {
			from = "(" + m
			if recs[i] == nil || !f.Match(recs[i]) {
				continue
			}
			if p.Limit > 0 && len(out) == p.Limit {
				next = sortKey(&out[len(out)-1])
				break scan
			}
			out = append(out, *recs[i])
		}
		if int64(len(members)) < batch {
			break
		}
	}
	if err := s.withUsage(ctx, out); err != nil {
		return nil, "", err
	}
	return out, next, nil
}

// Update implements Store: a WATCH transaction over the record, the
// active index and the alias map (one slot).
func (s *RedisStore) Update(ctx context.Context, prefix string, maxActive int, fn func(*Record) error) (Record, error) {
	if s.err != nil {
		return Record{}, s.err
	}
	account, err := s.account(ctx, prefix)
	if err != nil {
		return Record{}, err
	}
	rk, ak, alk := s.recKey(account, prefix), s.activeKey(account), s.aliasKey(account)
	var rec Record
	err = s.watch(ctx, func(tx *redis.Tx) error {
		v, err := tx.Get(ctx, rk).Result()
		if errors.Is(err, redis.Nil) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		before, err := decodeRecord(prefix, v)
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
		active, err := tx.ZCard(ctx, ak).Result()
		if err != nil {
			return err
		}
		if before.Status == StatusActive {
			active--
		}
		var newOwner, oldOwner string
		if rec.Alias != before.Alias {
			owners, err := tx.HMGet(ctx, alk, rec.Alias, before.Alias).Result()
			if err != nil {
				return err
			}
			newOwner, _ = owners[0].(string)
			oldOwner, _ = owners[1].(string)
			if rec.Alias == "" {
				newOwner = ""
			}
		}
		if err := checkUpdate(&before, &rec, int(active), newOwner, maxActive); err != nil {
			return err
		}
		if before.Status != StatusRevoked && rec.Status == StatusRevoked {
			// The purge's entry first: it checks the record anyway.
			if err := s.rdb.ZAdd(ctx, s.revokedKey(), redis.Z{Score: float64(rec.RevokedAt.UnixMilli()), Member: prefix}).Err(); err != nil {
				return err
			}
		}
		val, err := encodeRecord(rec)
		if err != nil {
			return err
		}
		sk := sortKey(&rec)
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, rk, val, 0)
			if was, is := before.Status == StatusActive, rec.Status == StatusActive; was && !is {
				p.ZRem(ctx, ak, sk)
			} else if !was && is {
				p.ZAdd(ctx, ak, redis.Z{Member: sk})
			}
			if rec.Alias != before.Alias {
				if before.Alias != "" && oldOwner == prefix {
					p.HDel(ctx, alk, before.Alias)
				}
				if rec.Alias != "" {
					p.HSet(ctx, alk, rec.Alias, prefix)
				}
			}
			return nil
		})
		return err
	}, rk, ak, alk)
	if err != nil {
		return Record{}, err
	}
	recs := []Record{rec}
	if err := s.withUsage(ctx, recs); err != nil {
		return Record{}, err
	}
	return recs[0], nil
}

// remove deletes the record of prefix in account and its account indexes
// (one WATCH transaction in the account's slot) unless check refuses it
// (its error is returned), then its pointer, usage and events and its
// global entries.
func (s *RedisStore) remove(ctx context.Context, account, prefix string, check func(*Record) error) error {
	rk, ak, alk, all := s.recKey(account, prefix), s.activeKey(account), s.aliasKey(account), s.allKey(account)
	var rec Record
	err := s.watch(ctx, func(tx *redis.Tx) error {
		v, err := tx.Get(ctx, rk).Result()
		if errors.Is(err, redis.Nil) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if rec, err = decodeRecord(prefix, v); err != nil {
			return err
		}
		if err := check(&rec); err != nil {
			return err
		}
		owner := ""
		if rec.Alias != "" {
			if owner, err = tx.HGet(ctx, alk, rec.Alias).Result(); err != nil && !errors.Is(err, redis.Nil) {
				return err
			}
		}
		sk := sortKey(&rec)
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Del(ctx, rk)
			p.ZRem(ctx, all, sk)
			p.ZRem(ctx, ak, sk)
			if owner == prefix {
				p.HDel(ctx, alk, rec.Alias)
			}
			return nil
		})
		return err
	}, rk, ak, alk)
	if err != nil {
		return err
	}
	return s.forget(ctx, prefix, sortKey(&rec))
}

// forget deletes what a key has outside its account's slot: its pointer,
// usage and events (one slot) and its global index entries.
func (s *RedisStore) forget(ctx context.Context, prefix, sk string) error {
	if err := s.rdb.Del(ctx, s.ptrKey(prefix), s.usageKey(prefix), s.eventsKey(prefix)).Err(); err != nil {
		return err
	}
	if sk != "" {
		if err := s.rdb.ZRem(ctx, s.indexKey(), sk).Err(); err != nil {
			return err
		}
	}
	return s.rdb.ZRem(ctx, s.revokedKey(), prefix).Err()
}

// Delete implements Store. The usage is read just before the account's
// transaction (it lives in the key's slot): a first use racing with the
// delete can be lost with the key.
func (s *RedisStore) Delete(ctx context.Context, prefix string) error {
	if s.err != nil {
		return s.err
	}
	account, err := s.account(ctx, prefix)
	if err != nil {
		return err
	}
	vals, err := s.rdb.HMGet(ctx, s.usageKey(prefix), usageFields...).Result()
	if err != nil {
		return err
	}
	return s.remove(ctx, account, prefix, func(r *Record) error {
		applyUsage(r, vals)
		if r.Used() {
			return ErrKeyInUse
		}
		return nil
	})
}

// Purge implements Store: the revoked index gives the keys due (the cost
// is the number deleted); each is checked against its record before it is
// deleted. Signatures expire by themselves (PX).
func (s *RedisStore) Purge(ctx context.Context, revokedBefore, _ time.Time, max int) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	cutoff := revokedBefore.UnixMilli()
	due, err := s.rdb.ZRangeByScore(ctx, s.revokedKey(), &redis.ZRangeBy{
		Min: "-inf", Max: "(" + strconv.FormatInt(cutoff, 10), Count: int64(max),
	}).Result()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, prefix := range due {
		account, err := s.account(ctx, prefix)
		if errors.Is(err, ErrNotFound) {
			if err := s.forget(ctx, prefix, ""); err != nil { // a leftover entry
				return n, err
			}
			continue
		}
		if err != nil {
			return n, err
		}
		errKeep := errors.New("keep")
		err = s.remove(ctx, account, prefix, func(r *Record) error {
			if r.Status != StatusRevoked || !r.RevokedAt.Before(revokedBefore) {
				return errKeep
			}
			return nil
		})
		switch {
		case err == nil:
			n++
		case errors.Is(err, errKeep):
			s.rdb.ZRem(ctx, s.revokedKey(), prefix) // not revoked: a leftover of a failed create
		case errors.Is(err, ErrNotFound):
			if err := s.forget(ctx, prefix, ""); err != nil {
				return n, err
			}
		default:
			return n, err
		}
	}
	return n, nil
}

// pipelineScripts runs fn's EVALSHA calls in one pipeline, loading the
// scripts and retrying once if a server lacks them (a restarted shard).
func (s *RedisStore) pipelineScripts(ctx context.Context, scripts []*redis.Script, fn func(redis.Pipeliner)) error {
	for attempt := 0; ; attempt++ {
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error { fn(p); return nil })
		if err == nil || attempt > 0 || !redis.HasErrorPrefix(err, "NOSCRIPT") {
			return err
		}
		for _, sc := range scripts {
			if err := sc.Load(ctx, s.rdb).Err(); err != nil {
				return err
			}
		}
	}
}

// addUsageScript: KEYS pointer, usage (the key's slot); ARGV count, last
// (unix ms), day, delivered messages, bytes, credits. Every node adds its
// batch with HINCRBY: today's counters (tm, tb, tc) are the cluster's sum
// for day; the first batch of a later day resets them (Record.addMetered
// is the same rule).
var addUsageScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local n = tonumber(ARGV[1])
if n ~= 0 then redis.call('HINCRBY', KEYS[2], 'count', n) end
local last = tonumber(ARGV[2])
local cur = tonumber(redis.call('HGET', KEYS[2], 'last') or '0')
if last > cur then redis.call('HSET', KEYS[2], 'last', ARGV[2]) end
local m, b, c = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
if m ~= 0 or b ~= 0 or c ~= 0 then
  redis.call('HINCRBY', KEYS[2], 'm', m)
  redis.call('HINCRBY', KEYS[2], 'b', b)
  redis.call('HINCRBY', KEYS[2], 'c', c)
  local day = tonumber(ARGV[3])
  local stored = tonumber(redis.call('HGET', KEYS[2], 'day') or '0')
  if day > stored then
    redis.call('HSET', KEYS[2], 'day', day, 'tm', m, 'tb', b, 'tc', c)
  elseif day == stored then
    redis.call('HINCRBY', KEYS[2], 'tm', m)
    redis.call('HINCRBY', KEYS[2], 'tb', b)
    redis.call('HINCRBY', KEYS[2], 'tc', c)
  end
end
return 1`)

// AddUsage implements Store: one pipelined round trip for the batch.
func (s *RedisStore) AddUsage(ctx context.Context, batch map[string]UsageDelta) error {
	if s.err != nil {
		return s.err
	}
	if len(batch) == 0 {
		return nil
	}
	return s.pipelineScripts(ctx, []*redis.Script{addUsageScript}, func(p redis.Pipeliner) {
		for prefix, d := range batch {
			var last int64
			if !d.LastUsed.IsZero() {
				last = d.LastUsed.UnixMilli()
			}
			addUsageScript.EvalSha(ctx, p, []string{s.ptrKey(prefix), s.usageKey(prefix)}, d.Count, last,
				d.Day, d.Metered.MessagesDelivered, d.Metered.BytesDelivered, d.Metered.Credits)
		}
	})
}

// appendEventScript: KEYS pointer, events (the key's slot); ARGV event
// JSON, max.
var appendEventScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[2]), -1)
return 1`)

// AppendEvent implements Store.
func (s *RedisStore) AppendEvent(ctx context.Context, prefix string, ev Event) error {
	if s.err != nil {
		return s.err
	}
	v, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	n, err := appendEventScript.Run(ctx, s.rdb, []string{s.ptrKey(prefix), s.eventsKey(prefix)}, v, MaxEvents).Int()
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// AppendEvents implements Store: one pipelined round trip per batch (a
// script per event, in the key's slot).
func (s *RedisStore) AppendEvents(ctx context.Context, batch []PrefixEvent) error {
	if s.err != nil {
		return s.err
	}
	if len(batch) == 0 {
		return nil
	}
	vals, err := marshalEvents(batch)
	if err != nil {
		return err
	}
	return s.pipelineScripts(ctx, []*redis.Script{appendEventScript}, func(p redis.Pipeliner) {
		for i := range batch {
			pr := batch[i].Prefix
			appendEventScript.EvalSha(ctx, p, []string{s.ptrKey(pr), s.eventsKey(pr)}, vals[i], MaxEvents)
		}
	})
}

// Events implements Store.
func (s *RedisStore) Events(ctx context.Context, prefix string, limit int) ([]Event, error) {
	if s.err != nil {
		return nil, s.err
	}
	if limit <= 0 || limit > MaxEvents {
		limit = MaxEvents
	}
	var exists *redis.IntCmd
	var lr *redis.StringSliceCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		exists = p.Exists(ctx, s.ptrKey(prefix))
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

// UseSignature implements Store with SET NX PX until: a signature is
// fresh once across the whole cluster, and its entry lives exactly as
// long as its window.
func (s *RedisStore) UseSignature(ctx context.Context, sig string, now, until time.Time) (bool, error) {
	if s.err != nil {
		return false, s.err
	}
	ttl := until.Sub(now)
	if ttl < time.Millisecond {
		ttl = time.Millisecond
	}
	return s.rdb.SetNX(ctx, s.sigKey(sig), 1, ttl).Result()
}
