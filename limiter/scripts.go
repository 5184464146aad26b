package limiter

import "github.com/redis/go-redis/v9"

// Lua scripts of cluster mode. Times are Unix microseconds (exact in Lua's
// doubles), passed in by the caller so that every node and the tests agree
// on the clock. Keys of one identity share the hash tag {identity}.
//
// Credits and the connect rate are GCRA cells: one string holding the TAT.
// Quotas: a hash of buckets "<window>:<bucket index>" (window 1 daily,
// 2 weekly, 3 monthly; 60 buckets per window) each with the time of its
// latest use in "<window>:<bucket index>:t", the same rolling rule as the
// local quotaState, and a string with the lifetime total. Calendar quotas
// (UTC day, week from Monday, month) use two more fields of the quota hash
// per window: "c<window>" the current period's number (computed by the
// caller, calendarPeriod) and "c<window>:n" its sum; a use in a new period
// starts the sum again, so an old period needs no cleanup. Both kinds are
// always kept. Connections: a hash with "<node>" = live count and
// "<node>@" = expiry of that count.
const luaCommon = `
local NB = 60
local QW = {86400000000, 604800000000, 2592000000000}

local function fmt(x) return string.format('%.0f', x) end

-- Rolling quotas: bucket b of window i is the field "i:b" (sum of uses)
-- with "i:b:t" (time of its latest use); the bucket leaves the window W
-- after that latest use (never early, at most one bucket late).
local function qfields(i, cur)
  local fields = {}
  for b = cur - NB, cur do
    fields[#fields + 1] = i .. ':' .. fmt(b)
    fields[#fields + 1] = i .. ':' .. fmt(b) .. ':t'
  end
  return fields
end

-- sum of window i at now; vals alternates bucket sums and last-use times
local function qsum(kq, i, now)
  local width = QW[i] / NB
  local cur = math.floor(now / width)
  local vals = redis.call('HMGET', kq, unpack(qfields(i, cur)))
  local s = 0
  for k = 1, #vals, 2 do
    local v = tonumber(vals[k] or '0')
    if v ~= 0 and tonumber(vals[k + 1] or '0') + QW[i] > now then s = s + v end
  end
  return s, vals
end

-- time until the sum of window i drops to target: the release (last use +
-- W) of the last bucket that must leave; at most W
local function qwait(vals, s, target, i, now)
  if s <= target then return 0 end
  for k = 1, #vals, 2 do
    local v = tonumber(vals[k] or '0')
    local rel = tonumber(vals[k + 1] or '0') + QW[i]
    if v ~= 0 and rel > now then
      s = s - v
      if s <= target then return rel - now end
    end
  end
  return QW[i]
end

-- calendar window i: the sum of the current period ql.p[i] (0 for an
-- older period's sum)
local function csum(kq, i, ql)
  local v = redis.call('HMGET', kq, 'c' .. i, 'c' .. i .. ':n')
  if v[1] == ql.p[i] then return tonumber(v[2] or '0') end
  return 0
end

local function qadd(kq, kt, now, n, ql)
  redis.call('INCRBY', kt, n)
  for i = 1, 3 do
    local c = csum(kq, i, ql) + n
    if c < 0 then c = 0 end
    redis.call('HSET', kq, 'c' .. i, ql.p[i], 'c' .. i .. ':n', fmt(c))
    local width = QW[i] / NB
    local f = i .. ':' .. fmt(math.floor(now / width))
    redis.call('HINCRBY', kq, f, n)
    if n > 0 then
      local t = tonumber(redis.call('HGET', kq, f .. ':t') or '0')
      if now > t then redis.call('HSET', kq, f .. ':t', fmt(now)) end
    end
  end
  if redis.call('HLEN', kq) > 6 * (NB + 1) + 24 then
    local ks = redis.call('HKEYS', kq)
    for _, f in ipairs(ks) do
      local i, b = string.match(f, '^(%d):(%-?%d+)')
      i, b = tonumber(i), tonumber(b)
      if i and b and QW[i] and b < math.floor(now / (QW[i] / NB)) - NB then redis.call('HDEL', kq, f) end
    end
  end
  redis.call('PEXPIRE', kq, math.ceil(QW[3] / 1000) * 2)
end

-- first exhausted quota (need credits) in the order total, monthly, weekly,
-- daily: window number (4 = total) and wait; and the credits left under all.
local function qcheck(kq, kt, ql, now, need)
  local left = 1e18
  local win, wait = 0, 0
  if ql[4] > 0 then
    local l = ql[4] - tonumber(redis.call('GET', kt) or '0')
    if l < left then left = l end
    if l < need then win = 4 end
  end
  for i = 3, 1, -1 do
    if ql[i] > 0 then
      local s, vals
      if ql.cal then s = csum(kq, i, ql) else s, vals = qsum(kq, i, now) end
      local l = ql[i] - s
      if l < left then left = l end
      if l < need and win == 0 then
        win = i
        if ql.cal then wait = ql.e[i] - now else wait = qwait(vals, s, ql[i] - need, i, now) end
      end
    end
  end
  return win, wait, left
end

-- lease: return ret credits, charge debt credits unconditionally, then take
-- up to want credits (capped at ceil(avail / (2 * nodes)) and by the quotas).
-- Returns {grant, tat, avail after, quota window, quota wait}.
local function lease(kc, kq, kt, now, L, W, want, nodes, ret, debt, ql)
  local T = W / L
  local tat = tonumber(redis.call('GET', kc) or '0')
  if tat < now then tat = now end
  local hasq = ql[1] > 0 or ql[2] > 0 or ql[3] > 0 or ql[4] > 0
  if ret > 0 then
    tat = tat - ret * T
    if tat < now then tat = now end
    if hasq then qadd(kq, kt, now, -ret, ql) end
  end
  if debt > 0 then
    tat = math.min(tat + debt * T, now + 2 * W)
    if hasq then qadd(kq, kt, now, debt, ql) end
  end
  local avail = math.floor((now + W - tat) / T + 1e-6)
  if avail < 0 then avail = 0 end
  if avail > L then avail = L end
  local grant = math.min(want, avail, math.max(1, math.ceil(avail / (2 * nodes))))
  local qwin, qw = 0, 0
  if hasq and want > 0 then
    local left
    qwin, qw, left = qcheck(kq, kt, ql, now, 1)
    if left < grant then grant = math.max(left, 0) end
    if grant > 0 then qadd(kq, kt, now, grant, ql) end
  end
  if grant > 0 then tat = tat + grant * T end
  if tat > now then
    redis.call('SET', kc, fmt(tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
  else
    redis.call('DEL', kc)
  end
  return {grant, math.floor(tat), avail - grant, qwin, math.floor(qw)}
end

-- quota arguments from a[i]: limits daily, weekly, monthly, total; the
-- calendar flag ('1' or '0'); the current calendar periods (day, week,
-- month numbers) and their ends (Unix us).
local function qlimits(a, i)
  local ql = {tonumber(a[i]), tonumber(a[i + 1]), tonumber(a[i + 2]), tonumber(a[i + 3])}
  ql.cal = a[i + 4] == '1'
  ql.p = {a[i + 5], a[i + 6], a[i + 7]}
  ql.e = {tonumber(a[i + 8]), tonumber(a[i + 9]), tonumber(a[i + 10])}
  return ql
end
`

// leaseScript: KEYS credit tat, quota hash, quota total; ARGV now, L, W,
// want, nodes, ret, debt, then the quota arguments (quotaArgs).
var leaseScript = redis.NewScript(luaCommon + `
local a = ARGV
return lease(KEYS[1], KEYS[2], KEYS[3], tonumber(a[1]), tonumber(a[2]), tonumber(a[3]),
  tonumber(a[4]), tonumber(a[5]), tonumber(a[6]), tonumber(a[7]), qlimits(a, 8))
`)

// admitScript: KEYS conns hash, connect tat, credit tat, quota hash, quota
// total; ARGV now, node, node ttl, max conns, connects, connect window, L, W,
// want, nodes, then the quota arguments (quotaArgs).
// Returns {1, wait} connect rate, {2} connections, {3, window, wait} quota,
// or {0, grant, tat, avail, quota window, quota wait}.
var admitScript = redis.NewScript(luaCommon + `
local a = ARGV
local now, node, ttl = tonumber(a[1]), a[2], tonumber(a[3])
local maxc, cq, cw = tonumber(a[4]), tonumber(a[5]), tonumber(a[6])
local ql = qlimits(a, 11)
local ctat = tonumber(redis.call('GET', KEYS[2]) or '0')
if ctat < now then ctat = now end
local nct = ctat + cw / cq
if nct - now > cw + 1e-6 then return {1, math.ceil(nct - now - cw)} end
redis.call('SET', KEYS[2], fmt(nct), 'PX', math.ceil((nct - now) / 1000) + 1000)
local h = redis.call('HGETALL', KEYS[1])
local m = {}
for i = 1, #h, 2 do m[h[i]] = h[i + 1] end
local sum = 0
for f, v in pairs(m) do
  if string.sub(f, -1) ~= '@' then
    if tonumber(m[f .. '@'] or '0') >= now then
      sum = sum + tonumber(v)
    else
      redis.call('HDEL', KEYS[1], f, f .. '@')
    end
  end
end
if sum >= maxc then return {2} end
if ql[1] > 0 or ql[2] > 0 or ql[3] > 0 or ql[4] > 0 then
  local win, wait = qcheck(KEYS[4], KEYS[5], ql, now, 1)
  if win > 0 then return {3, win, math.floor(wait)} end
end
redis.call('HINCRBY', KEYS[1], node, 1)
redis.call('HSET', KEYS[1], node .. '@', fmt(now + ttl))
redis.call('PEXPIRE', KEYS[1], math.ceil(ttl / 1000) * 2)
local r = lease(KEYS[3], KEYS[4], KEYS[5], now, tonumber(a[7]), tonumber(a[8]), tonumber(a[9]), tonumber(a[10]), 0, 0, ql)
return {0, r[1], r[2], r[3], r[4], r[5]}
`)

// beatScript: KEYS conns hash; ARGV node, count, expiry, ttl ms.
var beatScript = redis.NewScript(`
if tonumber(ARGV[2]) > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2], ARGV[1] .. '@', ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
else
  redis.call('HDEL', KEYS[1], ARGV[1], ARGV[1] .. '@')
end
return 1
`)

// peekScript: KEYS credit tat, quota hash, quota total, conns hash; ARGV now,
// L, W, then the quota arguments (quotaArgs). Returns {avail, tat, daily,
// weekly, monthly, total, connections, daily reset, weekly reset, monthly
// reset}: the use of each window (its calendar period when the quotas are
// calendar ones) and the time until it next frees capacity (us: the period
// end; for a rolling window, when its oldest use leaves, 0 if none).
var peekScript = redis.NewScript(luaCommon + `
local now, L, W = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local ql = qlimits(ARGV, 4)
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local avail = math.floor((now + W - tat) * L / W + 1e-6)
if avail < 0 then avail = 0 end
if avail > L then avail = L end
local used, reset = {0, 0, 0}, {0, 0, 0}
for i = 1, 3 do
  if ql.cal then
    used[i] = csum(KEYS[2], i, ql)
    reset[i] = ql.e[i] - now
  else
    local s, vals = qsum(KEYS[2], i, now)
    used[i] = s
    if s > 0 then reset[i] = qwait(vals, s, s - 1, i, now) end
  end
end
local t = tonumber(redis.call('GET', KEYS[3]) or '0')
local h = redis.call('HGETALL', KEYS[4])
local m = {}
for i = 1, #h, 2 do m[h[i]] = h[i + 1] end
local c = 0
for f, v in pairs(m) do
  if string.sub(f, -1) ~= '@' and tonumber(m[f .. '@'] or '0') >= now then c = c + tonumber(v) end
end
return {avail, math.floor(tat), used[1], used[2], used[3], t, c, math.floor(reset[1]), math.floor(reset[2]), math.floor(reset[3])}
`)
