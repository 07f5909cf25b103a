-- Settle one delivery attempt. See deliver.go.
-- KEYS: 1 shard due zset, 2 shard pending hash, 3 shard outbox stream, 4 customer hash,
--       5 customer history list.
-- ARGV: 1 mode (retry | final), 2 action id, 3 next attempt ms (retry), 4 actions topic,
--       5 customer id, 6 encoded record (final), 7 history entry JSON (final), 8 history cap,
--       9 the namespace's outbox bell (keyspace.OutboxBell), published on with the record.
-- A final settlement removes the action, appends its record to the outbox and its outcome to
-- the customer's history, atomically. Returns 0 when the action was no longer pending
-- (settled by another process after a lease expiry, or withdrawn): nothing is done twice.
local D, P, O, C, H = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local id = ARGV[2]
if redis.call('HEXISTS', P, id) == 0 then
  return 0
end
if ARGV[1] == 'retry' then
  redis.call('ZADD', D, ARGV[3], id)
  redis.call('HSET', P, id .. ':f', '0')
  return 1
end
redis.call('ZREM', D, id)
redis.call('HDEL', P, id, id .. ':a', id .. ':f', id .. ':p')
redis.call('XADD', O, '*', 't', ARGV[4], 'k', ARGV[5], 'id', id, 'v', ARGV[6])
redis.pcall('PUBLISH', ARGV[9], '') -- a refusal (ACL) must not fail the settlement
redis.call('LPUSH', H, ARGV[7])
redis.call('LTRIM', H, 0, tonumber(ARGV[8]) - 1)
if redis.call('HGET', C, 'pending_wb') == id then
  redis.call('HDEL', C, 'pending_wb', 'pending_wb_x')
end
return 1
