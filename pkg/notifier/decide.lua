-- One arbitration decision, atomic per customer. See arbitrate.go.
-- KEYS: 1 customer hash, 2 trigger zset, 3 history list, 4 shard due zset,
--       5 shard pending hash, 6 shard outbox stream, 7 shard exposure zset (uplift.go).
-- ARGV: 1 trigger id, 2 trigger ms, 3 trigger position, 4 kind, 5 action id, 6 cooldown ms,
--       7 replay, 8 open complaint, 9 held out (each "0" or "1"), 10 now ms, 11 payload,
--       12 customer id, 13 actions topic, 14 duplicate record id, 15..19 encoded records for
--       duplicate, replay, open complaint, cooldown, held out; 20 encoded record for this
--       action if care later pre-empts it; 21 rule, 22 channel, 23 decided at (RFC 3339),
--       24 trigger cap, 25 history cap; 26 the exposure member's tail ("<trigger day>|<customer>",
--       "" when the kind's uplift is not measured), 27 and 28 when its 30- and 90-day outcomes
--       are due (watermark ms); 29 the namespace's outbox bell (keyspace.OutboxBell: published on
--       with every outbox entry, to wake the relay).
-- Returns {status, reason, pre-empted action id}: status REPEAT (this position was decided
-- already: nothing to do), SUPPRESSED, HELD_OUT or SEND.
local C, T, H, D, P, O = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local trigger, trigger_ms, position, kind, action = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]
local cooldown = tonumber(ARGV[6])
local customer, topic = ARGV[12], ARGV[13]
local rule, channel, decided_at = ARGV[21], ARGV[22], ARGV[23]
local trigger_cap, history_cap = tonumber(ARGV[24]), tonumber(ARGV[25])
local E, exposure = KEYS[7], ARGV[26]

-- expose records that the customer was treated or held out by this action, for the uplift
-- report: one member per outcome horizon, due when the watermark has passed it.
local function expose(k, arm)
  if exposure ~= '' then
    redis.call('ZADD', E, ARGV[27], k .. '|' .. arm .. '|30|' .. exposure)
    redis.call('ZADD', E, ARGV[28], k .. '|' .. arm .. '|90|' .. exposure)
  end
end

local function log(id, k, outcome, reason)
  redis.call('LPUSH', H, cjson.encode({action_id = id, kind = k, outcome = outcome, reason = reason,
    trigger_event_id = trigger, rule = rule, channel = channel, decided_at = decided_at, attempts = 0}))
  redis.call('LTRIM', H, 0, history_cap - 1)
end

-- append_outbox appends an action's record to the outbox and rings the outbox bell.
local function append_outbox(id, value)
  redis.call('XADD', O, '*', 't', topic, 'k', customer, 'id', id, 'v', value)
  redis.pcall('PUBLISH', ARGV[29], '') -- a refusal (ACL) must not fail the decision
end

local function record(id, value, outcome, reason)
  append_outbox(id, value)
  log(id, kind, outcome, reason)
  return {outcome, reason, ''}
end

-- Idempotency on the trigger's event id.
local seen = redis.call('HGET', C, 't:' .. trigger)
if seen then
  if seen == position then
    return {'REPEAT', '', ''}
  end
  return record(ARGV[14], ARGV[15], 'SUPPRESSED', 'duplicate')
end
if redis.call('ZSCORE', T, trigger) then
  -- Remembered in the set but its position was pruned: still a duplicate.
  return record(ARGV[14], ARGV[15], 'SUPPRESSED', 'duplicate')
end
redis.call('ZADD', T, trigger_ms, trigger)
redis.call('HSET', C, 't:' .. trigger, position)
local n = redis.call('ZCARD', T)
if n > trigger_cap then
  local old = redis.call('ZRANGE', T, 0, n - trigger_cap - 1)
  redis.call('ZREMRANGEBYRANK', T, 0, n - trigger_cap - 1)
  for _, id in ipairs(old) do
    redis.call('HDEL', C, 't:' .. id)
  end
end

if ARGV[7] == '1' then
  return record(action, ARGV[16], 'SUPPRESSED', 'replay')
end
if kind == 'WIN_BACK' and ARGV[8] == '1' then
  return record(action, ARGV[17], 'SUPPRESSED', 'open_complaint')
end

local last_at = tonumber(redis.call('HGET', C, 'last_at') or '')
local last_kind = redis.call('HGET', C, 'last_kind')
local preempted = ''
if last_at and trigger_ms < last_at + cooldown then
  if kind == 'CARE' and last_kind == 'WIN_BACK' then
    -- Care pre-empts a win-back: the window does not hold it back, and a win-back still
    -- waiting for delivery (no attempt in flight) is withdrawn.
    local wb = redis.call('HGET', C, 'pending_wb')
    if wb and redis.call('HEXISTS', P, wb) == 1 and redis.call('HGET', P, wb .. ':f') ~= '1' then
      local rec = redis.call('HGET', P, wb .. ':p')
      redis.call('ZREM', D, wb)
      redis.call('HDEL', P, wb, wb .. ':a', wb .. ':f', wb .. ':p')
      append_outbox(wb, rec)
      log(wb, 'WIN_BACK', 'SUPPRESSED', 'preempted_by_care')
      preempted = wb
      -- Never sent: the withdrawn win-back is no treatment.
      local wbx = redis.call('HGET', C, 'pending_wb_x')
      if wbx then
        redis.call('ZREM', E, 'WIN_BACK|treated|30|' .. wbx, 'WIN_BACK|treated|90|' .. wbx)
      end
    end
    redis.call('HDEL', C, 'pending_wb', 'pending_wb_x')
  else
    return record(action, ARGV[18], 'SUPPRESSED', 'cooldown')
  end
end

-- The action counts against the cooldown from here on, held out or not, so the hold-out
-- group's would-be actions are comparable with the ones sent.
redis.call('HSET', C, 'last_at', tostring(math.max(last_at or trigger_ms, trigger_ms)), 'last_kind', kind, 'last_action', action)
if ARGV[9] == '1' then
  expose(kind, 'holdout')
  local r = record(action, ARGV[19], 'HELD_OUT', 'holdout')
  r[3] = preempted
  return r
end
expose(kind, 'treated')
if kind == 'WIN_BACK' then
  redis.call('HSET', C, 'pending_wb', action)
  if exposure ~= '' then
    redis.call('HSET', C, 'pending_wb_x', exposure)
  end
end
redis.call('ZADD', D, ARGV[10], action)
redis.call('HSET', P, action, ARGV[11], action .. ':a', '0', action .. ':f', '0', action .. ':p', ARGV[20])
log(action, kind, 'PENDING', 'rule:' .. rule)
return {'SEND', 'rule:' .. rule, preempted}
