-- Claim due deliveries of one shard. See deliver.go.
-- KEYS: 1 shard due zset, 2 shard pending hash. ARGV: 1 now ms, 2 lease ms, 3 most to claim.
-- Each claimed action's score becomes its lease expiry, so if this process dies mid-delivery
-- another (or the restarted one) claims it again once the lease ends.
-- Returns a flat list: id, payload, attempts (including this one), ...
local D, P = KEYS[1], KEYS[2]
local now, lease = tonumber(ARGV[1]), tonumber(ARGV[2])
local ids = redis.call('ZRANGEBYSCORE', D, '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(ids) do
  local payload = redis.call('HGET', P, id)
  if payload then
    redis.call('ZADD', D, now + lease, id)
    local attempts = redis.call('HINCRBY', P, id .. ':a', 1)
    redis.call('HSET', P, id .. ':f', '1')
    out[#out + 1] = id
    out[#out + 1] = payload
    out[#out + 1] = attempts
  else
    redis.call('ZREM', D, id) -- settled or withdrawn meanwhile
  end
end
return out
