-- Atomic per-customer state writes with a version check, for the customers of one or more
-- shards (every shard of a batch on a single server, one per call on a Cluster; see
-- Store.write). See store.go and value.go; the function customer_version (value.go) is
-- prepended to this source.
-- KEYS: the histogram and KPI counter journals the call's increments go to (its first
-- shard's; see journal.go), then per shard of the call its outbox stream and deadline zset (2
-- keys each), then per customer its state key and its transition list.
-- ARGV[1] the transition list's bound, ARGV[2] the number of shards S; ARGV[3] and ARGV[4] the
-- histogram and KPI increments summed over every customer of the call, packed as
-- "field\tdelta\n" lines ("" for none); ARGV[5] the namespace's outbox bell (a Pub/Sub channel,
-- published on once when the call appends any outbox entry). Then per customer: its shard
-- (1..S), id, expected version, 's' and the compact value (with the new version in its head) or
-- 'h', n fields, (field, value)* for a hash; deadline ms or ""; its derived events packed as
-- one outbox entry's value (package outbox) or "" for none; its histogram and its KPI
-- increments packed the same way as the totals; n transitions, (entry)* (oldest first).
-- A customer whose version moved is not written, and its increments are taken off the
-- totals: each journal gets one entry, the totals as 'd' and the refused customers'
-- increments as 'u' (subtracted when read or folded). Each shard's deadlines are set with one
-- ZADD and one ZREM.
-- Returns the 0-based indexes of customers whose version had moved (nothing written for them).
local conflicts = {}
local keep = tonumber(ARGV[1])
local keep_last = tostring(keep - 1) -- LTRIM's stop, printed once per call
local nshards = tonumber(ARGV[2])
local a = 6
local rang = false
local shards = {}
local untaken_hist, untaken_kpi = {}, {}
for s = 1, nshards do
  shards[s] = { outbox = KEYS[2 * s + 1], zadd = {}, zrem = {} }
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
  if ok then
    if ARGV[a] ~= '' then
      redis.call('XADD', sh.outbox, '*', 'k', id, 'e', ARGV[a])
      rang = true
    end
  else
    if ARGV[a + 1] ~= '' then
      untaken_hist[#untaken_hist + 1] = ARGV[a + 1]
    end
    if ARGV[a + 2] ~= '' then
      untaken_kpi[#untaken_kpi + 1] = ARGV[a + 2]
    end
  end
  a = a + 3
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
      redis.call('LTRIM', KEYS[i + 1], '0', keep_last)
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
local function journal(key, totals, untaken)
  if #untaken > 0 then
    redis.call('XADD', key, '*', 'd', totals, 'u', table.concat(untaken))
  elseif totals ~= '' then
    redis.call('XADD', key, '*', 'd', totals)
  end
end
for s = 1, nshards do
  local sh = shards[s]
  chunked('ZADD', KEYS[2 * s + 2], sh.zadd)
  chunked('ZREM', KEYS[2 * s + 2], sh.zrem)
end
if rang then
  redis.pcall('PUBLISH', ARGV[5], '') -- a refusal (ACL) must not fail the write
end
journal(KEYS[1], ARGV[3], untaken_hist)
journal(KEYS[2], ARGV[4], untaken_kpi)
return conflicts
