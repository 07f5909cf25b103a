-- Atomic per-customer state write with a version check. See store.go.
-- KEYS[1] outbox stream, KEYS[2] deadline zset, KEYS[3] histogram hash, KEYS[4] KPI counter
-- hash, then per customer its state hash and its transition list (KEYS[5], KEYS[6], ...).
-- ARGV per customer: id, expected version, n fields, (field, value)*, deadline ms or "",
-- n outbox entries, (topic, key, event id, value, source time ms or "")*, n histogram deltas, (field, delta)*,
-- n KPI deltas, (field, delta)*, n transitions, (entry)* (oldest first; the list keeps the
-- newest MAX_TRANSITIONS, ARGV[1]), then the next customer. ARGV[1] is the list's bound.
-- Returns the 0-based indexes of customers whose version had moved (nothing written for them).
local conflicts = {}
local keep = tonumber(ARGV[1])
local a = 2
for i = 5, #KEYS, 2 do
  local key = KEYS[i]
  local id = ARGV[a]
  local expected = ARGV[a + 1]
  local nf = tonumber(ARGV[a + 2])
  a = a + 3
  local current = redis.call('HGET', key, '_v') or '0'
  if current ~= expected then
    conflicts[#conflicts + 1] = (i - 5) / 2
    a = a + 2 * nf + 1
    local no = tonumber(ARGV[a])
    a = a + 1 + 5 * no
    local nh = tonumber(ARGV[a])
    a = a + 1 + 2 * nh
    local nk = tonumber(ARGV[a])
    a = a + 1 + 2 * nk
    local nt = tonumber(ARGV[a])
    a = a + 1 + nt
  else
    redis.call('DEL', key)
    local args = {}
    for j = 0, nf - 1 do
      args[#args + 1] = ARGV[a + 2 * j]
      args[#args + 1] = ARGV[a + 2 * j + 1]
    end
    a = a + 2 * nf
    args[#args + 1] = '_v'
    args[#args + 1] = tostring(tonumber(expected) + 1)
    redis.call('HSET', key, unpack(args))
    local deadline = ARGV[a]
    a = a + 1
    if deadline == '' then
      redis.call('ZREM', KEYS[2], id)
    else
      redis.call('ZADD', KEYS[2], deadline, id)
    end
    local no = tonumber(ARGV[a])
    a = a + 1
    for _ = 1, no do
      if ARGV[a + 4] == '' then
        redis.call('XADD', KEYS[1], '*', 't', ARGV[a], 'k', ARGV[a + 1], 'id', ARGV[a + 2], 'v', ARGV[a + 3])
      else
        redis.call('XADD', KEYS[1], '*', 't', ARGV[a], 'k', ARGV[a + 1], 'id', ARGV[a + 2], 'v', ARGV[a + 3], 'st', ARGV[a + 4])
      end
      a = a + 5
    end
    local nh = tonumber(ARGV[a])
    a = a + 1
    for _ = 1, nh do
      redis.call('HINCRBY', KEYS[3], ARGV[a], ARGV[a + 1])
      a = a + 2
    end
    local nk = tonumber(ARGV[a])
    a = a + 1
    for _ = 1, nk do
      redis.call('HINCRBY', KEYS[4], ARGV[a], ARGV[a + 1])
      a = a + 2
    end
    local nt = tonumber(ARGV[a])
    a = a + 1
    if nt > 0 then
      for j = 0, nt - 1 do
        redis.call('LPUSH', KEYS[i + 1], ARGV[a + j])
      end
      redis.call('LTRIM', KEYS[i + 1], 0, keep - 1)
      a = a + nt
    end
  end
end
return conflicts
