-- Atomic per-customer state writes with a version check, for the customers of one or more
-- shards (every shard of a batch on a single server, one per call on a Cluster; see
-- Store.write). See store.go and value.go; the function customer_version (value.go) is
-- prepended to this source.
-- KEYS: the histogram hash and KPI counter hash the call's increments go to (its first
-- shard's), then per shard of the call its outbox stream and deadline zset (2 keys each), then
-- per customer its state key and its transition list.
-- ARGV[1] the transition list's bound, ARGV[2] the number of shards S; n, then n (field,
-- total) histogram increments, m, then m (field, total) KPI increments, summed over every
-- customer of the call. Then per customer: its shard (1..S), id, expected version, 's' and
-- the compact value (with the new version in its head) or 'h', n fields, (field, value)* for a
-- hash; deadline ms or ""; n outbox entries, (topic, key, event id, value, source time ms or
-- "")*; its histogram and its KPI increments packed as "field\tdelta\n" lines ("" for none);
-- n transitions, (entry)* (oldest first).
-- A customer whose version moved is not written, and its increments are taken off the
-- totals; then the totals are applied once per field, and each shard's deadlines with one ZADD
-- and one ZREM.
-- Returns the 0-based indexes of customers whose version had moved (nothing written for them).
local conflicts = {}
local keep = tonumber(ARGV[1])
local nshards = tonumber(ARGV[2])
local a = 3
local shards = {}
local function totals()
  local sums, order = {}, {}
  local n = tonumber(ARGV[a])
  a = a + 1
  for _ = 1, n do
    order[#order + 1] = ARGV[a]
    sums[ARGV[a]] = tonumber(ARGV[a + 1])
    a = a + 2
  end
  return { sums = sums, order = order }
end
local hist = totals()
local kpi = totals()
for s = 1, nshards do
  shards[s] = { outbox = KEYS[2 * s + 1], zadd = {}, zrem = {} }
end
local function untake(t, packed)
  for f, d in string.gmatch(packed, '([^\t\n]+)\t(-?%d+)\n') do
    if t.sums[f] == nil then
      t.order[#t.order + 1] = f
      t.sums[f] = 0
    end
    t.sums[f] = t.sums[f] - tonumber(d)
  end
end
local c = 0
for i = 2 * nshards + 3, #KEYS, 2 do
  local key = KEYS[i]
  local sh = shards[tonumber(ARGV[a])]
  local id = ARGV[a + 1]
  local expected = ARGV[a + 2]
  local mode = ARGV[a + 3]
  local ok = customer_version(key) == expected
  if not ok then
    conflicts[#conflicts + 1] = c
  end
  if mode == 's' then
    if ok then
      redis.call('SET', key, ARGV[a + 4])
    end
    a = a + 5
  else
    local nf = tonumber(ARGV[a + 4])
    a = a + 5
    if ok then
      redis.call('DEL', key)
      local args = {}
      for j = 0, nf - 1 do
        args[#args + 1] = ARGV[a + 2 * j]
        args[#args + 1] = ARGV[a + 2 * j + 1]
      end
      args[#args + 1] = '_v'
      args[#args + 1] = tostring(tonumber(expected) + 1)
      redis.call('HSET', key, unpack(args))
    end
    a = a + 2 * nf
  end
  if ok then
    local deadline = ARGV[a]
    if deadline == '' then
      sh.zrem[#sh.zrem + 1] = id
    else
      sh.zadd[#sh.zadd + 1] = deadline
      sh.zadd[#sh.zadd + 1] = id
    end
  end
  a = a + 1
  local no = tonumber(ARGV[a])
  a = a + 1
  if ok then
    for _ = 1, no do
      if ARGV[a + 4] == '' then
        redis.call('XADD', sh.outbox, '*', 't', ARGV[a], 'k', ARGV[a + 1], 'id', ARGV[a + 2], 'v', ARGV[a + 3])
      else
        redis.call('XADD', sh.outbox, '*', 't', ARGV[a], 'k', ARGV[a + 1], 'id', ARGV[a + 2], 'v', ARGV[a + 3], 'st', ARGV[a + 4])
      end
      a = a + 5
    end
  else
    a = a + 5 * no
    untake(hist, ARGV[a])
    untake(kpi, ARGV[a + 1])
  end
  a = a + 2
  local nt = tonumber(ARGV[a])
  a = a + 1
  if ok and nt > 0 then
    local entries = {}
    for j = 0, nt - 1 do
      entries[j + 1] = ARGV[a + j]
    end
    local len = 0
    for s = 1, #entries, 1000 do
      len = redis.call('LPUSH', KEYS[i + 1], unpack(entries, s, math.min(s + 999, #entries)))
    end
    if len > keep then -- LPUSH answers the list's new length: trim only a list over its bound
      redis.call('LTRIM', KEYS[i + 1], 0, keep - 1)
    end
  end
  a = a + nt
  c = c + 1
end
-- unpack is bounded by Lua's C stack: the members go in chunks (an even step for ZADD's pairs).
local function chunked(cmd, key, list)
  for s = 1, #list, 1000 do
    redis.call(cmd, key, unpack(list, s, math.min(s + 999, #list)))
  end
end
local function apply(key, t)
  for _, f in ipairs(t.order) do
    local v = t.sums[f]
    if v ~= 0 then
      redis.call('HINCRBY', key, f, string.format('%d', v))
    end
  end
end
for s = 1, nshards do
  local sh = shards[s]
  chunked('ZADD', KEYS[2 * s + 2], sh.zadd)
  chunked('ZREM', KEYS[2 * s + 2], sh.zrem)
end
apply(KEYS[1], hist)
apply(KEYS[2], kpi)
return conflicts
