-- Atomic per-customer state write with a version check. See store.go and value.go; the
-- function customer_version (value.go) is prepended to this source.
-- KEYS[1] outbox stream, KEYS[2] deadline zset, KEYS[3] histogram hash, KEYS[4] KPI counter
-- hash, then per customer its state key and its transition list (KEYS[5], KEYS[6], ...).
-- ARGV per customer: id, expected version, then either 's' and the compact value (with the
-- new version in its head) or 'h', n fields, (field, value)* for a hash; deadline ms or "",
-- n outbox entries, (topic, key, event id, value, source time ms or "")*, n histogram deltas,
-- (field, delta)*, n KPI deltas, (field, delta)*, n transitions, (entry)* (oldest first; the
-- list keeps the newest MAX_TRANSITIONS, ARGV[1]), then the next customer. ARGV[1] is the
-- list's bound.
-- The histogram and KPI increments of the customers written are summed and applied once per
-- field, and the deadlines with one ZADD and one ZREM, at the end.
-- Returns the 0-based indexes of customers whose version had moved (nothing written for them).
local conflicts = {}
local keep = tonumber(ARGV[1])
local a = 2
local hist, histOrder = {}, {}
local kpi, kpiOrder = {}, {}
local zadd, zrem = {}, {}
local function add(sums, order, field, delta)
  local cur = sums[field]
  if cur == nil then
    order[#order + 1] = field
    cur = 0
  end
  sums[field] = cur + tonumber(delta)
end
for i = 5, #KEYS, 2 do
  local key = KEYS[i]
  local id = ARGV[a]
  local expected = ARGV[a + 1]
  local mode = ARGV[a + 2]
  local ok = customer_version(key) == expected
  if not ok then
    conflicts[#conflicts + 1] = (i - 5) / 2
  end
  if mode == 's' then
    if ok then
      redis.call('SET', key, ARGV[a + 3])
    end
    a = a + 4
  else
    local nf = tonumber(ARGV[a + 3])
    a = a + 4
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
      zrem[#zrem + 1] = id
    else
      zadd[#zadd + 1] = deadline
      zadd[#zadd + 1] = id
    end
  end
  a = a + 1
  local no = tonumber(ARGV[a])
  a = a + 1
  for _ = 1, no do
    if ok then
      if ARGV[a + 4] == '' then
        redis.call('XADD', KEYS[1], '*', 't', ARGV[a], 'k', ARGV[a + 1], 'id', ARGV[a + 2], 'v', ARGV[a + 3])
      else
        redis.call('XADD', KEYS[1], '*', 't', ARGV[a], 'k', ARGV[a + 1], 'id', ARGV[a + 2], 'v', ARGV[a + 3], 'st', ARGV[a + 4])
      end
    end
    a = a + 5
  end
  local nh = tonumber(ARGV[a])
  a = a + 1
  for _ = 1, nh do
    if ok then
      add(hist, histOrder, ARGV[a], ARGV[a + 1])
    end
    a = a + 2
  end
  local nk = tonumber(ARGV[a])
  a = a + 1
  for _ = 1, nk do
    if ok then
      add(kpi, kpiOrder, ARGV[a], ARGV[a + 1])
    end
    a = a + 2
  end
  local nt = tonumber(ARGV[a])
  a = a + 1
  if ok and nt > 0 then
    for j = 0, nt - 1 do
      redis.call('LPUSH', KEYS[i + 1], ARGV[a + j])
    end
    redis.call('LTRIM', KEYS[i + 1], 0, keep - 1)
  end
  a = a + nt
end
-- unpack is bounded by Lua's C stack: the members go in chunks (an even step for ZADD's pairs).
local function chunked(cmd, key, list)
  for s = 1, #list, 1000 do
    redis.call(cmd, key, unpack(list, s, math.min(s + 999, #list)))
  end
end
chunked('ZADD', KEYS[2], zadd)
chunked('ZREM', KEYS[2], zrem)
for _, f in ipairs(histOrder) do
  if hist[f] ~= 0 then
    redis.call('HINCRBY', KEYS[3], f, string.format('%d', hist[f]))
  end
end
for _, f in ipairs(kpiOrder) do
  if kpi[f] ~= 0 then
    redis.call('HINCRBY', KEYS[4], f, string.format('%d', kpi[f]))
  end
end
return conflicts
